/**
 * Tracing: OpenTelemetry spans for what JavaScript agents publish and handle, joined to the
 * Python agents' traces through the envelope's `traceparent` (docs/PROTOCOL.md section 10)
 * and sent on `loom.trace.spans.<client id>`, where the process running the bus stores them
 * beside the Python spans.
 *
 * Spans are made with `@opentelemetry/api` on a private `BasicTracerProvider` (the process's
 * global provider, if the program set one, is left alone); its batch processor hands them to
 * {@link LoomSpanExporter}. Parents are passed as values, not through async context: a
 * handler's context knows its span.
 */
import {
  type Attributes,
  type Context as OtelContext,
  type HrTime,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";

import type { Envelope } from "./envelope.js";

/** The topic a process's span batches travel on. */
export const spansTopic = (clientId: string): string => `loom.trace.spans.${clientId}`;
const AGENT_ATTRIBUTE = "loom.agent";
const SPANS_PER_MESSAGE = 256;
const KINDS: Record<SpanKind, string> = {
  [SpanKind.INTERNAL]: "internal",
  [SpanKind.SERVER]: "server",
  [SpanKind.CLIENT]: "client",
  [SpanKind.PRODUCER]: "producer",
  [SpanKind.CONSUMER]: "consumer",
};
const STATUS: Record<SpanStatusCode, string> = {
  [SpanStatusCode.UNSET]: "unset",
  [SpanStatusCode.OK]: "ok",
  [SpanStatusCode.ERROR]: "error",
};

const propagator = new W3CTraceContextPropagator();
type Carrier = { traceparent?: string | null; tracestate?: string | null };
const getter: TextMapGetter<Carrier> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => (carrier as Record<string, string | null | undefined>)[key] ?? undefined,
};
const setter: TextMapSetter<Carrier> = {
  set: (carrier, key, value) => {
    (carrier as Record<string, string>)[key] = value;
  },
};

/** A span as the bus carries it: the 15 fields of section 10, in order. */
export type WireSpan = [
  string,
  string,
  string | null,
  string,
  string,
  number,
  number,
  string,
  string | null,
  string,
  string | null,
  Attributes,
  [string, number, Attributes][],
  [string, string][],
  boolean,
];

const hrNs = (time: HrTime): number => time[0] * 1e9 + time[1];

/** One OpenTelemetry span in the wire form of section 10. */
export function toWire(span: ReadableSpan, service: string): WireSpan {
  const context = span.spanContext();
  const { [AGENT_ATTRIBUTE]: agent, ...attributes } = span.attributes;
  return [
    context.traceId,
    context.spanId,
    span.parentSpanContext?.spanId ?? null,
    span.name,
    KINDS[span.kind],
    hrNs(span.startTime),
    hrNs(span.endTime),
    STATUS[span.status.code],
    span.status.code === SpanStatusCode.ERROR ? (span.status.message ?? null) : null,
    service,
    typeof agent === "string" ? agent : null,
    attributes,
    span.events.map((event) => [event.name, hrNs(event.time), event.attributes ?? {}]),
    span.links.map((link) => [link.context.traceId, link.context.spanId]),
    (context.traceFlags & 1) === 1,
  ];
}

/** Sends finished spans on the bus, at most 256 to a message. */
export class LoomSpanExporter implements SpanExporter {
  exported = 0;
  dropped = 0;

  constructor(
    private readonly send: (spans: WireSpan[]) => void,
    private readonly service: string,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const wire = spans.map((span) => toWire(span, this.service));
    try {
      for (let start = 0; start < wire.length; start += SPANS_PER_MESSAGE) {
        this.send(wire.slice(start, start + SPANS_PER_MESSAGE));
      }
      this.exported += wire.length;
      done({ code: ExportResultCode.SUCCESS });
    } catch (error) {
      this.dropped += wire.length;
      done({ code: ExportResultCode.FAILED, error: error as Error });
    }
  }

  async shutdown(): Promise<void> {}
}

/** The tracing of one process: the spans of its agents' publishes and handlers. */
export class Tracing {
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;
  readonly exporter: LoomSpanExporter;

  constructor(
    send: (spans: WireSpan[]) => void,
    readonly service: string,
    readonly enabled = true,
  ) {
    this.exporter = new LoomSpanExporter(send, service);
    const processor = new BatchSpanProcessor(this.exporter, {
      scheduledDelayMillis: 500,
      maxExportBatchSize: SPANS_PER_MESSAGE,
    });
    this.provider = new BasicTracerProvider({ spanProcessors: [processor] });
    this.tracer = this.provider.getTracer("loom-sdk-js");
  }

  /** The context an event's `traceparent` names (a fresh root when it has none). */
  parentOf(env: Envelope): OtelContext {
    if (!env.traceparent) return ROOT_CONTEXT;
    return propagator.extract(ROOT_CONTEXT, env, getter);
  }

  /** A started span, child of `parent`. */
  start(
    name: string,
    kind: SpanKind,
    parent: OtelContext,
    agent: string,
    attributes: Attributes = {},
  ): Span | null {
    if (!this.enabled) return null;
    return this.tracer.startSpan(
      name,
      { kind, attributes: { ...attributes, [AGENT_ATTRIBUTE]: agent } },
      parent,
    );
  }

  /** Write the span's context into the envelope's `traceparent` (and `tracestate`). */
  inject(span: Span, env: Envelope): void {
    const carrier: Carrier = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, setter);
    env.traceparent = carrier.traceparent ?? null;
  }

  /** The context whose current span is `span` (the root context for none). */
  contextOf(span: Span | null): OtelContext {
    return span === null ? ROOT_CONTEXT : trace.setSpan(ROOT_CONTEXT, span);
  }

  /** End a span, marking it failed when `error` is given. */
  end(span: Span | null, error?: unknown): void {
    if (span === null) return;
    if (error !== undefined) {
      const exception = error instanceof Error ? error : new Error(String(error));
      span.recordException(exception);
      span.setStatus({ code: SpanStatusCode.ERROR, message: `${exception.name}: ${exception.message}` });
    }
    span.end();
  }

  statistics(): { enabled: boolean; exported: number; dropped: number } {
    return { enabled: this.enabled, exported: this.exporter.exported, dropped: this.exporter.dropped };
  }

  /** Send every finished span now. */
  async flush(): Promise<void> {
    await this.provider.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }
}
