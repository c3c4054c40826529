// A Node process on a Loom bus, driven by a Python test (tests/sdk/test_js_interop.py).
//
// It runs the agent `js-peer`, which
//   - handles `py.to.js.*` and answers each event with `js.saw.<last segment>` (same data);
//   - answers requests on `js.echo` with {"echo": data, "from": "js"};
//   - serves the tools `js.double` ({x: number} -> 2x) and `js.fail` (throws);
// and reads one JSON command per line on stdin, printing one JSON result per line on stdout:
//   {"do": "request", "topic", "data"}      -> {"ok", "reply": {data, source, type, hops}}
//   {"do": "tool", "name", "args"}          -> {"ok", "result"} or {"ok": false, "error", "message"}
//   {"do": "tools", "timeout"}              -> {"ok", "names"} (answers gathered for timeout ms)
//   {"do": "emit", "topic", "data"}         -> {"ok", "id", "traceparent"}
//   {"do": "stats"}                         -> {"ok", "client": ClientStatistics}
// It prints {"ready": clientId} once its agent is live, and exits 0 when stdin closes.
import { createInterface } from "node:readline";

import { Agent, connect } from "../../dist/index.js";

const rt = await connect();
const peer = new Agent("js-peer")
  .onEvent("py.to.js.*", (event, ctx) => {
    const last = event.topic.split(".").pop();
    ctx.emit(`js.saw.${last}`, event.data);
  })
  .onEvent("js.echo", (event, ctx) => {
    ctx.reply(event, { echo: event.data, from: "js" });
  })
  .tool(
    "js.double",
    {
      description: "Twice a number, computed in Node.",
      inputSchema: { type: "object", properties: { x: { type: "number" } }, required: ["x"] },
      outputSchema: { type: "number" },
    },
    async ({ x }) => 2 * x,
  )
  .tool("js.fail", { description: "Always throws." }, async () => {
    throw new RangeError("nothing to see");
  });
await rt.start(peer);
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");
say({ ready: rt.client.clientId });

const commands = {
  async request({ topic, data, timeout }) {
    const reply = await rt.request(topic, data, { timeout: timeout ?? 5000 });
    return { reply: { data: reply.data, source: reply.source, type: reply.type, hops: reply.hops } };
  },
  async tool({ name, args, timeout }) {
    return { result: await rt.tool(name, args ?? {}, { timeout: timeout ?? 5000 }) };
  },
  async tools({ timeout }) {
    return { names: (await rt.tools({ timeout: timeout ?? 500 })).map((tool) => tool.name) };
  },
  async emit({ topic, data }) {
    const env = rt.emit(topic, data);
    return { id: env.id, traceparent: env.traceparent };
  },
  async stats() {
    return { client: rt.client.statistics() };
  },
};

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  try {
    say({ ok: true, ...(await commands[command.do](command)) });
  } catch (error) {
    say({ ok: false, error: error.name, message: error.message });
  }
}
await rt.close();
