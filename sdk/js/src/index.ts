/**
 * Loom's JavaScript SDK: Node agents on the same bus as Python agents.
 *
 * The names follow the Python SDK's in JavaScript idiom: `Agent`, `onEvent(pattern,
 * handler, { qos })`, `ctx.emit`, `ctx.request` / `ctx.reply`, `ctx.tool`, and `connect()`
 * for the runtime. The wire format is docs/PROTOCOL.md.
 */
export {
  Agent,
  type BatchHandler,
  type Handler,
  type HandlerOptions,
  type ToolFunction,
  type ToolOptions,
} from "./agent.js";
export { BusClient, type BusOptions, type ClientStatistics } from "./bus.js";
export { type CurveKeys, loadCurve } from "./curve.js";
export { Context, type EmitOptions, type LogLevel, type ToolInfo } from "./context.js";
export { busEndpoints, type Endpoints, findConfig, locateBus, readProject } from "./discovery.js";
export { decodeMessage, type Envelope, envelope, type MessageType, PROTOCOL_VERSION } from "./envelope.js";
export {
  BusError,
  HandlerTimeout,
  LoomError,
  MalformedMessage,
  RemoteError,
  RequestTimeout,
  ToolError,
  ToolTimeout,
  TopicError,
} from "./errors.js";
export { type QoS, QOS_NAMES } from "./mailbox.js";
export { AgentRunner, type AgentStatus } from "./runner.js";
export { connect, type ConnectOptions, Runtime } from "./runtime.js";
export { compilePattern, Pattern, topicMatches, validateTopic } from "./topics.js";
export { toWire, Tracing, type WireSpan } from "./tracing.js";
