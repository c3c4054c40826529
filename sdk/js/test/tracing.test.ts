// Spans in the wire form of docs/PROTOCOL.md section 10, and trace context in the header.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SpanKind } from "@opentelemetry/api";

import { envelope } from "../src/envelope.js";
import { Tracing, type WireSpan } from "../src/tracing.js";

test("a handler span continues the event's trace and travels as 15 fields", async () => {
  const sent: WireSpan[][] = [];
  const tracing = new Tracing((spans) => sent.push(spans), "loom:test");
  const incoming = envelope({
    topic: "a.b",
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  });
  const span = tracing.start("handle a.b", SpanKind.CONSUMER, tracing.parentOf(incoming), "agent-1", {
    "messaging.destination.name": "a.b",
  })!;
  const out = envelope({ topic: "c.d" });
  tracing.inject(span, out);
  tracing.end(span, new TypeError("bad"));
  await tracing.flush();
  const [wire] = sent.flat();
  assert.equal(wire.length, 15);
  const [
    traceId,
    spanId,
    parentId,
    name,
    kind,
    start,
    end,
    status,
    message,
    service,
    agent,
    attributes,
    events,
    links,
    sampled,
  ] = wire;
  assert.equal(traceId, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(parentId, "b7ad6b7169203331");
  assert.deepEqual(
    [name, kind, status, message, service, agent],
    ["handle a.b", "consumer", "error", "TypeError: bad", "loom:test", "agent-1"],
  );
  assert.ok(end >= start && start > 1.6e18);
  assert.deepEqual(attributes, { "messaging.destination.name": "a.b" });
  assert.equal(events[0][0], "exception");
  assert.equal(events[0][2]["exception.type"], "TypeError");
  assert.deepEqual([links, sampled], [[], true]);
  assert.equal(out.traceparent, `00-${traceId}-${spanId}-01`);
  await tracing.shutdown();
});

test("an event without trace context starts a new trace; an unsampled one stays unsampled", async () => {
  const sent: WireSpan[][] = [];
  const tracing = new Tracing((spans) => sent.push(spans), "loom:test");
  const root = tracing.start(
    "publish x",
    SpanKind.PRODUCER,
    tracing.parentOf(envelope({ topic: "x" })),
    "a",
  )!;
  tracing.end(root);
  const unsampled = envelope({
    topic: "y",
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
  });
  tracing.end(tracing.start("handle y", SpanKind.CONSUMER, tracing.parentOf(unsampled), "a"));
  await tracing.flush();
  assert.deepEqual(
    sent.flat().map((span) => [span[3], span[2]]),
    [["publish x", null]],
  );
  await tracing.shutdown();
});
