/** Wall-clock time in nanoseconds since the Unix epoch, as the header's `ts` wants it. */
const originNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** Now, in nanoseconds since the epoch (a JS number: exact to a few hundred ns). */
export function nowNs(): number {
  return Number(originNs + process.hrtime.bigint());
}
