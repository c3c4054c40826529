/**
 * Finding the running bus the way Python processes do (docs/PROTOCOL.md section 1):
 * `$LOOM_CONFIG` or the nearest `loom.toml` names the project; its `.loom/bus.json`
 * names the live broker's endpoints, else its `[bus] url` does.
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";

import { parse as parseToml } from "smol-toml";

import { BusError } from "./errors.js";

/** The two endpoints of a bus: where to publish (XSUB) and where to subscribe (XPUB). */
export interface Endpoints {
  publish: string;
  subscribe: string;
}

/** What the SDK reads of a project's `loom.toml`. */
export interface ProjectSettings {
  /** The folder holding `loom.toml` (the working directory when there is none). */
  dir: string;
  /** The file read, or null. */
  config: string | null;
  url: string | null;
  backend: string;
  security: string;
  hwm: number;
  heartbeatInterval: number;
  /** `[runtime] stall_after`: seconds the event loop may not turn before it counts as stalled. */
  stallAfter: number;
  /** `[tracing] enabled`: whether agents record spans. */
  tracing: boolean;
  /** `[bus] keys`, made absolute: the folder of the CURVE key pairs. */
  keys: string;
  /** `[bus] identity`: the key pair this process proves on a CURVE bus. */
  identity: string;
}

const DEFAULTS = {
  url: null,
  backend: "zeromq",
  security: "none",
  hwm: 100_000,
  heartbeatInterval: 1,
  stallAfter: 10,
  tracing: true,
  keys: ".loom/keys",
  identity: "loom",
};

/** `$LOOM_CONFIG` if set, else the nearest `loom.toml` from `start` upward. */
export function findConfig(start: string = process.cwd()): string | null {
  const env = process.env.LOOM_CONFIG;
  if (env) return resolve(env);
  let folder = resolve(start);
  for (;;) {
    const candidate = join(folder, "loom.toml");
    if (existsSync(candidate)) return candidate;
    const parent = dirname(folder);
    if (parent === folder) return null;
    folder = parent;
  }
}

/** The project's settings the SDK uses; throws {@link BusError} naming the file when it is bad. */
export function readProject(config: string | null = findConfig()): ProjectSettings {
  if (config === null) {
    return { dir: process.cwd(), config: null, ...DEFAULTS, keys: resolve(DEFAULTS.keys) };
  }
  let raw: Record<string, any>;
  try {
    raw = parseToml(readFileSync(config, "utf8")) as Record<string, any>;
  } catch (error) {
    throw new BusError(`${config}: cannot read it as TOML: ${(error as Error).message}`);
  }
  const bus = raw.bus ?? {};
  const runtime = raw.runtime ?? {};
  const tracing = raw.tracing ?? {};
  const url = typeof bus.url === "string" ? bus.url : null;
  return {
    dir: dirname(config),
    config,
    url,
    backend: bus.backend ?? (url && /^(nats|tls):/.test(url) ? "nats" : "zeromq"),
    security: bus.security ?? "none",
    hwm: bus.hwm ?? DEFAULTS.hwm,
    heartbeatInterval: runtime.heartbeat_interval ?? DEFAULTS.heartbeatInterval,
    stallAfter: runtime.stall_after ?? DEFAULTS.stallAfter,
    tracing: tracing.enabled ?? DEFAULTS.tracing,
    keys: resolve(dirname(config), expandHome(bus.keys ?? DEFAULTS.keys)),
    identity: bus.identity ?? DEFAULTS.identity,
  };
}

function expandHome(path: string): string {
  return path.startsWith("~/") ? join(homedir(), path.slice(2)) : path;
}

/** `(publish, subscribe)` of a bus URL: `tcp://H:P` → P and P+1, `ipc://x` → x.in and x.out. */
export function busEndpoints(url: string): Endpoints {
  const match = /^([a-z]+):\/\/(.+)$/.exec(url);
  if (match === null) {
    throw new BusError(`bad bus url '${url}': expected tcp://host:port or ipc:///path`);
  }
  const [, scheme, rest] = match;
  if (scheme === "tcp") {
    const colon = rest.lastIndexOf(":");
    const port = Number(rest.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65534) {
      throw new BusError(`bad bus url '${url}': a tcp url needs host and port 1..65534`);
    }
    const host = rest.slice(0, colon);
    return { publish: `tcp://${host}:${port}`, subscribe: `tcp://${host}:${port + 1}` };
  }
  if (scheme === "ipc" || scheme === "inproc") {
    return { publish: `${url}.in`, subscribe: `${url}.out` };
  }
  throw new BusError(`bad bus url '${url}': unknown transport '${scheme}' (use tcp:// or ipc://)`);
}

/** The endpoints of `<project>/.loom/bus.json` when its broker's process is alive, else null. */
export function readDiscovery(projectDir: string): Endpoints | null {
  const path = join(projectDir, ".loom", "bus.json");
  let record: { publish?: unknown; subscribe?: unknown; pid?: unknown };
  try {
    record = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return null;
  }
  if (typeof record.publish !== "string" || typeof record.subscribe !== "string") return null;
  if (typeof record.pid === "number" && !alive(record.pid)) return null;
  return { publish: record.publish, subscribe: record.subscribe };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Where this process should connect: an explicit URL, else the project's live broker
 * (`.loom/bus.json`), else its `[bus] url`.
 *
 * Throws {@link BusError} saying what to do when there is no bus, or when the project's bus
 * is one this SDK does not speak (NATS). A CURVE bus is found the same way; `connect()` loads
 * the keys.
 */
export function locateBus(project: ProjectSettings, url?: string): Endpoints {
  if (url) return busEndpoints(url);
  if (project.backend !== "zeromq") {
    throw new BusError(
      `${project.config}: [bus] backend = "${project.backend}": the JavaScript SDK speaks the ` +
        "ZeroMQ bus only; run `loom bridge` to join this NATS bus to a ZeroMQ one and connect there",
    );
  }
  const found = readDiscovery(project.dir);
  if (found !== null) return found;
  if (project.url) return busEndpoints(project.url);
  throw new BusError(
    `no Loom bus is running for ${project.config ?? process.cwd()}: ` +
      `${join(project.dir, ".loom", "bus.json")} is missing or stale and [bus] url is not set. ` +
      "Start a runtime (`make demo`, `loom bus`) or pass connect({ url: 'tcp://127.0.0.1:7355' })",
  );
}
