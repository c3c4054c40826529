// The Node side of benchmarks/js_sdk.py: publishes `bench.tick` events to the project's
// bus (found from the working directory), as fast as it can or at a steady rate.
//
//   node sdk/js/bench/publisher.mjs --count 100000 [--rate 1000]
//
// At a rate, events are typed `latency` (the receiver records publish -> handler time).
// Prints {"sent", "seconds"} on stdout once everything has left.
import { parseArgs } from "node:util";

import { connect, envelope } from "../dist/index.js";

const { values } = parseArgs({
  options: { count: { type: "string" }, rate: { type: "string", default: "0" } },
});
const count = Number(values.count);
const rate = Number(values.rate);
const DATA = { symbol: "BTC-USDT", price: 43123.51, volume: 0.125, bid: 43123.5, ask: 43123.6 };
const turn = () => new Promise((resolve) => setImmediate(resolve));

const rt = await connect();
const started = performance.now();
if (rate <= 0) {
  for (let index = 0; index < count; index += 1) {
    rt.emit("bench.tick", DATA);
    if (index % 2000 === 1999) await turn(); // let the writer send this turn's batches
  }
} else {
  let sent = 0;
  while (sent < count) {
    const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
    for (; sent < due; sent += 1)
      rt.context.send(envelope({ topic: "bench.tick", data: DATA, type: "latency" }));
    await new Promise((resolve) => setTimeout(resolve, 0.2));
  }
}
await rt.close();
console.log(JSON.stringify({ sent: count, seconds: (performance.now() - started) / 1000 }));
