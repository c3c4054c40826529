/**
 * Runs one agent: a mailbox and a consumer loop per handler and per tool, the handler
 * spans, the error reports (`loom.agent.<id>.error`, and an error reply to a failed
 * request), and the statistics its heartbeat carries.
 */
import { SpanKind } from "@opentelemetry/api";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";

import type { Agent, HandlerSpec, ToolSpec } from "./agent.js";
import type { BusClient, BusSubscription } from "./bus.js";
import { nowNs } from "./clock.js";
import { type Context, TOOL_PREFIX, type ToolInfo } from "./context.js";
import type { Envelope } from "./envelope.js";
import { HandlerTimeout, ToolError } from "./errors.js";
import { Mailbox } from "./mailbox.js";
import type { StallWatch } from "./stalls.js";
import { LatencyRecorder } from "./stats.js";
import type { Tracing } from "./tracing.js";

export type AgentStatus = "starting" | "running" | "idle" | "stopped" | "failed";

interface Route {
  spec: HandlerSpec;
  mailbox: Mailbox<Envelope>;
  subscription: BusSubscription | null;
  loop: Promise<void> | null;
}

export class AgentRunner {
  status: AgentStatus = "starting";
  handled = 0;
  errors = 0;
  timeouts = 0;
  lastError: string | null = null;
  private readonly started = Date.now();
  private readonly latency = new LatencyRecorder();
  private readonly handlerTime = new LatencyRecorder();
  private readonly routes: Route[] = [];
  private readonly abort = new AbortController();
  private body: Promise<void> | null = null;
  private readonly ajv = new Ajv({ allErrors: true, strict: false });

  constructor(
    readonly agent: Agent,
    readonly ctx: Context,
    private readonly client: BusClient,
    private readonly tracing: Tracing,
    /** The program that runs the agent, as heartbeats name its module. */
    private readonly module: string,
    /** The process's event loop watch: its stalls are every agent's. */
    private readonly stalls: StallWatch,
  ) {}

  /** Subscribe every handler and tool (live on the whole bus when this resolves), then
   * call `onStart` and start `run`. */
  async start(): Promise<void> {
    const specs = [...this.agent.handlers, ...this.agent.tools.map((tool) => this.toolRoute(tool))];
    for (const spec of specs) {
      const mailbox = new Mailbox<Envelope>(spec.qos, spec.mailboxSize);
      const route: Route = { spec, mailbox, subscription: null, loop: null };
      this.routes.push(route);
      route.subscription = await this.client.subscribe(spec.pattern, (env) => mailbox.put(env));
      route.loop = this.consume(route);
    }
    await this.agent.onStart(this.ctx);
    this.status = "running";
    this.body = this.agent.run(this.ctx, this.abort.signal).catch((error) => {
      this.status = "failed";
      this.recordError("run", null, error);
    });
  }

  /** Stop `run`, call `onStop`, close the subscriptions after what their mailboxes hold. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.body;
    try {
      await this.agent.onStop(this.ctx);
    } catch (error) {
      this.recordError("on_stop", null, error);
    }
    for (const route of this.routes) {
      if (route.subscription) this.client.unsubscribe(route.subscription);
      route.mailbox.close();
    }
    await Promise.all(this.routes.map((route) => route.loop));
    this.status = "stopped";
  }

  /** The tools this agent serves, as `loom.tools.query` lists them. */
  toolInfos(): ToolInfo[] {
    return this.agent.tools.map((tool) => ({
      name: tool.name,
      description: tool.description,
      input_schema: tool.inputSchema,
      output_schema: tool.outputSchema,
      provider: `agent:${this.agent.id}`,
      kind: "agent",
      process: this.client.clientId,
      aliases: [],
    }));
  }

  /** The heartbeat's payload (docs/PROTOCOL.md section 7). */
  heartbeat(): Record<string, unknown> {
    const [latencyP50, latencyP99] = this.latency.percentiles(50, 99);
    const [handlerP50, handlerP99] = this.handlerTime.percentiles(50, 99);
    const patterns = this.routes.map((route) => route.spec.pattern);
    return {
      agent_id: this.agent.id,
      status: this.status,
      handled: this.handled,
      errors: this.errors,
      emitted: this.ctx.emitted,
      queue_depth: this.routes.reduce((sum, route) => sum + route.mailbox.depth, 0),
      dropped: this.routes.reduce((sum, route) => sum + route.mailbox.dropped, 0),
      lost: this.routes.reduce((sum, route) => sum + (route.subscription?.lost ?? 0), 0),
      latency_p50_ms: latencyP50,
      latency_p99_ms: latencyP99,
      handler_p50_ms: handlerP50,
      handler_p99_ms: handlerP99,
      last_error: this.lastError,
      uptime_s: Math.round((Date.now() - this.started) / 100) / 10,
      process: this.client.clientId,
      pid: process.pid,
      observer: !this.agent.traced,
      stalls: this.stalls.stalls,
      longest_stall_ms: this.stalls.longestMs,
      timeouts: this.timeouts,
      patterns: [...new Set(patterns)],
      module: this.module,
      class: this.agent.constructor.name,
      version: this.agent.version,
      language: "javascript",
      // on a CURVE bus the broker refuses a heartbeat naming another identity than its sender's
      ...(this.client.identity ? { identity: this.client.identity } : {}),
    };
  }

  // -- handling -------------------------------------------------------------------

  private async consume(route: Route): Promise<void> {
    const { spec, mailbox } = route;
    for (;;) {
      if (spec.qos === "batched") {
        const batch = await mailbox.takeBatch(spec.maxSize, spec.maxDelay);
        if (batch === undefined) return;
        await this.call(spec, batch[0], batch);
      } else {
        const event = await mailbox.take();
        if (event === undefined) return;
        await this.call(spec, event, event);
      }
    }
  }

  private async call(spec: HandlerSpec, first: Envelope, item: Envelope | Envelope[]): Promise<void> {
    const isRequest = first.type === "request";
    const span = this.agent.traced
      ? this.tracing.start(
          spec.name.startsWith("serve ") ? spec.name : `handle ${first.topic}`,
          isRequest ? SpanKind.SERVER : SpanKind.CONSUMER,
          this.tracing.parentOf(first),
          this.agent.id,
          {
            "messaging.destination.name": first.topic,
            "messaging.message.id": first.id,
            "loom.handler": spec.name,
          },
        )
      : null;
    const ctx = this.ctx.handling(first, span);
    const began = performance.now();
    let failure: unknown;
    try {
      await this.withTimeout(spec, first, () =>
        (spec.handler as (i: unknown, c: Context) => unknown)(item, ctx),
      );
    } catch (error) {
      failure = error;
      this.recordError(spec.name, first, error);
      if (isRequest && first.replyTo) this.answerFailure(ctx, first, error);
    } finally {
      this.tracing.end(span, failure);
    }
    const count = Array.isArray(item) ? item.length : 1;
    this.handled += count;
    this.handlerTime.record(performance.now() - began);
    if (first.ts > 0) this.latency.record((nowNs() - first.ts) / 1e6);
  }

  private async withTimeout(spec: HandlerSpec, event: Envelope, run: () => unknown): Promise<void> {
    if (spec.timeout === null) {
      await run();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const limit = spec.timeout;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.timeouts += 1;
        reject(
          new HandlerTimeout(
            `${spec.name} of agent '${this.agent.id}' ran over its ${limit} ms timeout on ` +
              `'${event.topic}': make it faster, or raise onEvent(..., { timeout })`,
          ),
        );
      }, limit);
    });
    try {
      await Promise.race([Promise.resolve().then(run), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private answerFailure(ctx: Context, event: Envelope, error: unknown): void {
    const { name, message } = describe(error);
    try {
      ctx.reply(event, { error: name, message }, { type: "error" });
    } catch {
      // the bus is closing: the caller's timeout tells it
    }
  }

  private recordError(where: string, event: Envelope | null, error: unknown): void {
    const { name, message, stack } = describe(error);
    this.errors += 1;
    this.lastError = `${name}: ${message}`;
    try {
      this.ctx.log("ERROR", `${where} failed${event ? ` on '${event.topic}'` : ""}: ${this.lastError}`);
      this.ctx.report(`loom.agent.${this.agent.id}.error`, "error", {
        agent: this.agent.id,
        where,
        topic: event?.topic ?? null,
        event_id: event?.id ?? null,
        error: name,
        message,
        traceback: stack,
      });
    } catch {
      // the bus is closing
    }
  }

  // -- tools ----------------------------------------------------------------------

  private toolRoute(tool: ToolSpec): HandlerSpec {
    let validate: ValidateFunction;
    try {
      validate = this.ajv.compile(tool.inputSchema);
    } catch (error) {
      throw new ToolError(
        `tool '${tool.name}' of agent '${this.agent.id}': bad inputSchema: ${(error as Error).message}`,
      );
    }
    const serve = async (event: Envelope, ctx: Context): Promise<void> => {
      const args = event.data ?? {};
      if (!validate(args)) {
        const message = `tool ${tool.name}: ${describeErrors(validate.errors ?? [])} (it takes: ${accepted(tool)})`;
        ctx.reply(event, { error: "ToolError", message }, { type: "error" });
        return;
      }
      ctx.reply(event, await tool.fn(args as Record<string, unknown>, ctx));
    };
    return {
      pattern: `${TOOL_PREFIX}${tool.name}`,
      handler: serve,
      qos: "reliable",
      mailboxSize: 100_000,
      maxSize: 1,
      maxDelay: 0,
      timeout: null,
      name: `serve ${tool.name}`,
    };
  }
}

function describe(error: unknown): { name: string; message: string; stack: string } {
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack ?? "" };
  return { name: "Error", message: String(error), stack: "" };
}

function accepted(tool: ToolSpec): string {
  const properties = tool.inputSchema.properties;
  const names = properties && typeof properties === "object" ? Object.keys(properties) : [];
  return names.join(", ") || "none";
}

function describeErrors(errors: ErrorObject[]): string {
  return errors
    .slice(0, 5)
    .map((error) => {
      const where = error.instancePath.replace(/^\//, "").replaceAll("/", ".");
      if (error.keyword === "required") return `argument '${error.params.missingProperty}' is missing`;
      if (error.keyword === "additionalProperties") {
        return `argument '${error.params.additionalProperty}' is not accepted`;
      }
      return where ? `argument '${where}': ${error.message}` : (error.message ?? "bad arguments");
    })
    .join("; ");
}
