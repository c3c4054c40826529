// A Node agent on the Market Analyst demo's bus: it reads the trend, risk and sentiment
// analyses (`analysis.*.<SYMBOL>`) the Python agents publish, and when trend and sentiment
// agree on a symbol whose risk budget is open, it says so on `alerts.consensus.<SYMBOL>`.
// It also serves the tool `watcher.summary`, callable from Python (`await ctx.tool(...)`).
//
//   make demo                                              # in one terminal
//   node sdk/js/examples/analysis-watcher.mjs              # in another (after make sdk-js)
//
// It finds the demo's running bus through demo/market_analyst/.loom/bus.json (set
// LOOM_CONFIG to join another project), and shows in the studio's Agents table as
// `js-watcher`, with its heartbeat, its spans and its log lines. Ctrl-C stops it cleanly.
import { fileURLToPath } from "node:url";

import { Agent, connect } from "../dist/index.js";

const DEMO = fileURLToPath(new URL("../../../demo/market_analyst/loom.toml", import.meta.url));
const views = new Map(); // symbol -> {trend, sentiment, risk, consensus}

function consensus(view) {
  const { trend, sentiment, risk } = view;
  if (!trend?.ready || !sentiment || !risk?.allowed) return null;
  if (trend.signal === "bullish" && sentiment.label === "positive") return "long";
  if (trend.signal === "bearish" && sentiment.label === "negative") return "short";
  return null;
}

const watcher = new Agent("js-watcher")
  .onEvent(
    "analysis.*",
    (event, ctx) => {
      const [, kind, symbol] = event.topic.split(".");
      const view = views.get(symbol) ?? {};
      view[kind] = event.data;
      views.set(symbol, view);
      const now = consensus(view) ?? "none";
      if (now === (view.consensus ?? "none")) return;
      view.consensus = now;
      const alert = {
        symbol,
        consensus: now,
        trend: view.trend?.signal,
        strength: view.trend?.strength,
        sentiment: view.sentiment?.score,
      };
      ctx.emit(`alerts.consensus.${symbol}`, alert);
      ctx.log("INFO", `${symbol}: consensus ${alert.consensus}`);
      console.log(`js-watcher: ${symbol} consensus ${alert.consensus}`, alert);
    },
    { qos: "realtime" },
  )
  .tool(
    "watcher.summary",
    {
      description: "What the Node watcher last saw for each symbol: trend, sentiment, risk, consensus.",
      inputSchema: { type: "object", properties: { symbol: { type: "string" } } },
    },
    ({ symbol }) => {
      const rows = [...views].map(([name, view]) => ({
        symbol: name,
        trend: view.trend?.signal ?? null,
        sentiment: view.sentiment?.label ?? null,
        risk_allowed: view.risk?.allowed ?? null,
        consensus: view.consensus ?? "none",
      }));
      return symbol ? rows.filter((row) => row.symbol === symbol) : rows;
    },
  );

const rt = await connect({ config: process.env.LOOM_CONFIG ?? DEMO });
await rt.start(watcher);
console.log(`js-watcher joined the bus as ${rt.client.clientId}; Ctrl-C to stop`);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    await rt.close();
    process.exit(0);
  });
}
