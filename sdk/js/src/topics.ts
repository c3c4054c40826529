/**
 * Topic names and wildcard patterns, as docs/topics.md and the Python SDK define them.
 *
 * A topic is a dotted name (`market.price.BTC`); each segment is non-empty and made of
 * letters, digits, `_`, `-`, `:`, `@` or `/`. A pattern is a topic whose segments may be
 * `*`: a trailing `*` matches one or more segments, a `*` elsewhere exactly one.
 * ZeroMQ filters by byte prefix, so a subscriber asks for {@link Pattern.prefix} and
 * checks every arriving topic with {@link Pattern.matches}.
 */
import { TopicError } from "./errors.js";

export const MAX_TOPIC_LENGTH = 255;
const SEGMENT = /^[A-Za-z0-9_\-:@/]+$/;

function checkSegments(text: unknown, what: string, allowStar: boolean): string[] {
  if (typeof text !== "string") {
    throw new TopicError(`${what} must be a string, got ${typeof text}`);
  }
  if (text === "") {
    throw new TopicError(`${what} is empty: use dotted names such as 'market.price.BTC'`);
  }
  if (text.length > MAX_TOPIC_LENGTH) {
    throw new TopicError(`${what} '${text.slice(0, 40)}'... is longer than ${MAX_TOPIC_LENGTH} characters`);
  }
  const segments = text.split(".");
  segments.forEach((segment, index) => {
    if (segment === "") {
      throw new TopicError(
        `${what} '${text}' has an empty segment at position ${index}: ` +
          "segments are separated by single dots, with none at either end",
      );
    }
    if (segment === "*") {
      if (!allowStar) {
        throw new TopicError(
          `${what} '${text}' contains '*': wildcards belong in subscription patterns, ` +
            "a published topic names one concrete channel",
        );
      }
      return;
    }
    if (!SEGMENT.test(segment)) {
      if (segment.includes("*")) {
        throw new TopicError(
          `${what} '${text}': '*' must be a whole segment ('market.*'), not part of one ('${segment}')`,
        );
      }
      throw new TopicError(
        `${what} '${text}': segment '${segment}' may only contain letters, digits and _ - : @ /`,
      );
    }
  });
  return segments;
}

const validTopics = new Set<string>();

/** Returns `topic` when it is a valid concrete topic, else throws {@link TopicError}. */
export function validateTopic(topic: string): string {
  if (!validTopics.has(topic)) {
    checkSegments(topic, "topic", false);
    if (validTopics.size > 4096) validTopics.clear();
    validTopics.add(topic);
  }
  return topic;
}

/** A compiled subscription pattern. */
export class Pattern {
  /** The longest literal byte prefix ZeroMQ can filter on. */
  readonly prefix: string;
  private readonly fixed: (string | null)[];
  private readonly open: boolean;

  constructor(readonly text: string) {
    const segments = checkSegments(text, "pattern", true);
    this.open = segments[segments.length - 1] === "*";
    this.fixed = segments.map((segment) => (segment === "*" ? null : segment));
    const star = segments.indexOf("*");
    if (star < 0) this.prefix = text;
    else
      this.prefix = segments
        .slice(0, star)
        .map((segment) => segment + ".")
        .join("");
  }

  /** True when the pattern has no wildcard. */
  get isExact(): boolean {
    return this.prefix === this.text;
  }

  /** True when `topic` is delivered to a subscription on this pattern. */
  matches(topic: string): boolean {
    if (this.prefix === this.text) return topic === this.text;
    if (!topic.startsWith(this.prefix)) return false;
    const parts = topic.split(".");
    if (this.open ? parts.length < this.fixed.length : parts.length !== this.fixed.length) {
      return false;
    }
    return this.fixed.every((want, index) => want === null || want === parts[index]);
  }

  toString(): string {
    return this.text;
  }
}

const compiled = new Map<string, Pattern>();

/** Compile (and cache) a subscription pattern; throws {@link TopicError} when invalid. */
export function compilePattern(text: string): Pattern {
  let pattern = compiled.get(text);
  if (pattern === undefined) {
    pattern = new Pattern(text);
    if (compiled.size > 4096) compiled.clear();
    compiled.set(text, pattern);
  }
  return pattern;
}

/** True when `topic` is delivered to a subscription on `pattern`; throws when either is invalid. */
export function topicMatches(pattern: string, topic: string): boolean {
  return compilePattern(pattern).matches(validateTopic(topic));
}
