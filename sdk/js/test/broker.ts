// A broker for the SDK's own tests: ZeroMQ's XSUB/XPUB proxy, as docs/PROTOCOL.md section 1
// describes Loom's, on free loopback ports. (The interop tests use Loom's real broker.)
import * as zmq from "zeromq";

import type { Endpoints } from "../src/index.js";

export interface TestBroker {
  endpoints: Endpoints;
  close(): Promise<void>;
}

export async function startBroker(): Promise<TestBroker> {
  const proxy = new zmq.Proxy(new zmq.XSubscriber(), new zmq.XPublisher());
  await proxy.frontEnd.bind("tcp://127.0.0.1:*");
  await proxy.backEnd.bind("tcp://127.0.0.1:*");
  const running = proxy.run();
  return {
    endpoints: { publish: proxy.frontEnd.lastEndpoint!, subscribe: proxy.backEnd.lastEndpoint! },
    async close() {
      proxy.terminate();
      await running;
    },
  };
}
