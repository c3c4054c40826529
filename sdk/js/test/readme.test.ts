// The README's ten-line agent, run as a user would: a script in a project whose
// .loom/bus.json names a live broker. A second runtime then talks to it.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { connect, type Envelope } from "../src/index.js";
import { startBroker } from "./broker.js";

const SDK = fileURLToPath(new URL("../../", import.meta.url));

test("the README's agent runs, answers, serves its tool and emits", { timeout: 30_000 }, async () => {
  const readme = readFileSync(join(SDK, "README.md"), "utf8");
  const code = /```js\n([\s\S]*?)```/.exec(readme)![1];
  assert.ok(code.split("\n").filter((line) => line.trim()).length <= 10, "the README promises ten lines");
  const broker = await startBroker();
  const project = mkdtempSync(join(tmpdir(), "loom-readme-"));
  writeFileSync(join(project, "loom.toml"), "[runtime]\nheartbeat_interval = 0.2\n");
  mkdirSync(join(project, ".loom"));
  writeFileSync(
    join(project, ".loom", "bus.json"),
    JSON.stringify({ ...broker.endpoints, pid: process.pid }),
  );
  const script = join(project, "agent.mjs");
  const index = new URL("../../dist/index.js", import.meta.url).href;
  writeFileSync(script, code.replace('"@loom/sdk"', JSON.stringify(index)) + '\nconsole.log("started");\n');
  const child = spawn(process.execPath, [script], { cwd: project, stdio: ["ignore", "pipe", "inherit"] });
  const rt = await connect({ endpoints: broker.endpoints, config: join(project, "loom.toml") });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("started") && resolve());
      child.on("exit", (status) => reject(new Error(`the README's agent exited with ${status}`)));
    });
    assert.equal((await rt.request("shout.please", "hi")).data, "hi!");
    assert.equal(await rt.tool("shout", { text: "hi" }), "HI");
    await assert.rejects(rt.tool("shout", {}), /argument 'text' is missing/);
    let hear: (event: Envelope) => void = () => {};
    const heard = new Promise<Envelope>((resolve) => (hear = resolve));
    await rt.client.subscribe("shouts.heard", (event) => hear(event)); // live when it resolves
    rt.emit("greetings.all", "hi");
    const shout = await heard;
    assert.deepEqual([shout.data, shout.source], ["HI", "shouter"]);
  } finally {
    child.kill();
    await rt.close();
    await broker.close();
  }
});

test("the package's entry point has its types", () => {
  const pkg = JSON.parse(readFileSync(join(SDK, "package.json"), "utf8"));
  const types = readFileSync(join(SDK, pkg.types), "utf8");
  for (const name of ["Agent", "connect", "Runtime", "Context", "RemoteError", "topicMatches"]) {
    assert.match(types, new RegExp(`\\b${name}\\b`), name);
  }
  assert.match(
    readFileSync(join(SDK, "dist", "agent.d.ts"), "utf8"),
    /onEvent<T = unknown>\(pattern: string/,
  );
});
