"""Talk to Loom agents with nothing but pyzmq: the wire format of docs/PROTOCOL.md, by hand.

This program never imports ``loom_kernel``; read it as the reference for a client in
another language. Run it in a Loom project folder while a runtime (or ``loom bus``) runs:

    python examples/plain_pyzmq.py subscribe 'market.price.*' --count 5
    python examples/plain_pyzmq.py publish market.price.BTC '{"price": 67000.5}' --count 3
    python examples/plain_pyzmq.py respond demo.echo --count 1
    python examples/plain_pyzmq.py subscribe 'loom.agent.*' --bus tcp://127.0.0.1:7355

``subscribe`` prints one JSON object per event on stdout (the header fields, ``topic`` and
the decoded ``data``); diagnostics go to stderr, including the line ``ready`` once the
subscription is live. ``--count`` and ``--timeout`` bound every command; a command that
wanted ``--count`` events and timed out first exits with status 1.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import os
import sys
import time
import uuid
from collections import deque

import zmq

PROTOCOL_VERSION = 1
JSON = "application/json"
READY_TIMEOUT = 5.0


def bus_endpoints(bus: str | None, project: str) -> tuple[str, str]:
    """(publish, subscribe) endpoints from a bus URL, else from ``<project>/.loom/bus.json``."""
    if bus is None:
        path = os.path.join(project, ".loom", "bus.json")
        try:
            with open(path) as file:
                record = json.load(file)
        except OSError:
            sys.exit(f"no bus found: {path} is missing. Start a Loom runtime, or pass --bus URL")
        return record["publish"], record["subscribe"]
    scheme, _, rest = bus.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme == "tcp" and host and port.isdigit():
        return f"tcp://{host}:{port}", f"tcp://{host}:{int(port) + 1}"
    if scheme == "ipc" and rest:
        return f"{bus}.in", f"{bus}.out"
    sys.exit(f"bad --bus {bus!r}: use tcp://host:port (publish to port, subscribe to port+1)")


# -- topics ----------------------------------------------------------------------------


def subscription_prefix(pattern: str) -> str:
    """The bytes to SUBSCRIBE to: the literal segments before the first ``*``."""
    segments = pattern.split(".")
    literal = list(itertools.takewhile(lambda segment: segment != "*", segments))
    if len(literal) == len(segments):
        return pattern  # exact topic: still needs exact filtering (BTC vs BTCUSD)
    return "".join(segment + "." for segment in literal)


def topic_matches(pattern: str, topic: str) -> bool:
    """Trailing ``*``: one or more segments; other ``*``: exactly one; else equality."""
    want, got = pattern.split("."), topic.split(".")
    if len(got) < len(want) or (want[-1] != "*" and len(got) != len(want)):
        return False
    return all(w in ("*", g) for w, g in zip(want, got, strict=False))


# -- frames ----------------------------------------------------------------------------


def decode(frames: list[bytes]) -> tuple[str, dict, object]:
    """(topic, header, data) of one event; ``ValueError`` when it breaks the protocol."""
    if len(frames) != 3:
        raise ValueError(f"expected 3 frames, got {len(frames)}")
    topic, raw_header, payload = frames
    header = json.loads(raw_header)
    if not isinstance(header, dict) or not header.get("id"):
        raise ValueError("header is not a JSON object with an 'id'")
    if header.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise ValueError(f"unsupported protocol version {header['v']}")
    content_type = header.get("content_type", JSON)
    if content_type == JSON:
        data = json.loads(payload) if payload else None
    elif content_type == "text/plain":
        data = payload.decode("utf-8")
    else:  # octet-stream, msgpack...: show the bytes
        data = {"base64": base64.b64encode(payload).decode()}
    return topic.decode("utf-8"), header, data


class Bus:
    """One PUB and one SUB socket on a Loom bus, plus this program's sequence numbers."""

    def __init__(self, publish: str, subscribe: str):
        self.source = f"plain-{os.getpid()}"
        self.context = zmq.Context()
        self.pub = self.context.socket(zmq.PUB)
        self.sub = self.context.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            sock.setsockopt(zmq.LINGER, 1000)  # let queued events leave at close
        self.pub.connect(publish)
        self.sub.connect(subscribe)
        self.seq: dict[str, int] = {}  # one source here, so per topic
        self.backlog: deque[list[bytes]] = deque()  # events that arrived while probing

    def send(self, topic: str, data: object = None, **fields: object) -> None:
        """Publish one event: a header with a fresh id, the time, and the next seq of topic."""
        self.seq[topic] = self.seq.get(topic, 0) + 1
        header = {
            "v": PROTOCOL_VERSION,
            "id": uuid.uuid4().hex,
            "type": "event",
            "source": self.source,
            "ts": time.time_ns(),
            "seq": self.seq[topic],
            "content_type": JSON,
            **fields,
        }
        payload = b"" if data is None else json.dumps(data).encode()
        self.pub.send_multipart([topic.encode(), json.dumps(header).encode(), payload])

    def wait_ready(self, timeout: float) -> None:
        """Round-trip a probe, so our subscriptions and our publisher are live at the broker."""
        probe = f"loom.probe.{self.source}.{uuid.uuid4().hex[:8]}"
        self.sub.subscribe(probe)  # after the real prefixes: ZeroMQ keeps them in order
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.send(probe, type="probe")
                while self.sub.poll(20):
                    frames = self.sub.recv_multipart()
                    if frames[0] == probe.encode():
                        return
                    self.backlog.append(frames)
            sys.exit(f"no Loom bus answered within {timeout:g} s: is a runtime running?")
        finally:
            self.sub.unsubscribe(probe)

    def receive(self, pattern: str, deadline: float):
        """Yield (topic, header, data) for events matching ``pattern`` until ``deadline``."""
        last_seq: dict[tuple[str, str], int] = {}
        while True:
            if not self.backlog:
                remaining = deadline - time.monotonic()
                wait_ms = None if math.isinf(remaining) else int(remaining * 1000) + 1
                if remaining <= 0 or not self.sub.poll(wait_ms):
                    return
            frames = self.backlog.popleft() if self.backlog else self.sub.recv_multipart()
            try:
                topic, header, data = decode(frames)
            except (ValueError, UnicodeDecodeError) as exc:
                print(f"dropped a malformed message: {exc}", file=sys.stderr)
                continue
            if topic.startswith("loom.probe.") or not topic_matches(pattern, topic):
                continue  # probes are not events; prefix delivery brings BTCUSD to BTC
            key, seq = (header.get("source", ""), topic), header.get("seq", 0)
            if seq and key in last_seq and seq > last_seq[key] + 1:
                print(f"{seq - last_seq[key] - 1} event(s) lost on {topic}", file=sys.stderr)
            if seq:
                last_seq[key] = seq
            yield topic, header, data

    def close(self) -> None:
        self.pub.close()
        self.sub.close()
        self.context.term()


# -- commands --------------------------------------------------------------------------


def cmd_subscribe(bus: Bus, args: argparse.Namespace, deadline: float) -> int:
    bus.sub.subscribe(subscription_prefix(args.pattern))
    bus.wait_ready(READY_TIMEOUT)
    print("ready", file=sys.stderr, flush=True)
    seen = 0
    for topic, header, data in bus.receive(args.pattern, deadline):
        print(json.dumps({"topic": topic, **header, "data": data}), flush=True)
        seen += 1
        if seen == args.count:
            return 0
    return finish(seen, args.count, "events")


def cmd_publish(bus: Bus, args: argparse.Namespace, deadline: float) -> int:
    bus.wait_ready(READY_TIMEOUT)
    if args.malformed:
        send_malformed(bus, args.topic)
    for _ in range(args.count or 1):
        bus.send(args.topic, json.loads(args.data))
    print(f"published {args.count or 1} event(s) on {args.topic}", file=sys.stderr)
    return 0


def send_malformed(bus: Bus, topic: str) -> None:
    """Five messages that break the protocol: Loom counts each as malformed and drops it."""
    good = {"v": PROTOCOL_VERSION, "id": uuid.uuid4().hex, "source": bus.source}
    for frames in (
        [topic.encode()],  # one frame instead of three
        [topic.encode(), b"not json", b""],  # header is not JSON
        [topic.encode(), json.dumps({**good, "v": 99}).encode(), b""],  # unknown version
        [topic.encode(), json.dumps({**good, "id": ""}).encode(), b""],  # no id
        [topic.encode(), json.dumps(good).encode(), b"{broken"],  # payload is not JSON
    ):
        bus.pub.send_multipart(frames)


def cmd_respond(bus: Bus, args: argparse.Namespace, deadline: float) -> int:
    bus.sub.subscribe(subscription_prefix(args.topic))
    bus.wait_ready(READY_TIMEOUT)
    print("ready", file=sys.stderr, flush=True)
    answered = 0
    for _, header, data in bus.receive(args.topic, deadline):
        if header.get("type") != "request" or not header.get("reply_to"):
            continue
        answer = {
            "correlation_id": header.get("correlation_id") or header["id"],
            "thread_id": header.get("thread_id") or header["id"],
            "hops": header.get("hops", 0) + 1,
        }
        if args.error:
            error = {"error": "PlainError", "message": args.error}
            bus.send(header["reply_to"], error, type="error", **answer)
        else:
            bus.send(header["reply_to"], {"echo": data}, type="reply", **answer)
        answered += 1
        if answered == args.count:
            return 0
    return finish(answered, args.count, "requests")


def finish(done: int, wanted: int | None, what: str) -> int:
    if wanted is None:
        return 0
    print(f"timed out after {done} of {wanted} {what}", file=sys.stderr)
    return 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bus", help="tcp://host:P: publish to P, subscribe to P+1")
    common.add_argument("--project", default=".", help="folder whose .loom/bus.json names the bus")
    common.add_argument("--count", type=int, help="stop after this many events/requests")
    common.add_argument("--timeout", type=float, help="stop after this many seconds")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("subscribe", parents=[common], help="print matching events")
    sub.add_argument("pattern", help="topic or wildcard pattern, e.g. 'market.price.*'")
    sub.set_defaults(run=cmd_subscribe)
    pub = commands.add_parser("publish", parents=[common], help="publish --count events")
    pub.add_argument("topic")
    pub.add_argument("data", nargs="?", default="null", help="JSON payload (default null)")
    pub.add_argument("--malformed", action="store_true", help="first send 5 broken messages")
    pub.set_defaults(run=cmd_publish)
    rsp = commands.add_parser("respond", parents=[common], help="answer requests on a topic")
    rsp.add_argument("topic")
    rsp.add_argument("--error", metavar="MESSAGE", help="answer with an error reply instead")
    rsp.set_defaults(run=cmd_respond)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout if args.timeout else math.inf
    bus = Bus(*bus_endpoints(args.bus, args.project))
    try:
        return args.run(bus, args, deadline)
    except KeyboardInterrupt:
        return 130
    finally:
        bus.close()


if __name__ == "__main__":
    sys.exit(main())
