// Finding the bus: loom.toml, .loom/bus.json, [bus] url, and the errors that say what to do.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { BusError, busEndpoints, findConfig, locateBus, readProject } from "../src/index.js";

function project(toml: string): string {
  const dir = mkdtempSync(join(tmpdir(), "loom-js-"));
  writeFileSync(join(dir, "loom.toml"), toml);
  return dir;
}

test("a bus URL names both endpoints", () => {
  assert.deepEqual(busEndpoints("tcp://127.0.0.1:7355"), {
    publish: "tcp://127.0.0.1:7355",
    subscribe: "tcp://127.0.0.1:7356",
  });
  assert.deepEqual(busEndpoints("ipc:///run/x.sock"), {
    publish: "ipc:///run/x.sock.in",
    subscribe: "ipc:///run/x.sock.out",
  });
  assert.throws(() => busEndpoints("tcp://host"), /needs host and port/);
  assert.throws(() => busEndpoints("udp://h:1"), /unknown transport 'udp'/);
});

test("the nearest loom.toml is found from a subfolder", () => {
  const dir = project("[runtime]\nheartbeat_interval = 0.5\n");
  mkdirSync(join(dir, "agents", "deep"), { recursive: true });
  const saved = process.env.LOOM_CONFIG;
  delete process.env.LOOM_CONFIG;
  try {
    assert.equal(findConfig(join(dir, "agents", "deep")), join(dir, "loom.toml"));
  } finally {
    if (saved !== undefined) process.env.LOOM_CONFIG = saved;
  }
  assert.equal(readProject(join(dir, "loom.toml")).heartbeatInterval, 0.5);
});

test("a live broker's bus.json wins over [bus] url; a stale one is ignored", () => {
  const dir = project('[bus]\nurl = "tcp://127.0.0.1:7400"\n');
  const settings = readProject(join(dir, "loom.toml"));
  assert.deepEqual(locateBus(settings), busEndpoints("tcp://127.0.0.1:7400"));
  mkdirSync(join(dir, ".loom"));
  const record = { publish: "tcp://127.0.0.1:5000", subscribe: "tcp://127.0.0.1:5001", pid: process.pid };
  writeFileSync(join(dir, ".loom", "bus.json"), JSON.stringify(record));
  assert.deepEqual(locateBus(settings), { publish: record.publish, subscribe: record.subscribe });
  writeFileSync(join(dir, ".loom", "bus.json"), JSON.stringify({ ...record, pid: 2 ** 22 + 1 }));
  assert.deepEqual(locateBus(settings), busEndpoints("tcp://127.0.0.1:7400"));
});

test("no bus or a NATS bus is an error saying what to do", () => {
  const none = readProject(join(project(""), "loom.toml"));
  assert.throws(
    () => locateBus(none),
    (error: Error) => error instanceof BusError && /Start a runtime/.test(error.message),
  );
  const nats = readProject(join(project('[bus]\nbackend = "nats"\n'), "loom.toml"));
  assert.throws(() => locateBus(nats), /loom bridge/);
  assert.throws(() => readProject(join(project("[bus\n"), "loom.toml")), /cannot read it as TOML/);
});

test("a CURVE project names its keys folder (relative to the project) and identity", () => {
  const dir = project('[bus]\nsecurity = "curve"\nidentity = "node-1"\nkeys = "secrets"\n');
  const settings = readProject(join(dir, "loom.toml"));
  assert.deepEqual(
    [settings.security, settings.identity, settings.keys],
    ["curve", "node-1", join(dir, "secrets")],
  );
});
