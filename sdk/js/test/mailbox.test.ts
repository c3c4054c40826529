// Quality of service between the bus and a handler.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Mailbox } from "../src/mailbox.js";

test("realtime keeps the newest events and counts the oldest it dropped", async () => {
  const box = new Mailbox<number>("realtime", 3);
  for (let i = 0; i < 5; i += 1) box.put(i);
  assert.deepEqual([box.received, box.dropped, box.depth], [5, 2, 3]);
  assert.deepEqual([await box.take(), await box.take(), await box.take()], [2, 3, 4]);
});

test("reliable keeps order and refuses, counting, what overflows its bound", async () => {
  const box = new Mailbox<number>("reliable", 2);
  for (let i = 0; i < 3; i += 1) box.put(i);
  assert.equal(box.dropped, 1);
  assert.deepEqual([await box.take(), await box.take()], [0, 1]);
});

test("a batch holds what is queued, up to its size; a closed box ends its consumer", async () => {
  const box = new Mailbox<number>("batched", 100);
  for (let i = 0; i < 7; i += 1) box.put(i);
  assert.deepEqual(await box.takeBatch(5, 10), [0, 1, 2, 3, 4]);
  assert.deepEqual(await box.takeBatch(5, 10), [5, 6]);
  box.close();
  assert.equal(await box.takeBatch(5, 10), undefined);
  assert.equal(await box.take(), undefined);
});

test("a waiting consumer wakes when an item arrives", async () => {
  const box = new Mailbox<string>("reliable", 10);
  const taken = box.take();
  box.put("late");
  assert.equal(await taken, "late");
});
