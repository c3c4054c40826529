/**
 * The runtime of a Node process on a Loom bus: it finds and joins the bus, runs agents,
 * answers `loom.tools.query`, publishes heartbeats, statistics and span batches, and closes
 * cleanly (the last spans and a `stopped` heartbeat leave before the sockets close).
 *
 * ```ts
 * const rt = await connect();            // the project's running bus (loom.toml, .loom/bus.json)
 * await rt.start(new Agent("watcher").onEvent("analysis.*", (event) => console.log(event.data)));
 * ```
 */
import { basename } from "node:path";

import type { Agent } from "./agent.js";
import { BusClient, type BusOptions } from "./bus.js";
import { loadCurve } from "./curve.js";
import { Context, type EmitOptions, TOOLS_QUERY, type ToolInfo } from "./context.js";
import { type Endpoints, locateBus, readProject } from "./discovery.js";
import type { Envelope } from "./envelope.js";
import { LoomError } from "./errors.js";
import { AgentRunner } from "./runner.js";
import { StallWatch } from "./stalls.js";
import { spansTopic, Tracing } from "./tracing.js";

export interface ConnectOptions extends BusOptions {
  /** The bus URL (`tcp://host:port`); default: the project's running bus. */
  url?: string;
  /** The broker's two endpoints, when they do not follow the URL's P / P+1 rule. */
  endpoints?: Endpoints;
  /** The project's `loom.toml` (default: `$LOOM_CONFIG`, else the nearest one upward). */
  config?: string;
  /** Record spans and send them to the bus's span store (default: `[tracing] enabled`, else true). */
  tracing?: boolean;
  /** Seconds between heartbeats (default: `[runtime] heartbeat_interval`, else 1). */
  heartbeatInterval?: number;
  /** Seconds the event loop may not turn before it counts as a stall (default: `[runtime]
   * stall_after`, else 10). */
  stallAfter?: number;
  /** The service name spans carry (default `loom:<script name>`). */
  service?: string;
  /** On a CURVE bus, the key pair to prove (default: `[bus] identity`, else `loom`). */
  identity?: string;
}

/** Join the project's bus (or `options.url`); throws {@link BusError} saying what to do
 * when no bus runs. */
export async function connect(options: ConnectOptions = {}): Promise<Runtime> {
  const project = readProject(options.config ?? undefined);
  const endpoints = options.endpoints ?? locateBus(project, options.url);
  const curve =
    options.curve ??
    (project.security === "curve" ? loadCurve(project.keys, options.identity ?? project.identity) : null);
  const client = await BusClient.connect(endpoints, { hwm: project.hwm, ...options, curve });
  const script = basename(process.argv[1] ?? "node").replace(/\.[cm]?[jt]s$/, "");
  const runtime = new Runtime(client, {
    service: options.service ?? `loom:${script}`,
    tracing: options.tracing ?? project.tracing,
    heartbeatInterval: options.heartbeatInterval ?? project.heartbeatInterval,
    stallAfter: options.stallAfter ?? project.stallAfter,
    module: `js:${process.argv[1] ?? "node"}`,
  });
  await runtime.open();
  return runtime;
}

interface RuntimeSettings {
  service: string;
  tracing: boolean;
  heartbeatInterval: number;
  stallAfter: number;
  module: string;
}

export class Runtime {
  readonly tracing: Tracing;
  /** The runtime's own context: it publishes as the client id. */
  readonly context: Context;
  private readonly runners = new Map<string, AgentRunner>();
  /** The event loop's stalls, reported in every agent's heartbeat. */
  readonly stalls: StallWatch;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    readonly client: BusClient,
    private readonly settings: RuntimeSettings,
  ) {
    this.tracing = new Tracing(
      (spans) => this.context.report(spansTopic(client.clientId), "spans", spans),
      settings.service,
      settings.tracing,
    );
    this.context = new Context(client.clientId, client, this.tracing);
    this.stalls = new StallWatch(settings.stallAfter * 1000);
  }

  /** Subscribe the reply inbox and the tools query; start the heartbeat. */
  async open(): Promise<void> {
    // the bus client routes replies to their requests by correlation id; this subscription
    // only asks the broker for them (every inbox of this process shares the prefix)
    await this.client.subscribe(`loom.reply.${this.client.clientId}.*`, () => {});
    await this.client.subscribe(TOOLS_QUERY, (query) => this.answerToolsQuery(query));
    this.timer = setInterval(() => this.beat(), this.settings.heartbeatInterval * 1000);
    this.timer.unref();
    this.stalls.start();
  }

  /** Start agents: each is live on the whole bus (its subscriptions answered a probe) and
   * has run `onStart` when this resolves. Throws when an id is already running here. */
  async start(...agents: Agent[]): Promise<void> {
    for (const agent of agents) {
      if (this.runners.has(agent.id)) throw new LoomError(`agent '${agent.id}' is already running here`);
      const ctx = new Context(agent.id, this.client, this.tracing);
      const runner = new AgentRunner(
        agent,
        ctx,
        this.client,
        this.tracing,
        this.settings.module,
        this.stalls,
      );
      this.runners.set(agent.id, runner);
      try {
        await runner.start();
      } catch (error) {
        runner.status = "failed";
        await runner.stop();
        this.runners.delete(agent.id);
        throw error;
      }
      this.heartbeat(runner);
      if (agent.tools.length > 0) this.toolsChanged();
    }
  }

  /** Stop one agent (its last heartbeat says `stopped`). */
  async stop(agent: Agent | string): Promise<void> {
    const id = typeof agent === "string" ? agent : agent.id;
    const runner = this.runners.get(id);
    if (runner === undefined) throw new LoomError(`no agent '${id}' runs here`);
    await runner.stop();
    this.heartbeat(runner);
    this.runners.delete(id);
    if (runner.agent.tools.length > 0) this.toolsChanged();
  }

  /** The agents running here, by id. */
  get agents(): ReadonlyMap<string, AgentRunner> {
    return this.runners;
  }

  emit<T>(topic: string, data?: T, options?: EmitOptions): Envelope<T> {
    return this.context.emit(topic, data, options);
  }

  request<T = unknown>(topic: string, data?: unknown, options?: { timeout?: number }): Promise<Envelope<T>> {
    return this.context.request<T>(topic, data, options);
  }

  tool<T = unknown>(
    name: string,
    args?: Record<string, unknown>,
    options?: { timeout?: number },
  ): Promise<T> {
    return this.context.tool<T>(name, args, options);
  }

  tools(options?: { timeout?: number }): Promise<ToolInfo[]> {
    return this.context.tools(options);
  }

  /** Stop every agent, send the last spans and statistics, close the bus client. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.stalls.stop();
    for (const id of [...this.runners.keys()].reverse()) await this.stop(id);
    await this.tracing.flush();
    this.beat();
    await this.tracing.shutdown();
    await this.client.close();
  }

  // -- reports --------------------------------------------------------------------

  private beat(): void {
    for (const runner of this.runners.values()) this.heartbeat(runner);
    const stats = { ...this.client.statistics(), tracing: this.tracing.statistics() };
    this.safely(() => this.context.report(`loom.client.${this.client.clientId}.stats`, "stats", stats));
  }

  private heartbeat(runner: AgentRunner): void {
    this.safely(() =>
      runner.ctx.report(`loom.agent.${runner.agent.id}.heartbeat`, "heartbeat", runner.heartbeat()),
    );
  }

  private localTools(): ToolInfo[] {
    return [...this.runners.values()].flatMap((runner) =>
      runner.status === "stopped" ? [] : runner.toolInfos(),
    );
  }

  private answerToolsQuery(query: Envelope): void {
    if (query.type !== "request" || !query.replyTo) return;
    // discovery is housekeeping, not a workflow: no span
    this.safely(() => this.context.reply(query, this.localTools(), { traced: false }));
  }

  private toolsChanged(): void {
    const data = { process: this.client.clientId, tools: this.localTools() };
    this.safely(() => this.context.report("loom.tools.changed", "tools", data));
  }

  private safely(send: () => void): void {
    try {
      send();
    } catch (error) {
      if (!this.closed) console.warn(`loom: a report was not sent: ${(error as Error).message}`);
    }
  }
}
