/**
 * Quality of service: the mailbox between the bus and one handler, as in the Python SDK.
 *
 * - `reliable` (default): every event kept in order; the bound is a safety net whose
 *   overflow is counted as dropped.
 * - `realtime`: bounded; when full the oldest event is dropped and counted.
 * - `batched`: the handler gets arrays of up to `maxSize` events, at most `maxDelay` ms late.
 *
 * The receive loop fills a mailbox synchronously; one consumer drains it.
 */
export type QoS = "reliable" | "realtime" | "batched";
export const QOS_NAMES: readonly QoS[] = ["reliable", "realtime", "batched"];

export class Mailbox<T> {
  received = 0;
  dropped = 0;
  maxDepth = 0;
  private items: T[] = [];
  private head = 0;
  private waiter: (() => void) | null = null;
  private closed = false;

  constructor(
    readonly qos: QoS,
    readonly maxSize: number,
  ) {
    if (!(maxSize >= 1)) throw new RangeError(`mailbox size must be at least 1, got ${maxSize}`);
  }

  get depth(): number {
    return this.items.length - this.head;
  }

  /** Queue an item; never blocks. */
  put(item: T): void {
    if (this.closed) return;
    this.received += 1;
    if (this.depth >= this.maxSize) {
      this.dropped += 1;
      if (this.qos !== "realtime") return; // reliable: the newest is refused, order kept
      this.head += 1; // realtime: the oldest goes
    }
    this.items.push(item);
    if (this.depth > this.maxDepth) this.maxDepth = this.depth;
    this.wake();
  }

  /** The next item, or undefined once the mailbox is closed. */
  async take(): Promise<T | undefined> {
    while (this.depth === 0) {
      if (this.closed) return undefined;
      await this.wait();
    }
    return this.shift();
  }

  /** Up to `maxSize` items, waiting at most `maxDelayMs` after the first; undefined once closed. */
  async takeBatch(maxSize: number, maxDelayMs: number): Promise<T[] | undefined> {
    const first = await this.take();
    if (first === undefined) return undefined;
    const batch: T[] = [first as T];
    const deadline = Date.now() + maxDelayMs;
    while (batch.length < maxSize) {
      if (this.depth > 0) {
        batch.push(this.shift());
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) break;
      await Promise.race([this.wait(), sleep(left)]);
    }
    return batch;
  }

  /** Wake the consumer; it gets what is queued, then undefined. */
  close(): void {
    this.closed = true;
    this.wake();
  }

  private shift(): T {
    const item = this.items[this.head];
    this.items[this.head] = undefined as T;
    this.head += 1;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  private wait(): Promise<void> {
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  private wake(): void {
    const waiter = this.waiter;
    if (waiter !== null) {
      this.waiter = null;
      waiter();
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
