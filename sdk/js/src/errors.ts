/**
 * The errors of the SDK: the same names as the Python SDK's, so a message reads the same
 * in both languages.
 */

/** Base class of every error the SDK raises on purpose. */
export class LoomError extends Error {
  override name = "LoomError";
}

/** A topic or pattern breaks the topic rules (docs/topics.md). */
export class TopicError extends LoomError {
  override name = "TopicError";
}

/** The bus could not be found, reached, or written to. */
export class BusError extends LoomError {
  override name = "BusError";
}

/** A received message breaks the wire protocol (docs/PROTOCOL.md section 9). */
export class MalformedMessage extends LoomError {
  override name = "MalformedMessage";
}

/** No reply arrived within the request's timeout. */
export class RequestTimeout extends LoomError {
  override name = "RequestTimeout";
  constructor(
    readonly topic: string,
    readonly timeout: number,
  ) {
    super(
      `no reply on ${JSON.stringify(topic)} within ${timeout} ms: is an agent serving it? ` +
        "(`loom status` lists the running agents)",
    );
  }
}

/** The responder answered with an error reply (its handler threw). */
export class RemoteError extends LoomError {
  override name = "RemoteError";
  constructor(
    readonly topic: string,
    readonly source: string,
    readonly errorType: string,
    readonly remoteMessage: string,
  ) {
    super(`${source} failed handling ${JSON.stringify(topic)}: ${errorType}: ${remoteMessage}`);
  }
}

/** A tool call failed: no such tool, bad arguments, or the tool threw. */
export class ToolError extends LoomError {
  override name = "ToolError";
}

/** A tool did not answer in time (also a ToolError). */
export class ToolTimeout extends ToolError {
  override name = "ToolTimeout";
}

/** A handler ran past its timeout. */
export class HandlerTimeout extends LoomError {
  override name = "HandlerTimeout";
}
