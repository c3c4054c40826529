/**
 * The bus client: one PUB and one SUB socket on a Loom broker (docs/PROTOCOL.md).
 *
 * It numbers what it publishes per (source, topic), sends the events published in one
 * turn of the event loop together (each run of one topic as a batch of four frames),
 * makes a subscription live on the whole bus before `subscribe()` returns (a probe round
 * trip, section 8), filters every arriving topic exactly, counts gaps, expired and
 * malformed messages, and routes replies to the requests waiting for them.
 */
import { randomBytes } from "node:crypto";

import * as zmq from "zeromq";

import { nowNs } from "./clock.js";
import type { CurveKeys } from "./curve.js";
import type { Endpoints } from "./discovery.js";
import { batchFrames, decodeMessage, type Envelope, envelope, eventFrames, expired } from "./envelope.js";
import { BusError, MalformedMessage } from "./errors.js";
import { compilePattern, type Pattern, validateTopic } from "./topics.js";

export const PROBE_PREFIX = "loom.probe.";
export const REPLY_PREFIX = "loom.reply.";
const MAX_BATCH_EVENTS = 1024;
const MAX_BATCH_BYTES = 1 << 20;

export interface BusOptions {
  /** ZeroMQ high-water marks, in messages (Loom's default: 100,000). */
  hwm?: number;
  /** Send a turn's events of one topic as one message (default true). */
  batching?: boolean;
  /** Largest payload this client sends, in bytes (default 16 MiB, `[bus] max_message_size`). */
  maxMessageSize?: number;
  /** How long `connect()` and `subscribe()` wait for the broker, in ms (default 5,000). */
  readyTimeout?: number;
  /** Where a dropped malformed message is reported (default: console.warn, 1 per 10 s). */
  warn?: (message: string) => void;
  /** The keys of a CURVE bus (`[bus] security = "curve"`; `connect()` loads them). */
  curve?: CurveKeys | null;
}

/** What the client has sent and received, as `loom.client.<id>.stats` reports it. */
export interface ClientStatistics {
  client_id: string;
  published: number;
  received: number;
  delivered: number;
  malformed: number;
  lost: number;
  gaps: number;
  expired: number;
  late_replies: number;
  oversized: number;
  subscriptions: string[];
}

/** One live subscription: every matching event is handed to `deliver`, synchronously. */
export class BusSubscription {
  received = 0;
  /** Sequence gaps seen on topics this subscription matches, and the events they lost. */
  gaps = 0;
  lost = 0;
  constructor(
    readonly pattern: Pattern,
    readonly deliver: (env: Envelope) => void,
  ) {}
}

export class BusClient {
  /** This process on the bus: reply topics, span batches and statistics name it. */
  readonly clientId: string;
  /** The identity this client proves on a CURVE bus, else null. */
  get identity(): string | null {
    return this.options.curve?.identity ?? null;
  }
  private readonly idPrefix = randomBytes(6).toString("hex");
  private idCounter = 0;
  private readonly pub: zmq.Publisher;
  private readonly sub: zmq.Subscriber;
  private readonly subscriptions = new Set<BusSubscription>();
  private readonly prefixes = new Map<string, number>();
  private readonly sendSeq = new Map<string, number>();
  private readonly lastSeq = new Map<string, number>();
  private readonly replies = new Map<string, (reply: Envelope) => void>();
  private readonly probes = new Map<string, () => void>();
  private outbox: Envelope[] = [];
  private writing: Promise<void> | null = null;
  private receiving: Promise<void> | null = null;
  private closed = false;
  private lastWarning = 0;
  private readonly stats = {
    published: 0,
    received: 0,
    delivered: 0,
    malformed: 0,
    lost: 0,
    gaps: 0,
    expired: 0,
    late_replies: 0,
    oversized: 0,
  };

  private constructor(
    readonly endpoints: Endpoints,
    private readonly options: Required<BusOptions>,
  ) {
    this.clientId = `js-${randomBytes(5).toString("hex")}`;
    const hwm = options.hwm;
    const keys = options.curve;
    const curve = keys
      ? { curveServerKey: keys.serverKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey }
      : {};
    this.pub = new zmq.Publisher({ sendHighWaterMark: hwm, linger: 1000, ...curve });
    this.sub = new zmq.Subscriber({
      receiveHighWaterMark: hwm,
      linger: 0,
      maxMessageSize: options.maxMessageSize + 65536,
      ...curve,
    });
  }

  /** A client connected to a running broker, its publisher live (a probe came back).
   * Throws {@link BusError} when no broker answers within `readyTimeout`. */
  static async connect(endpoints: Endpoints, options: BusOptions = {}): Promise<BusClient> {
    const client = new BusClient(endpoints, {
      hwm: options.hwm ?? 100_000,
      batching: options.batching ?? true,
      maxMessageSize: options.maxMessageSize ?? 16 * 1024 * 1024,
      readyTimeout: options.readyTimeout ?? 5000,
      warn: options.warn ?? ((message) => console.warn(`loom: ${message}`)),
      curve: options.curve ?? null,
    });
    try {
      client.pub.connect(endpoints.publish);
      client.sub.connect(endpoints.subscribe);
    } catch (error) {
      await client.close();
      throw new BusError(`cannot connect to ${endpoints.publish}: ${(error as Error).message}`);
    }
    client.receiving = client.receiveLoop();
    try {
      await client.ready();
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** A fresh event id: this client's prefix and a counter. */
  newId(): string {
    this.idCounter += 1;
    return `${this.idPrefix}-${this.idCounter.toString(16)}`;
  }

  /** Queue an event (id, payload and source already set); it leaves at the end of this turn.
   * Throws {@link TopicError} for a bad topic and {@link BusError} when closed or too big. */
  publish(env: Envelope): void {
    if (this.closed) throw new BusError("the bus client is closed");
    validateTopic(env.topic);
    if (env.payload.length > this.options.maxMessageSize) {
      this.stats.oversized += 1;
      throw new BusError(
        `event on '${env.topic}' is ${env.payload.length} bytes, over the bus's ` +
          `${this.options.maxMessageSize} ([bus] max_message_size): send a reference instead`,
      );
    }
    if (!env.id) env.id = this.newId();
    if (!env.ts) env.ts = nowNs();
    if (env.type !== "probe") {
      const key = `${env.source}\u0000${env.topic}`;
      const seq = (this.sendSeq.get(key) ?? 0) + 1;
      this.sendSeq.set(key, seq);
      env.seq = seq;
    }
    this.outbox.push(env);
    this.stats.published += 1;
    if (this.writing === null) this.writing = this.drain();
  }

  /** Deliver every event matching `pattern`; resolves once the subscription is live at the
   * broker. Throws {@link TopicError} for a bad pattern. */
  async subscribe(pattern: string, deliver: (env: Envelope) => void): Promise<BusSubscription> {
    const subscription = new BusSubscription(compilePattern(pattern), deliver);
    this.subscriptions.add(subscription);
    this.addPrefix(subscription.pattern.prefix);
    await this.ready();
    return subscription;
  }

  unsubscribe(subscription: BusSubscription): void {
    if (!this.subscriptions.delete(subscription)) return;
    this.removePrefix(subscription.pattern.prefix);
  }

  /** The first reply carrying `correlationId` (call {@link forget} when giving up). */
  expectReply(correlationId: string): Promise<Envelope> {
    return new Promise((resolve) =>
      this.onReply(correlationId, (reply) => {
        this.forget(correlationId);
        resolve(reply);
      }),
    );
  }

  /** Hand every reply carrying `correlationId` to `deliver` until {@link forget}. */
  onReply(correlationId: string, deliver: (reply: Envelope) => void): void {
    this.replies.set(correlationId, deliver);
  }

  forget(correlationId: string): void {
    this.replies.delete(correlationId);
  }

  statistics(): ClientStatistics {
    return {
      client_id: this.clientId,
      ...this.stats,
      subscriptions: [...this.subscriptions].map((subscription) => subscription.pattern.text),
    };
  }

  /** Round-trip a probe: every earlier subscription is live and the publisher connected. */
  async ready(timeout = this.options.readyTimeout): Promise<void> {
    const topic = `${PROBE_PREFIX}${this.clientId}.${this.newId().split("-")[1]}`;
    let done = false;
    const arrived = new Promise<void>((resolve) => this.probes.set(topic, resolve));
    this.addPrefix(topic);
    const deadline = Date.now() + timeout;
    try {
      void arrived.then(() => (done = true));
      while (!done) {
        if (Date.now() > deadline) {
          const curve = this.options.curve;
          throw new BusError(
            `no Loom broker answered at ${this.endpoints.subscribe} within ${timeout} ms: ` +
              (curve
                ? `on a CURVE bus, check that the broker admits identity '${curve.identity}' ` +
                  "([bus] allow) and that broker.key is the running broker's"
                : "is a runtime or `loom bus` running for this project?"),
          );
        }
        this.publish(envelope({ topic, type: "probe", source: this.clientId }));
        await Promise.race([arrived, delay(5)]);
      }
    } finally {
      this.probes.delete(topic);
      this.removePrefix(topic);
    }
  }

  /** Send what is queued, then close both sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writing;
    this.pub.close();
    this.sub.close();
    await this.receiving;
    this.subscriptions.clear();
  }

  // -- sending ----------------------------------------------------------------------

  private async drain(): Promise<void> {
    await Promise.resolve(); // the rest of this turn's events join the first ones
    try {
      while (this.outbox.length > 0) {
        const queued = this.outbox;
        this.outbox = [];
        for (const frames of this.messages(queued)) await this.pub.send(frames);
      }
    } catch (error) {
      if (!this.closed) this.options.warn(`sending failed: ${(error as Error).message}`);
    } finally {
      this.writing = null;
    }
  }

  private *messages(queued: Envelope[]): Generator<Buffer[]> {
    if (!this.options.batching) {
      for (const env of queued) yield eventFrames(env);
      return;
    }
    let run: Envelope[] = [];
    let bytes = 0;
    for (const env of queued) {
      const full = run.length >= MAX_BATCH_EVENTS || bytes + env.payload.length > MAX_BATCH_BYTES;
      if (run.length > 0 && (run[0].topic !== env.topic || full)) {
        yield run.length === 1 ? eventFrames(run[0]) : batchFrames(run);
        run = [];
        bytes = 0;
      }
      run.push(env);
      bytes += env.payload.length;
    }
    if (run.length > 0) yield run.length === 1 ? eventFrames(run[0]) : batchFrames(run);
  }

  // -- receiving --------------------------------------------------------------------

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.sub) this.receive(frames);
    } catch (error) {
      if (!this.closed) this.options.warn(`receiving stopped: ${(error as Error).message}`);
    }
  }

  private receive(frames: Buffer[]): void {
    let events: Envelope[];
    try {
      events = decodeMessage(frames);
    } catch (error) {
      if (!(error instanceof MalformedMessage)) throw error;
      this.malformed(error.message);
      return;
    }
    for (const env of events) this.route(env);
  }

  private route(env: Envelope): void {
    const topic = env.topic;
    if (topic.startsWith(PROBE_PREFIX)) {
      this.probes.get(topic)?.();
      return;
    }
    try {
      validateTopic(topic);
    } catch (error) {
      this.malformed((error as Error).message);
      return;
    }
    this.stats.received += 1;
    const isReply = topic.startsWith(REPLY_PREFIX);
    if (!isReply) {
      if (expired(env, nowNs())) {
        this.stats.expired += 1;
        return;
      }
      this.checkSequence(env);
    }
    if (isReply && topic.startsWith(`${REPLY_PREFIX}${this.clientId}.`) && env.correlationId) {
      const deliver = this.replies.get(env.correlationId);
      if (deliver === undefined) this.stats.late_replies += 1;
      else deliver(env);
    }
    for (const subscription of this.subscriptions) {
      if (subscription.pattern.matches(topic)) {
        subscription.received += 1;
        this.stats.delivered += 1;
        subscription.deliver(env);
      }
    }
  }

  private checkSequence(env: Envelope): void {
    if (env.seq === 0) return;
    const key = `${env.source}\u0000${env.topic}`;
    const last = this.lastSeq.get(key);
    if (last !== undefined && env.seq > last + 1) {
      const lost = env.seq - last - 1;
      this.stats.gaps += 1;
      this.stats.lost += lost;
      for (const subscription of this.subscriptions) {
        if (subscription.pattern.matches(env.topic)) {
          subscription.gaps += 1;
          subscription.lost += lost;
        }
      }
    }
    this.lastSeq.set(key, env.seq);
  }

  private malformed(why: string): void {
    this.stats.malformed += 1;
    const now = Date.now();
    if (now - this.lastWarning > 10_000) {
      this.lastWarning = now;
      this.options.warn(`dropped a malformed message (${this.stats.malformed} so far): ${why}`);
    }
  }

  private addPrefix(prefix: string): void {
    const count = this.prefixes.get(prefix) ?? 0;
    this.prefixes.set(prefix, count + 1);
    if (count === 0) this.sub.subscribe(prefix);
  }

  private removePrefix(prefix: string): void {
    const count = (this.prefixes.get(prefix) ?? 1) - 1;
    if (count > 0) {
      this.prefixes.set(prefix, count);
      return;
    }
    this.prefixes.delete(prefix);
    if (!this.closed) this.sub.unsubscribe(prefix);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
