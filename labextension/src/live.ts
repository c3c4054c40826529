import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Where Jupyter proxies the studio's server (jupyter-server-proxy's entry point name). */
export const STUDIO_PATH = 'loom-studio/';

/** One agent as the studio's feed last heard it (`GET loom-studio/api/live`). */
export interface ILiveAgent {
  id: string;
  status: string;
  /** Events per second the agent publishes. */
  rate: number;
  handled: number;
  errors: number;
  last_error: string;
}

/** One topic family (`market.price.*`) and its publish rate. */
export interface ILiveTopic {
  pattern: string;
  rate: number;
}

/** What the studio's feed sees of the project's bus. */
export interface ILiveSummary {
  /** Null until the studio has joined the bus. */
  bus: { address: string; embedded: boolean } | null;
  events_per_s: number;
  agents: ILiveAgent[];
  topics: ILiveTopic[];
}

/** What the studio tab shows: everything, one agent's events, or one topic's. */
export interface IStudioView {
  agent?: string;
  topic?: string;
}

/** The studio page's URL (same origin, through Jupyter), opened on `view`. */
export function studioUrl(view: IStudioView = {}): string {
  const page = URLExt.join(ServerConnection.makeSettings().baseUrl, STUDIO_PATH);
  const query = view.agent ? { agent: view.agent } : view.topic ? { topic: view.topic } : {};
  return page + URLExt.objectToQueryString(query);
}

/** The request to the studio failed: its HTTP status and what to do about it. */
export class StudioError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

/**
 * The live agents and topics, from the studio's server behind Jupyter's proxy (the
 * first request starts the studio: it may take a few seconds).
 */
export async function fetchLive(): Promise<ILiveSummary> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, STUDIO_PATH, 'api', 'live');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, { cache: 'no-store' }, settings);
  } catch (error) {
    throw new StudioError(0, `the Jupyter server does not answer (${error})`);
  }
  if (!response.ok) {
    throw new StudioError(response.status, explain(response.status));
  }
  return (await response.json()) as ILiveSummary;
}

function explain(status: number): string {
  if (status === 404) {
    return (
      'Jupyter does not proxy the studio (HTTP 404): install jupyter-server-proxy in ' +
      "Jupyter's environment and check `jupyter server extension list`"
    );
  }
  if (status === 403) {
    return 'the studio refused the request (HTTP 403): restart the Jupyter server';
  }
  return (
    `the studio did not start or answer (HTTP ${status}): its errors, a bad loom.toml ` +
    "for one, are in the Jupyter server's log"
  );
}
