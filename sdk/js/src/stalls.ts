/**
 * Stalls of the event loop: the times it did not turn for `stall_after` seconds (a handler
 * that computes without awaiting blocks every agent of the process). JavaScript has one thread,
 * so a stall is seen once the loop turns again, by a timer that fires that much too late; the
 * heartbeats then report how many there were and the longest (`stalls`, `longest_stall_ms`).
 */
const TICK_MS = 100;

export class StallWatch {
  stalls = 0;
  longestMs = 0;
  private timer: NodeJS.Timeout | null = null;
  private expected = 0;

  /** @param stallAfterMs how late a turn must be to count as a stall */
  constructor(private readonly stallAfterMs: number) {}

  start(): void {
    this.expected = performance.now() + TICK_MS;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    const now = performance.now();
    const late = now - this.expected;
    if (late >= this.stallAfterMs) {
      this.stalls += 1;
      this.longestMs = Math.max(this.longestMs, Math.round(late));
    }
    this.expected = now + TICK_MS;
  }
}
