/**
 * CURVE on a secured bus (`[bus] security = "curve"`, docs/security.md): the key pairs
 * `loom keys generate` writes in ZeroMQ's certificate format, `<keys>/<name>.key` (public)
 * and `<name>.key_secret`. A client proves one identity's pair and checks the broker's
 * public key, so it talks to the right broker and nobody else reads the traffic.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

import { BusError } from "./errors.js";

/** What a client's sockets need: Z85 keys (40 characters each). */
export interface CurveKeys {
  /** The key pair's name: the identity the broker knows this process by. */
  identity: string;
  serverKey: string;
  publicKey: string;
  secretKey: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

function certificate(path: string, half: "public" | "secret"): string {
  const text = readFileSync(path, "utf8");
  const match = new RegExp(`${half}-key\\s*=\\s*"([^"]{40})"`).exec(text);
  if (match === null) throw new BusError(`${path} holds no ${half} key: is it a ZeroMQ certificate?`);
  return match[1];
}

/** The keys of `identity` and the broker's public key, from `folder`.
 * Throws {@link BusError} naming the missing file and the command that makes it, or a secret
 * file any user can read. */
export function loadCurve(folder: string, identity: string): CurveKeys {
  if (!NAME.test(identity)) {
    throw new BusError(`bad key name '${identity}': use letters, digits, '_', '.' or '-' (at most 64)`);
  }
  const broker = join(folder, "broker.key");
  const secret = join(folder, `${identity}.key_secret`);
  if (!existsSync(broker)) {
    throw new BusError(`no public key 'broker' in ${folder}: copy the broker's broker.key there`);
  }
  if (!existsSync(secret)) {
    throw new BusError(
      `no secret key '${identity}' in ${folder}: create it with \`loom keys generate ${identity}\``,
    );
  }
  const mode = statSync(secret).mode & 0o777;
  if (mode & 0o007) {
    throw new BusError(`any user can read ${secret} (mode ${mode.toString(8)}): \`chmod 600 ${secret}\``);
  }
  return {
    identity,
    serverKey: certificate(broker, "public"),
    publicKey: certificate(secret, "public"),
    secretKey: certificate(secret, "secret"),
  };
}
