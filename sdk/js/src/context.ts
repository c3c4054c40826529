/**
 * What a handler is given besides its event: the means to emit, request, reply and call
 * tools as its agent. The collaborators are passed in (the bus client and the tracing),
 * not the runtime; a handler's context also knows the event it handles and its span, so
 * what it publishes continues that event's thread and trace.
 */
import { type Context as OtelContext, ROOT_CONTEXT, type Span, SpanKind } from "@opentelemetry/api";

import type { BusClient } from "./bus.js";
import { encodeData, type Envelope, envelope, type MessageType } from "./envelope.js";
import { LoomError, RemoteError, RequestTimeout, ToolError, ToolTimeout } from "./errors.js";
import { validateTopic } from "./topics.js";
import type { Tracing } from "./tracing.js";

export const TOOL_PREFIX = "loom.tool.";
export const TOOLS_QUERY = "loom.tools.query";
const DEFAULT_TOOL_TIMEOUT = 10_000;
const MAX_HOPS = 32;

export interface EmitOptions {
  /** Time to live in ms (0: forever). */
  ttlMs?: number;
  threadId?: string;
  headers?: Record<string, string>;
}

/** A tool as `loom.tools.query` lists it (docs/PROTOCOL.md section 6). */
export interface ToolInfo {
  name: string;
  description: string;
  input_schema: Record<string, unknown>;
  output_schema: Record<string, unknown> | null;
  provider: string;
  kind: string;
  process: string | null;
  aliases: string[];
}

export type LogLevel = "DEBUG" | "INFO" | "WARNING" | "ERROR";

export class Context {
  constructor(
    /** The agent this context publishes as (the client id for the runtime's own). */
    readonly agentId: string,
    private readonly client: BusClient,
    private readonly tracing: Tracing,
    /** The event being handled, if any. */
    readonly event: Envelope | null = null,
    /** The handler's span, if traced. */
    readonly span: Span | null = null,
    private readonly counter: { emitted: number } = { emitted: 0 },
  ) {}

  /** The same agent handling `event` inside `span`. */
  handling(event: Envelope | null, span: Span | null): Context {
    return new Context(this.agentId, this.client, this.tracing, event, span, this.counter);
  }

  /** The same agent, publishing as children of `span` (itself when there is none). */
  private within(span: Span | null): Context {
    return span === null ? this : this.handling(this.event, span);
  }

  /** This process's bus client id. */
  get clientId(): string {
    return this.client.clientId;
  }

  // -- messaging ------------------------------------------------------------------

  /** Publish `data` on `topic`; returns the envelope sent. Inside a handler the event
   * continues the handled event's thread and trace. Throws {@link TopicError} for a bad
   * topic and `TypeError` for data that is not JSON (or bytes). */
  emit<T>(topic: string, data?: T, options: EmitOptions = {}): Envelope<T> {
    const env = envelope<T>({
      topic,
      data: data as T,
      ttlMs: options.ttlMs ?? 0,
      threadId: options.threadId ?? null,
      headers: options.headers ?? null,
    });
    return this.send(env);
  }

  /** Publish a request and wait for the first reply (any process may answer).
   * Throws {@link RequestTimeout} (no reply within `timeout` ms) or {@link RemoteError}. */
  async request<T = unknown>(
    topic: string,
    data?: unknown,
    options: { timeout?: number } = {},
  ): Promise<Envelope<T>> {
    const timeout = options.timeout ?? 5000;
    const span = this.tracing.start(`request ${topic}`, SpanKind.CLIENT, this.parent(), this.agentId, {
      "loom.topic": topic,
    });
    const inner = this.within(span);
    const correlationId = this.client.newId();
    const answer = this.client.expectReply(correlationId);
    let timer: NodeJS.Timeout | undefined;
    try {
      inner.send(envelope({ topic, data, type: "request", correlationId, replyTo: this.inbox }));
      const expired = new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), timeout);
      });
      const reply = await Promise.race([answer, expired]);
      if (reply === null) throw new RequestTimeout(topic, timeout);
      raiseIfError(reply, topic);
      this.tracing.end(span);
      return reply as Envelope<T>;
    } catch (error) {
      this.tracing.end(span, error);
      throw error;
    } finally {
      clearTimeout(timer);
      this.client.forget(correlationId);
    }
  }

  /** Answer `event` (a request): the reply goes to its `reply_to`. */
  reply<T>(event: Envelope, data?: T, options: { type?: MessageType; traced?: boolean } = {}): Envelope<T> {
    if (!event.replyTo) {
      throw new LoomError(
        `event ${event.id} on '${event.topic}' has no reply_to: it was published with ` +
          "emit(), not request(), so nobody is waiting for a reply",
      );
    }
    const answer = envelope<T>({
      topic: event.replyTo,
      data: data as T,
      type: options.type ?? "reply",
      correlationId: event.correlationId ?? event.id,
      threadId: event.threadId ?? event.id,
    });
    if (options.traced === false) {
      this.client.publish(this.stamp(answer));
      return answer;
    }
    return this.send(answer, `reply ${event.topic}`);
  }

  // -- tools ----------------------------------------------------------------------

  /** Call a tool served by an agent of any process, Python or JavaScript, by name.
   * Throws {@link ToolError} (no such tool, bad arguments, the tool failed) or
   * {@link ToolTimeout}. */
  async tool<T = unknown>(
    name: string,
    args: Record<string, unknown> = {},
    options: { timeout?: number } = {},
  ): Promise<T> {
    const timeout = options.timeout ?? DEFAULT_TOOL_TIMEOUT;
    const span = this.tracing.start(`tool ${name}`, SpanKind.CLIENT, this.parent(), this.agentId, {
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": name,
      "loom.tool.kind": "agent",
    });
    const inner = this.within(span);
    try {
      const reply = await inner.request<T>(`${TOOL_PREFIX}${name}`, args, { timeout });
      this.tracing.end(span);
      return reply.data;
    } catch (error) {
      this.tracing.end(span, error);
      if (error instanceof RequestTimeout) {
        throw new ToolTimeout(
          `tool '${name}' did not answer within ${timeout} ms: if it is slow, pass a longer ` +
            "timeout; if nothing serves it, `loom tools` lists what is callable",
        );
      }
      if (error instanceof RemoteError) {
        if (error.errorType === "ToolError") {
          throw new ToolError(error.remoteMessage.replace(/^ToolError: /, ""));
        }
        throw new ToolError(`tool '${name}' failed: ${error.remoteMessage}`);
      }
      throw error;
    }
  }

  /** Every agent tool on the bus, as each process lists it (answers within `timeout` ms). */
  async tools(options: { timeout?: number } = {}): Promise<ToolInfo[]> {
    const found = new Map<string, ToolInfo>();
    const correlationId = this.client.newId();
    const replies: Envelope[] = [];
    this.client.onReply(correlationId, (reply) => replies.push(reply));
    this.client.publish(
      this.stamp(envelope({ topic: TOOLS_QUERY, type: "request", correlationId, replyTo: this.inbox })),
    );
    await new Promise((resolve) => setTimeout(resolve, options.timeout ?? 500));
    this.client.forget(correlationId);
    for (const reply of replies) {
      for (const item of Array.isArray(reply.data) ? reply.data : []) {
        if (item && typeof item.name === "string" && !found.has(item.name)) found.set(item.name, item);
      }
    }
    return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  // -- logging --------------------------------------------------------------------

  /** A log line on `loom.log.<agent>` (the studio's log view shows it). */
  log(level: LogLevel, message: string): void {
    this.report(`loom.log.${this.agentId}`, "log", { level, message });
  }

  /** One of Loom's own reports (heartbeat, statistics, error): not traced, not counted. */
  report(topic: string, type: MessageType, data: unknown): void {
    this.client.publish(this.stamp(envelope({ topic, type, data })));
  }

  // -- internals ------------------------------------------------------------------

  /** This agent's reply topic. */
  get inbox(): string {
    return `loom.reply.${this.client.clientId}.${this.agentId}`;
  }

  /** Publish `env` as this agent: source, payload, thread and hops of the handled event,
   * and a publish span whose context travels in `traceparent`. */
  send<T>(env: Envelope<T>, spanName?: string): Envelope<T> {
    validateTopic(env.topic);
    this.stamp(env);
    if (env.hops > MAX_HOPS) {
      throw new LoomError(
        `${this.agentId} emitted '${env.topic}' at hop ${env.hops}, past max_hops = ${MAX_HOPS}: ` +
          "agents are probably answering each other in a loop",
      );
    }
    const span = this.tracing.start(
      spanName ?? `publish ${env.topic}`,
      SpanKind.PRODUCER,
      this.parent(),
      this.agentId,
      {
        "messaging.destination.name": env.topic,
        "messaging.message.id": env.id,
      },
    );
    if (span !== null) this.tracing.inject(span, env);
    this.client.publish(env);
    this.tracing.end(span);
    this.counter.emitted += 1;
    return env;
  }

  private stamp<T>(env: Envelope<T>): Envelope<T> {
    [env.payload, env.contentType] = encodeData(env.data);
    env.source = this.agentId;
    if (!env.id) env.id = this.client.newId();
    const parent = this.event;
    if (parent !== null) {
      env.hops = parent.hops + 1;
      env.threadId = env.threadId ?? parent.threadId ?? parent.id;
    }
    return env;
  }

  private parent(): OtelContext {
    return this.span === null ? ROOT_CONTEXT : this.tracing.contextOf(this.span);
  }

  /** Events published through this agent's contexts. */
  get emitted(): number {
    return this.counter.emitted;
  }
}

/** Throw {@link RemoteError} for an `error` reply. */
export function raiseIfError(reply: Envelope, topic: string): void {
  if (reply.type !== "error") return;
  const info = (
    reply.data && typeof reply.data === "object" ? reply.data : { message: String(reply.data) }
  ) as {
    error?: string;
    message?: string;
  };
  throw new RemoteError(topic, reply.source, info.error ?? "Error", info.message ?? "");
}
