/** Wall-clock time in nanoseconds since the Unix epoch, as the header's `ts` wants it.
 *
 * `performance.timeOrigin` is the process's start on the system clock to the microsecond
 * (`Date.now()` would be a millisecond off at worst, which a latency figure would show). */
export function nowNs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1e6);
}
