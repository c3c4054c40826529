// The topic rules, checked against the table the Python tests check too (docs/topic-table.json).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { compilePattern, TopicError, topicMatches, validateTopic } from "../src/index.js";

const table = JSON.parse(
  readFileSync(new URL("../../../../docs/topic-table.json", import.meta.url), "utf8"),
) as Record<string, [string, string][]>;

test("every row of the shared table matches", () => {
  assert.ok(table.matches.length > 10);
  for (const [pattern, topic] of table.matches) {
    assert.equal(topicMatches(pattern, topic), true, `${pattern} should match ${topic}`);
  }
});

test("no row of the shared non-matches matches", () => {
  for (const [pattern, topic] of table.non_matches) {
    assert.equal(topicMatches(pattern, topic), false, `${pattern} should not match ${topic}`);
  }
});

test("the prefix ZeroMQ filters on is the literal segments before the first *", () => {
  for (const [pattern, prefix] of table.prefixes) {
    assert.equal(compilePattern(pattern).prefix, prefix, pattern);
  }
});

test("a bad name is refused, naming the rule, as a topic and as a pattern", () => {
  for (const [name, rule] of table.bad_names) {
    assert.throws(
      () => validateTopic(name),
      (error: Error) => error instanceof TopicError && error.message.includes(rule),
    );
    assert.throws(
      () => compilePattern(name),
      (error: Error) => error instanceof TopicError && error.message.includes(rule),
    );
  }
});

test("a published topic may not hold a wildcard", () => {
  assert.throws(() => validateTopic("market.*"), /wildcards belong in subscription patterns/);
});
