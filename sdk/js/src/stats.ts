/** Latency percentiles over the last samples, as heartbeats report them. */
export class LatencyRecorder {
  private samples: number[] = [];
  private next = 0;

  constructor(private readonly size = 1024) {}

  /** Record one duration, in milliseconds. */
  record(ms: number): void {
    if (this.samples.length < this.size) this.samples.push(ms);
    else this.samples[this.next] = ms;
    this.next = (this.next + 1) % this.size;
  }

  /** The given percentiles (0..100) of the recorded samples, in ms (0 when none). */
  percentiles(...ranks: number[]): number[] {
    if (this.samples.length === 0) return ranks.map(() => 0);
    const sorted = [...this.samples].sort((a, b) => a - b);
    return ranks.map((rank) => {
      const index = Math.min(sorted.length - 1, Math.ceil((rank / 100) * sorted.length) - 1);
      return Math.round(sorted[Math.max(0, index)] * 1000) / 1000;
    });
  }
}
