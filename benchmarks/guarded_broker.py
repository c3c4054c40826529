"""The broker alone: ZeroMQ messages per second through a plain broker (ZeroMQ's C proxy),
a counting one (the Python loop a process hosting its bus runs: ``[bus] filter_at_source``)
and a CURVE broker whose guard judges every message (docs/security.md).

    python benchmarks/guarded_broker.py [--messages 200000] [--batch 1] [--json]

The broker runs in this process (alone, as under ``loom bus``); a child process's pyzmq PUB
sends ``--messages`` Loom messages over tcp loopback (single events, or batches of
``--batch`` events: one ZeroMQ message each) and its SUB counts them; both hold key pairs
on the CURVE bus. Same run, plain broker first. This is the broker's worst case: ``loom
bench --security`` measures whole Loom processes, where the publisher batches and the
receiver's decoding is the bound.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from loom_kernel.bus.zeromq import Broker, BusAddress
from loom_kernel.bus.zeromq.listeners import Listeners
from loom_kernel.config import AclConfig
from loom_kernel.protocol.batch import encode_batch
from loom_kernel.protocol.envelope import Envelope, encode_data, encode_frames
from loom_kernel.security import client_curve, generate_keys, server_curve
from loom_kernel.security.guard import Guard


def _message(batch: int) -> list[bytes]:
    payload, content_type = encode_data({"px": 101.25, "qty": 3})
    frames = [
        encode_frames(
            Envelope(topic="bench.tick", source="feed", payload=payload,
                     content_type=content_type, id=f"e{n}", seq=n + 1)
        )
        for n in range(batch)
    ]  # fmt: skip
    if batch == 1:
        return frames[0]
    return encode_batch(b"bench.tick", [f[1] for f in frames], [f[2] for f in frames])


def run(messages: int, batch: int, secured: bool, keys: Path, counting: bool = False) -> float:
    curve = server_curve("curve", keys, ["alice"]) if secured else None
    guard = Guard({"alice": AclConfig(publish=["bench.*"])}, host="loom") if secured else None
    listeners = Listeners() if counting else None
    broker = Broker(
        [BusAddress.parse("tcp://127.0.0.1:0")], curve=curve, guard=guard, listeners=listeners
    )
    [address] = broker.start()
    results = mp.get_context("spawn").Queue()
    child = mp.get_context("spawn").Process(
        target=_clients, args=(address, messages, batch, secured, keys, results)
    )
    child.start()
    rate = results.get(timeout=600)
    child.join(30)
    broker.close()
    return rate


def _clients(
    address: BusAddress, messages: int, batch: int, secured: bool, keys: Path, results: Any
) -> None:
    ctx = zmq.Context.instance()
    sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
    for sock, endpoint in ((sub, address.subscribe), (pub, address.publish)):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        if secured:
            client_curve("curve", keys, "alice").secure(sock, endpoint)  # type: ignore[union-attr]
        sock.connect(endpoint)
    sub.subscribe(b"bench.")
    message = _message(batch)
    while not sub.poll(50):  # the subscription is live once a probe comes through
        pub.send_multipart(message)
    while sub.poll(200):
        sub.recv_multipart()
    received = 0

    def receive() -> None:
        nonlocal received
        while received < messages and sub.poll(5000):
            sub.recv_multipart()
            received += 1

    reader = threading.Thread(target=receive)
    start = time.perf_counter()
    reader.start()
    for _ in range(messages):
        pub.send_multipart(message)
    reader.join()
    seconds = time.perf_counter() - start
    sub.close(0)
    pub.close(0)
    results.put(received / seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        keys = Path(folder)
        for name in ("broker", "alice"):
            generate_keys(keys, name)
        plain = run(options.messages, options.batch, False, keys)
        counting = run(options.messages, options.batch, False, keys, counting=True)
        guarded = run(options.messages, options.batch, True, keys)
    result = {
        "messages": options.messages,
        "events_per_message": options.batch,
        "plain_msgs_per_s": round(plain),
        "counting_msgs_per_s": round(counting),
        "counting_ratio": round(counting / plain, 3),
        "guarded_msgs_per_s": round(guarded),
        "ratio": round(guarded / plain, 3),
    }
    if options.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
