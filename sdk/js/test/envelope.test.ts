// The frames of docs/PROTOCOL.md sections 2 to 4, both ways.
import assert from "node:assert/strict";
import { test } from "node:test";

import { batchFrames, decodeMessage, envelope, eventFrames, expired, headerOf } from "../src/envelope.js";
import { MalformedMessage } from "../src/errors.js";

const frame = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value));

test("the worked example of section 2 decodes", () => {
  const [env] = decodeMessage([
    frame("market.price.BTC"),
    frame({ v: 1, id: "3f2a9c1b7e40-1", source: "feed", ts: 1718000000000000000, seq: 1 }),
    frame({ price: 67000.5 }),
  ]);
  assert.equal(env.topic, "market.price.BTC");
  assert.deepEqual(env.data, { price: 67000.5 });
  assert.equal(env.type, "event");
  assert.equal(env.contentType, "application/json");
  assert.equal(env.seq, 1);
  assert.equal(env.correlationId, null);
});

test("a header leaves out its defaults and round-trips", () => {
  const env = envelope({
    topic: "a.b",
    id: "x-1",
    source: "s",
    ts: 5,
    payload: frame({ k: 1 }),
    data: { k: 1 },
  });
  assert.deepEqual(headerOf(env), { v: 1, id: "x-1", source: "s", ts: 5 });
  env.type = "request";
  env.replyTo = "loom.reply.c.s";
  env.correlationId = "c-1";
  env.headers = { "x-a": "1" };
  const [back] = decodeMessage(eventFrames(env));
  assert.deepEqual({ ...back, payload: null }, { ...env, payload: null });
});

test("a batch of four frames is read event by event, in order", () => {
  const events = ["a", "bb", ""].map((text, index) =>
    envelope({
      topic: "t.x",
      id: `i-${index}`,
      seq: index + 1,
      payload: Buffer.from(text ? JSON.stringify(text) : ""),
    }),
  );
  const frames = batchFrames(events);
  assert.equal(frames.length, 4);
  const decoded = decodeMessage(frames);
  assert.deepEqual(
    decoded.map((env) => env.data),
    ["a", "bb", null],
  );
  assert.deepEqual(
    decoded.map((env) => env.seq),
    [1, 2, 3],
  );
});

test("content types decode as section 4 says", () => {
  const decode = (contentType: string, payload: Buffer) =>
    decodeMessage([frame("t"), frame({ v: 1, id: "i", content_type: contentType }), payload])[0].data;
  assert.equal(decode("text/plain", Buffer.from("héllo")), "héllo");
  assert.deepEqual(decode("application/octet-stream", Buffer.from([1, 2])), Buffer.from([1, 2]));
  assert.deepEqual(decode("application/msgpack", Buffer.from([0x81, 0xa1, 0x61, 0x01])), { a: 1 });
  assert.equal(decode("application/json", Buffer.alloc(0)), null);
});

test("what breaks the protocol is refused, saying why", () => {
  const good = { v: 1, id: "i" };
  const cases: [Buffer[], RegExp][] = [
    [[frame("t")], /expected 3 or 4 frames/],
    [[frame("t"), frame("not json"), Buffer.alloc(0)], /header is not JSON/],
    [[frame("t"), frame({ ...good, v: 2 }), Buffer.alloc(0)], /version 2 is not 1/],
    [[frame("t"), frame({ v: 1, id: "" }), Buffer.alloc(0)], /no id/],
    [[frame("t"), frame({ ...good, ts: 1.5 }), Buffer.alloc(0)], /ts must be an integer/],
    [[frame("t"), frame({ ...good, seq: "1" }), Buffer.alloc(0)], /seq must be an integer/],
    [[frame("t"), frame({ ...good, source: null }), Buffer.alloc(0)], /source must be a string/],
    [[frame("t"), frame({ ...good, headers: { a: 1 } }), Buffer.alloc(0)], /object of strings/],
    [[frame("t"), frame(good), frame("{broken")], /payload is not application\/json/],
    [[frame("t"), frame({ v: 1, sizes: [1] }), frame([good]), frame("12")], /add up to 1, not 2/],
    [[frame("t"), frame({ v: 2, sizes: [] }), frame([]), Buffer.alloc(0)], /batch frame/],
    [[frame("t"), frame({ v: 1, sizes: [1, 1] }), frame([good]), frame("12")], /1 headers for 2 sizes/],
  ];
  for (const [frames, why] of cases) {
    assert.throws(
      () => decodeMessage(frames),
      (error: Error) => error instanceof MalformedMessage && why.test(error.message),
    );
  }
});

test("an event expires ttl_ms after its ts, never without either", () => {
  const env = envelope({ topic: "t", ts: 1_000_000_000, ttlMs: 5 });
  assert.equal(expired(env, 1_000_000_000 + 4e6), false);
  assert.equal(expired(env, 1_000_000_000 + 6e6), true);
  assert.equal(expired({ ...env, ttlMs: 0 }, 1e19), false);
});
