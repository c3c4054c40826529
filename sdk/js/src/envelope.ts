/**
 * The envelope and its frames (docs/PROTOCOL.md sections 2 to 4): one event is a ZeroMQ
 * message of three frames (topic, JSON header, payload), a batch of one topic's events is
 * four (topic, `{"v":1,"sizes":[...]}`, a JSON array of headers, the payloads end to end).
 */
import { decode as decodeMsgpack } from "@msgpack/msgpack";

import { MalformedMessage } from "./errors.js";

export const PROTOCOL_VERSION = 1;
export const JSON_TYPE = "application/json";
export const TEXT_TYPE = "text/plain";
export const MSGPACK_TYPE = "application/msgpack";
export const BYTES_TYPE = "application/octet-stream";

/** What a message is: the `type` values of section 6 (any other string is allowed). */
export type MessageType =
  | "event"
  | "request"
  | "reply"
  | "error"
  | "cfp"
  | "bid"
  | "award"
  | "reject"
  | "probe"
  | "heartbeat"
  | "stats"
  | "log"
  | "barrier"
  | "tools"
  | "llm"
  | "spans"
  | (string & {});

/** One event on the bus: the header's fields (camelCase), its topic, data and payload. */
export interface Envelope<T = unknown> {
  topic: string;
  /** The payload decoded by its content type. */
  data: T;
  /** The payload's bytes as they travelled. */
  payload: Buffer;
  id: string;
  type: MessageType;
  source: string;
  /** Publish time, nanoseconds since the Unix epoch (0: unknown). */
  ts: number;
  correlationId: string | null;
  threadId: string | null;
  replyTo: string | null;
  /** Time to live after `ts`, in ms (0: forever). */
  ttlMs: number;
  hops: number;
  /** Per-(source, topic) sequence number from 1 (0: not sequenced). */
  seq: number;
  traceparent: string | null;
  tracestate: string | null;
  contentType: string;
  headers: Record<string, string> | null;
}

/** The fields a publisher sets; everything else takes its default. */
export type EnvelopeInit<T = unknown> = Partial<Omit<Envelope<T>, "topic">> & {
  topic: string;
};

const OPTIONAL_STRINGS = [
  ["correlation_id", "correlationId"],
  ["thread_id", "threadId"],
  ["reply_to", "replyTo"],
  ["traceparent", "traceparent"],
  ["tracestate", "tracestate"],
] as const;
const COUNTS = [
  ["ts", "ts"],
  ["ttl_ms", "ttlMs"],
  ["hops", "hops"],
  ["seq", "seq"],
] as const;

/** A new envelope with every default filled in. */
export function envelope<T>(init: EnvelopeInit<T>): Envelope<T> {
  return {
    data: undefined as T,
    payload: EMPTY,
    id: "",
    type: "event",
    source: "",
    ts: 0,
    correlationId: null,
    threadId: null,
    replyTo: null,
    ttlMs: 0,
    hops: 0,
    seq: 0,
    traceparent: null,
    tracestate: null,
    contentType: JSON_TYPE,
    headers: null,
    ...init,
  };
}

const EMPTY = Buffer.alloc(0);

// -- data ---------------------------------------------------------------------------

/** `[payload, content type]` of a value: bytes travel as they are, the rest as JSON. */
export function encodeData(data: unknown): [Buffer, string] {
  if (data === undefined || data === null) return [EMPTY, JSON_TYPE];
  if (data instanceof Uint8Array) return [Buffer.from(data), BYTES_TYPE];
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (error) {
    throw new TypeError(`data cannot be encoded as JSON: ${(error as Error).message}`);
  }
  if (text === undefined) {
    throw new TypeError(`data of type ${typeof data} cannot be encoded as JSON`);
  }
  return [Buffer.from(text, "utf8"), JSON_TYPE];
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A payload decoded by its content type (section 4). */
export function decodeData(payload: Buffer, contentType: string): unknown {
  switch (contentType) {
    case JSON_TYPE:
      return payload.length === 0 ? null : JSON.parse(utf8.decode(payload));
    case TEXT_TYPE:
      return utf8.decode(payload);
    case MSGPACK_TYPE:
      return decodeMsgpack(payload);
    default:
      return payload;
  }
}

// -- header -------------------------------------------------------------------------

/** The header object of an envelope, defaults left out (section 3). */
export function headerOf(env: Envelope): Record<string, unknown> {
  const header: Record<string, unknown> = { v: PROTOCOL_VERSION, id: env.id };
  if (env.type !== "event") header.type = env.type;
  if (env.source) header.source = env.source;
  for (const [key, field] of COUNTS) {
    if (env[field]) header[key] = Math.trunc(env[field]);
  }
  for (const [key, field] of OPTIONAL_STRINGS) {
    if (env[field] !== null) header[key] = env[field];
  }
  if (env.contentType !== JSON_TYPE) header.content_type = env.contentType;
  if (env.headers !== null) header.headers = env.headers;
  return header;
}

/** An envelope from a received header object and payload; throws when it breaks section 3. */
export function fromHeader(topic: string, header: unknown, payload: Buffer): Envelope {
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new MalformedMessage("the header is not a JSON object");
  }
  const h = header as Record<string, unknown>;
  if (h.v !== PROTOCOL_VERSION) {
    throw new MalformedMessage(`protocol version ${JSON.stringify(h.v)} is not 1`);
  }
  if (typeof h.id !== "string" || h.id === "") {
    throw new MalformedMessage("the header has no id");
  }
  const env = envelope({ topic, id: h.id, payload });
  env.type = stringField(h, "type", "event");
  env.source = stringField(h, "source", "");
  env.contentType = stringField(h, "content_type", JSON_TYPE);
  for (const [key, field] of COUNTS) {
    const value = h[key];
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw new MalformedMessage(`header field ${key} must be an integer >= 0`);
    }
    env[field] = value;
  }
  for (const [key, field] of OPTIONAL_STRINGS) {
    const value = h[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== "string") throw new MalformedMessage(`header field ${key} must be a string`);
    env[field] = value;
  }
  env.headers = extensionHeaders(h.headers);
  try {
    env.data = decodeData(payload, env.contentType);
  } catch (error) {
    throw new MalformedMessage(`the payload is not ${env.contentType}: ${(error as Error).message}`);
  }
  return env;
}

function stringField(h: Record<string, unknown>, key: string, fallback: string): string {
  const value = h[key];
  if (value === undefined) return fallback;
  if (typeof value !== "string") throw new MalformedMessage(`header field ${key} must be a string`);
  return value;
}

function extensionHeaders(value: unknown): Record<string, string> | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new MalformedMessage("header field headers must be an object of strings");
  }
  for (const item of Object.values(value as object)) {
    if (typeof item !== "string") {
      throw new MalformedMessage("header field headers must be an object of strings");
    }
  }
  return value as Record<string, string>;
}

// -- frames -------------------------------------------------------------------------

/** The three frames of one event. */
export function eventFrames(env: Envelope): Buffer[] {
  return [Buffer.from(env.topic, "utf8"), Buffer.from(JSON.stringify(headerOf(env))), env.payload];
}

/** The four frames of a batch: events of one topic, in order. */
export function batchFrames(envs: Envelope[]): Buffer[] {
  const sizes = envs.map((env) => env.payload.length);
  return [
    Buffer.from(envs[0].topic, "utf8"),
    Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, sizes })),
    Buffer.from(JSON.stringify(envs.map(headerOf))),
    Buffer.concat(envs.map((env) => env.payload)),
  ];
}

/** The events of one message (three frames, or a batch of four); throws
 * {@link MalformedMessage} when it breaks the protocol (a bad batch is dropped whole). */
export function decodeMessage(frames: Buffer[]): Envelope[] {
  if (frames.length !== 3 && frames.length !== 4) {
    throw new MalformedMessage(`expected 3 or 4 frames, got ${frames.length}`);
  }
  let topic: string;
  try {
    topic = utf8.decode(frames[0]);
  } catch {
    throw new MalformedMessage("the topic is not UTF-8");
  }
  if (frames.length === 3) return [fromHeader(topic, parseJson(frames[1], "header"), frames[2])];
  const batch = parseJson(frames[1], "batch frame") as { v?: unknown; sizes?: unknown };
  const headers = parseJson(frames[2], "batch headers");
  const sizes = batch?.sizes;
  if (batch?.v !== PROTOCOL_VERSION || !Array.isArray(sizes) || !Array.isArray(headers)) {
    throw new MalformedMessage("the batch frame is not {v: 1, sizes: [...]} with an array of headers");
  }
  if (sizes.length !== headers.length) {
    throw new MalformedMessage(`the batch has ${headers.length} headers for ${sizes.length} sizes`);
  }
  const payloads = frames[3];
  let start = 0;
  const events = headers.map((header, index) => {
    const size = sizes[index];
    if (!Number.isInteger(size) || size < 0) throw new MalformedMessage("a batch size is not an integer");
    const env = fromHeader(topic, header, payloads.subarray(start, start + size));
    start += size;
    return env;
  });
  if (start !== payloads.length) {
    throw new MalformedMessage(`the batch sizes add up to ${start}, not ${payloads.length} bytes`);
  }
  return events;
}

function parseJson(frame: Buffer, what: string): unknown {
  try {
    return JSON.parse(utf8.decode(frame));
  } catch (error) {
    throw new MalformedMessage(`the ${what} is not JSON: ${(error as Error).message}`);
  }
}

/** True when the event's time to live has run out. */
export function expired(env: Envelope, nowNs: number): boolean {
  return env.ttlMs > 0 && env.ts > 0 && nowNs > env.ts + env.ttlMs * 1e6;
}
