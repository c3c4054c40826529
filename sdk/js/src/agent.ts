/**
 * Agents: handlers of topic patterns and tools callable by name, as in the Python SDK.
 *
 * ```ts
 * const watcher = new Agent("watcher")
 *   .onEvent("analysis.*", async (event, ctx) => {
 *     ctx.emit("alerts.seen", { topic: event.topic });
 *   })
 *   .tool("double", { inputSchema: { type: "object", properties: { x: { type: "number" } } } },
 *     async ({ x }) => 2 * (x as number));
 * ```
 *
 * Subclasses may also override {@link Agent.onStart}, {@link Agent.run} and
 * {@link Agent.onStop}.
 */
import type { Context } from "./context.js";
import type { Envelope } from "./envelope.js";
import { QOS_NAMES, type QoS } from "./mailbox.js";
import { compilePattern } from "./topics.js";

export const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const TOOL_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*$/;

export type Handler<T = unknown> = (event: Envelope<T>, ctx: Context) => unknown;
export type BatchHandler<T = unknown> = (events: Envelope<T>[], ctx: Context) => unknown;

export interface HandlerOptions {
  /** `reliable` (default: in order, gaps reported), `realtime` (bounded, oldest dropped)
   * or `batched` (the handler gets arrays). */
  qos?: QoS;
  /** Mailbox bound (default 100,000 reliable, 1,000 realtime). */
  mailboxSize?: number;
  /** Batch limits for `qos: "batched"`: events, and ms after the first. */
  maxSize?: number;
  maxDelay?: number;
  /** Milliseconds one call may run; past it the call counts as failed (HandlerTimeout). */
  timeout?: number;
}

export interface HandlerSpec {
  pattern: string;
  handler: Handler<any> | BatchHandler<any>;
  qos: QoS;
  mailboxSize: number;
  maxSize: number;
  maxDelay: number;
  timeout: number | null;
  name: string;
}

export interface ToolOptions {
  description?: string;
  /** JSON schema of the arguments object (checked before the tool runs). */
  inputSchema?: Record<string, unknown>;
  /** JSON schema of the result, if you want callers to know it. */
  outputSchema?: Record<string, unknown> | null;
}

export type ToolFunction = (args: Record<string, any>, ctx: Context) => unknown;

export interface ToolSpec {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
  outputSchema: Record<string, unknown> | null;
  fn: ToolFunction;
}

export class Agent {
  readonly id: string;
  /** False for observers (dashboards, recorders): their handlers add no spans. */
  readonly traced: boolean;
  readonly handlers: HandlerSpec[] = [];
  readonly tools: ToolSpec[] = [];
  /** The code's version, as the studio shows it. */
  version = 1;

  constructor(id: string, options: { traced?: boolean } = {}) {
    if (typeof id !== "string" || !AGENT_ID.test(id)) {
      throw new Error(
        `bad agent id ${JSON.stringify(id)}: use letters, digits, '_' and '-' ` +
          "(it becomes a topic segment, e.g. loom.agent.<id>.heartbeat)",
      );
    }
    this.id = id;
    this.traced = options.traced ?? true;
  }

  /** Handle every event matching `pattern` (checked now: a bad one throws TopicError). */
  onEvent<T = unknown>(pattern: string, handler: Handler<T>, options?: HandlerOptions): this;
  onEvent<T = unknown>(
    pattern: string,
    handler: BatchHandler<T>,
    options: HandlerOptions & { qos: "batched" },
  ): this;
  onEvent(pattern: string, handler: Handler<any> | BatchHandler<any>, options: HandlerOptions = {}): this {
    compilePattern(pattern);
    const qos = options.qos ?? "reliable";
    if (!QOS_NAMES.includes(qos)) {
      throw new Error(`unknown qos '${qos}': use one of ${QOS_NAMES.join(", ")}`);
    }
    if (typeof handler !== "function") throw new TypeError(`the handler of '${pattern}' is not a function`);
    const timeout = options.timeout ?? null;
    if (timeout !== null && !(timeout > 0)) throw new RangeError(`timeout=${timeout}: use ms > 0`);
    this.handlers.push({
      pattern,
      handler,
      qos,
      mailboxSize: options.mailboxSize ?? (qos === "realtime" ? 1000 : 100_000),
      maxSize: options.maxSize ?? 100,
      maxDelay: options.maxDelay ?? 50,
      timeout,
      name: handler.name || `on ${pattern}`,
    });
    return this;
  }

  /** Serve a tool any agent (Python or JavaScript) can call by name. */
  tool(name: string, options: ToolOptions, fn: ToolFunction): this {
    if (!TOOL_NAME.test(name)) {
      throw new Error(
        `bad tool name '${name}': use letters, digits, '_' and '-', dot-separated ` +
          "(e.g. 'web-search' or 'prices.latest')",
      );
    }
    if (this.tools.some((tool) => tool.name === name)) throw new Error(`tool '${name}' is declared twice`);
    this.tools.push({
      name,
      description: options.description ?? "",
      inputSchema: options.inputSchema ?? { type: "object" },
      outputSchema: options.outputSchema ?? null,
      fn,
    });
    return this;
  }

  /** Called once, after the agent's subscriptions are live. */
  async onStart(_ctx: Context): Promise<void> {}

  /** Optional long-running body (a producer loop); `signal` aborts at stop. */
  async run(_ctx: Context, _signal: AbortSignal): Promise<void> {}

  /** Called once when the agent stops, before its subscriptions close. */
  async onStop(_ctx: Context): Promise<void> {}
}
