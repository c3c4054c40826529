// CURVE keys as `loom keys generate` writes them (ZeroMQ's certificate format).
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { curveKeyPair } from "zeromq";

import { BusError, loadCurve } from "../src/index.js";

function write(folder: string, name: string): { publicKey: string; secretKey: string } {
  const pair = curveKeyPair();
  const body = (secret: boolean) =>
    `#   ZeroMQ CURVE Certificate\n\nmetadata\ncurve\n    public-key = "${pair.publicKey}"\n` +
    (secret ? `    secret-key = "${pair.secretKey}"\n` : "");
  writeFileSync(join(folder, `${name}.key`), body(false));
  writeFileSync(join(folder, `${name}.key_secret`), body(true), { mode: 0o600 });
  return pair;
}

test("an identity's pair and the broker's public key are read", () => {
  const folder = mkdtempSync(join(tmpdir(), "loom-keys-"));
  const broker = write(folder, "broker");
  const node = write(folder, "node");
  assert.deepEqual(loadCurve(folder, "node"), {
    identity: "node",
    serverKey: broker.publicKey,
    publicKey: node.publicKey,
    secretKey: node.secretKey,
  });
});

test("missing or unsafe keys are errors that say how to fix them", () => {
  const folder = mkdtempSync(join(tmpdir(), "loom-keys-"));
  assert.throws(() => loadCurve(folder, "node"), /copy the broker's broker.key there/);
  write(folder, "broker");
  assert.throws(
    () => loadCurve(folder, "node"),
    (error: Error) => error instanceof BusError && /`loom keys generate node`/.test(error.message),
  );
  write(folder, "node");
  chmodSync(join(folder, "node.key_secret"), 0o644);
  assert.throws(() => loadCurve(folder, "node"), /any user can read .* `chmod 600/);
  assert.throws(() => loadCurve(folder, "../etc"), /bad key name/);
});
