// Agents of the SDK on a real ZeroMQ broker: events, requests, tools, QoS, errors.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import * as zmq from "zeromq";

import {
  Agent,
  connect,
  type Envelope,
  RemoteError,
  RequestTimeout,
  type Runtime,
  ToolError,
  ToolTimeout,
} from "../src/index.js";
import { startBroker, type TestBroker } from "./broker.js";

let broker: TestBroker;
let rt: Runtime;
const LIMIT = { timeout: 20_000 };

before(async () => {
  broker = await startBroker();
  const config = join(mkdtempSync(join(tmpdir(), "loom-js-")), "loom.toml");
  writeFileSync(config, "[runtime]\nheartbeat_interval = 0.1\nstall_after = 0.2\n");
  rt = await connect({ endpoints: broker.endpoints, config });
});

after(async () => {
  await rt?.close();
  await broker?.close();
});

/** Resolves with `n` items once `push` has been called `n` times. */
function collector<T>(n: number): { push(item: T): void; done: Promise<T[]> } {
  const items: T[] = [];
  let resolve: (items: T[]) => void;
  const done = new Promise<T[]>((r) => (resolve = r));
  return {
    push(item: T) {
      items.push(item);
      if (items.length === n) resolve(items);
    },
    done,
  };
}

test("a burst of events arrives whole, in order, numbered from 1", LIMIT, async () => {
  const got = collector<Envelope>(2000);
  const agent = new Agent("burst-sink").onEvent("burst.*", (event) => got.push(event));
  await rt.start(agent);
  for (let i = 0; i < 2000; i += 1) rt.emit("burst.x", i); // one turn: sent as batches
  const events = await got.done;
  assert.deepEqual(
    events.map((e) => e.data),
    [...Array(2000).keys()],
  );
  assert.deepEqual(
    events.map((e) => e.seq),
    [...Array(2000).keys()].map((i) => i + 1),
  );
  assert.equal(rt.client.statistics().gaps, 0);
  await rt.stop(agent);
});

test("a plain PUB socket's event (no batching, no SDK) reaches a handler", LIMIT, async () => {
  const got = collector<Envelope>(1);
  await rt.start(new Agent("plain-sink").onEvent("plain.x", (event) => got.push(event)));
  const pub = new zmq.Publisher();
  pub.connect(broker.endpoints.publish);
  const header = JSON.stringify({ v: 1, id: "p-1", source: "plain", seq: 1 });
  let events: Envelope[] = [];
  const sending = setInterval(() => void pub.send(["plain.x", header, '{"n":1}']), 20);
  try {
    events = await got.done;
  } finally {
    clearInterval(sending);
    pub.close();
    await rt.stop("plain-sink");
  }
  assert.deepEqual(events[0].data, { n: 1 });
  assert.equal(events[0].source, "plain");
});

test("request and reply between agents, with the thread and hops of the request", LIMIT, async () => {
  await rt.start(
    new Agent("doubler").onEvent("math.double", (event, ctx) => {
      ctx.reply(event, (event.data as number) * 2);
    }),
  );
  const reply = await rt.request<number>("math.double", 21);
  assert.equal(reply.data, 42);
  assert.equal(reply.type, "reply");
  assert.equal(reply.source, "doubler");
  assert.equal(reply.hops, 1);
  await rt.stop("doubler");
});

test("a handler that throws on a request answers with an error reply", LIMIT, async () => {
  await rt.start(
    new Agent("thrower").onEvent("math.fail", () => {
      throw new RangeError("out of range");
    }),
  );
  await assert.rejects(rt.request("math.fail", 1), (error: Error) => {
    return (
      error instanceof RemoteError &&
      error.errorType === "RangeError" &&
      /thrower failed handling "math.fail"/.test(error.message)
    );
  });
  assert.equal(rt.agents.get("thrower")!.errors, 1);
  await rt.stop("thrower");
});

test("a request nobody answers times out", LIMIT, async () => {
  await assert.rejects(rt.request("nobody.home", null, { timeout: 100 }), RequestTimeout);
});

test("tools: called by name, arguments checked against the schema, errors named", LIMIT, async () => {
  const agent = new Agent("calc")
    .tool(
      "calc.add",
      {
        description: "a + b",
        inputSchema: {
          type: "object",
          properties: { a: { type: "number" }, b: { type: "number" } },
          required: ["a", "b"],
          additionalProperties: false,
        },
      },
      ({ a, b }) => a + b,
    )
    .tool("calc.boom", {}, () => {
      throw new Error("kaput");
    });
  await rt.start(agent);
  assert.equal(await rt.tool("calc.add", { a: 2, b: 3 }), 5);
  await assert.rejects(rt.tool("calc.add", { a: 2, c: 1 }), {
    name: "ToolError",
    message: "tool calc.add: argument 'b' is missing; argument 'c' is not accepted (it takes: a, b)",
  });
  await assert.rejects(
    rt.tool("calc.boom"),
    (error: Error) => error instanceof ToolError && /kaput/.test(error.message),
  );
  await assert.rejects(rt.tool("calc.none", {}, { timeout: 100 }), ToolTimeout);
  const tools = await rt.tools({ timeout: 200 });
  assert.deepEqual(
    tools.map((tool) => [tool.name, tool.provider]),
    [
      ["calc.add", "agent:calc"],
      ["calc.boom", "agent:calc"],
    ],
  );
  await rt.stop(agent);
});

test("batched QoS hands the handler arrays; a handler past its timeout fails", LIMIT, async () => {
  const got = collector<number>(50);
  let largest = 0; // asserted below: a throw inside a handler is the agent's error, not the test's
  await rt.start(
    new Agent("batcher").onEvent(
      "batch.x",
      (events: Envelope[]) => {
        largest = Math.max(largest, events.length);
        for (const event of events) got.push(event.data as number);
      },
      { qos: "batched", maxSize: 20, maxDelay: 10 },
    ),
    new Agent("sleeper").onEvent("slow.x", () => new Promise((resolve) => setTimeout(resolve, 500)), {
      timeout: 50,
    }),
  );
  for (let i = 0; i < 50; i += 1) rt.emit("batch.x", i);
  assert.deepEqual(await got.done, [...Array(50).keys()]);
  assert.ok(largest > 1 && largest <= 20, `batches of up to 20, got ${largest}`);
  await assert.rejects(rt.request("slow.x", null, { timeout: 5000 }), (error: Error) => {
    return error instanceof RemoteError && error.errorType === "HandlerTimeout";
  });
  assert.equal(rt.agents.get("sleeper")!.timeouts, 1);
  await rt.stop("batcher");
  await rt.stop("sleeper");
});

test("heartbeats say what each agent is and does", LIMIT, async () => {
  const beats = collector<Envelope>(1);
  const watcher = new Agent("watcher", { traced: false }).onEvent("loom.agent.*.heartbeat", (event) => {
    if ((event.data as { agent_id: string }).agent_id === "beating") beats.push(event);
  });
  await rt.start(
    watcher,
    new Agent("beating").onEvent("beat.*", () => {}),
  );
  const [beat] = await beats.done;
  const data = beat.data as Record<string, unknown>;
  assert.equal(data.status, "running");
  assert.deepEqual(data.patterns, ["beat.*"]);
  assert.equal(data.process, rt.client.clientId);
  assert.equal(data.pid, process.pid);
  assert.equal(data.observer, false);
  await rt.stop("beating");
  await rt.stop(watcher);
});

test("a gap in a source's sequence is counted as lost, in the agent's heartbeat too", LIMIT, async () => {
  let live: () => void = () => {};
  let fifth: () => void = () => {};
  const first = new Promise<void>((resolve) => (live = resolve));
  const last = new Promise<void>((resolve) => (fifth = resolve));
  await rt.start(new Agent("gappy").onEvent("gap.x", (event) => (event.seq === 5 ? fifth() : live())));
  const pub = new zmq.Publisher();
  pub.connect(broker.endpoints.publish);
  const header = (seq: number) => JSON.stringify({ v: 1, id: `g-${seq}`, source: "gapper", seq });
  const again = setInterval(() => void pub.send(["gap.x", header(1), "1"]), 20); // until it connects
  try {
    await first;
    clearInterval(again);
    await pub.send(["gap.x", header(5), "5"]); // 2, 3 and 4 never came
    await last;
  } finally {
    clearInterval(again);
    pub.close();
  }
  assert.equal(rt.agents.get("gappy")!.heartbeat().lost, 3);
  await rt.stop("gappy");
});

test("a handler that blocks the event loop is counted as a stall", LIMIT, async () => {
  await rt.start(
    new Agent("blocker").onEvent("block.x", () => {
      const until = performance.now() + 400; // computes without awaiting: nothing else runs
      while (performance.now() < until);
    }),
  );
  await rt.request("block.x", null, { timeout: 50 }).catch(() => {}); // no reply: it only blocks
  const seen = new Promise<Record<string, number>>((resolve) => {
    const check = setInterval(() => {
      const beat = rt.agents.get("blocker")!.heartbeat() as Record<string, number>;
      if (beat.stalls >= 1) {
        clearInterval(check);
        resolve(beat);
      }
    }, 20);
  });
  const beat = await seen;
  assert.ok(beat.longest_stall_ms >= 200, `longest ${beat.longest_stall_ms} ms`);
  await rt.stop("blocker");
});
