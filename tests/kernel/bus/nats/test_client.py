"""The NATS client against a real nats-server: what only NATS has (issue 25, part 1).

What both backends share is in ``tests/kernel/bus/test_transports.py``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from loom_kernel import Agent, on_event, open_runtime
from loom_kernel.bus.nats import NatsClient, NatsOptions
from loom_kernel.bus.nats.server import LocalCluster, local_cluster
from loom_kernel.errors import BusError
from loom_kernel.protocol.envelope import Envelope, encode_data, encode_frames
from tests.conftest import free_port
from tests.support.nats import nats_server, nats_toml

__all__ = ["nats_server"]
WAIT = 5.0
pytestmark = pytest.mark.timeout(60)


def event(topic: str, data: object = None, **fields: object) -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(topic=topic, payload=payload, content_type=content_type, **fields)


async def test_no_server_fails_within_the_timeout_naming_the_servers() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    client = NatsClient(NatsOptions(servers=[url]))
    started = time.monotonic()
    with pytest.raises(BusError, match=f"no NATS server answered at {url}") as info:
        await client.connect(timeout=1.0)
    assert "nats-server -js" in str(info.value)
    assert time.monotonic() - started < WAIT
    with pytest.raises(BusError, match="closed"):
        client.publish(event("x.y", 1))


async def test_a_plain_nats_publisher_is_heard_as_an_event(nats_server: LocalCluster) -> None:
    import nats

    client = NatsClient(NatsOptions(servers=nats_server.urls), name="loom")
    await client.connect()
    plain = await nats.connect(nats_server.urls[0])
    try:
        sub = await client.subscribe("sensors.*")
        json_type = {"Content-Type": "application/json"}
        await plain.publish("sensors.t1", b'{"c": 21.5}', headers=json_type)
        await plain.publish("sensors.raw", b"\x00\x01")
        first, second = await sub.get(WAIT), await sub.get(WAIT)
        assert (first.source, first.data, first.seq) == ("nats", {"c": 21.5}, 0)
        assert second.data == b"\x00\x01"
    finally:
        await plain.close()
        await client.aclose()


class Greeter(Agent):
    @on_event("greet.*")
    async def greet(self, event: Envelope, ctx: object) -> None:
        await ctx.reply(event, {"hello": event.data})  # type: ignore[attr-defined]


async def test_a_plain_nats_request_reaches_a_loom_handler_and_gets_its_reply(
    nats_server: LocalCluster, tmp_path: Path
) -> None:
    import nats

    (tmp_path / "loom.toml").write_text(nats_toml(nats_server.urls))
    async with open_runtime(tmp_path / "loom.toml") as rt:
        await rt.start(Greeter("greeter"))
        plain = await nats.connect(nats_server.urls[0])
        try:
            answer = await plain.request(
                "greet.x", b'"Ada"', timeout=WAIT, headers={"Content-Type": "application/json"}
            )
        finally:
            await plain.close()
    assert json.loads(answer.data) == {"hello": "Ada"}
    assert answer.headers and "Loom-Envelope" in answer.headers


async def test_a_plain_nats_program_answers_a_loom_request(
    nats_server: LocalCluster, tmp_path: Path
) -> None:
    import nats

    plain = await nats.connect(nats_server.urls[0])

    async def respond(msg: object) -> None:
        await msg.respond(b'{"rate": 1.08}')  # type: ignore[attr-defined]

    await plain.subscribe("fx.eurusd", cb=respond)
    await plain.flush()
    (tmp_path / "loom.toml").write_text(nats_toml(nats_server.urls))
    try:
        async with open_runtime(tmp_path / "loom.toml") as rt:
            answers = [await rt.request("fx.eurusd", None, timeout=WAIT) for _ in range(3)]
    finally:
        await plain.close()
    # nats-py's respond() sends the request's headers back: its content type (JSON) too
    assert [(a.data, a.type) for a in answers] == [({"rate": 1.08}, "reply")] * 3


async def test_a_lost_server_fails_waiting_requests_and_the_client_comes_back(
    tmp_path: Path,
) -> None:
    async with local_cluster(1, tmp_path / "nats") as server:
        client = NatsClient(NatsOptions(servers=server.urls), name="survivor")
        await client.connect()
        try:
            sub = await client.subscribe("after.*")
            box = client.expect_replies(client.inbox("me"), "c1")
            await server.kill(0)
            await asyncio.wait_for(client.wait_bus_lost(), WAIT)
            loop = asyncio.get_running_loop()
            with pytest.raises(BusError, match="was lost"):
                await box.wait(loop.time() + WAIT)
            assert client.statistics().bus["state"] == "lost"
            await server.restart(0)
            await client.wait_bus(WAIT * 2)
            client.publish(event("after.x", "back", source="survivor"))
            assert (await sub.get(WAIT)).data == "back"
            assert client.statistics().bus["reconnects"] == 1
        finally:
            await client.aclose()


async def test_the_side_publisher_sends_from_another_thread(nats_server: LocalCluster) -> None:
    client = NatsClient(NatsOptions(servers=nats_server.urls), name="watched")
    await client.connect()
    try:
        sub = await client.subscribe("loom.agent.*")
        side = client.side_publisher()
        assert side is not None
        beat = event("loom.agent.a1.heartbeat", {"status": "stalled"}, source="a1", id="side-1")

        def send() -> None:
            side.send_multipart(encode_frames(beat))
            side.close(0)

        thread = threading.Thread(target=send)
        thread.start()
        thread.join(WAIT)
        got = await sub.get(WAIT)
        assert (got.source, got.data) == ("a1", {"status": "stalled"})
    finally:
        await client.aclose()


AUTH = 'authorization { user: "loom", password: "s3cret" }'


async def test_a_user_and_password_from_the_environment_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with local_cluster(1, tmp_path / "nats", extra=AUTH) as server:
        (tmp_path / "loom.toml").write_text(nats_toml(server.urls, 'user = "loom"\n'))
        monkeypatch.setenv("LOOM_NATS_PASSWORD", "wrong")
        with pytest.raises(BusError, match=r"refused this client: .*Authorization Violation"):
            async with open_runtime(tmp_path / "loom.toml"):
                pass
        monkeypatch.setenv("LOOM_NATS_PASSWORD", "s3cret")
        async with open_runtime(tmp_path / "loom.toml") as rt:
            await rt.start(Greeter("greeter"))
            assert (await rt.request("greet.x", "Ada", timeout=WAIT)).data == {"hello": "Ada"}


def test_credentials_nkey_and_tls_become_nats_py_options(tmp_path: Path) -> None:
    cert = tmp_path / "ca.pem"
    options = NatsOptions(
        servers=["tls://nats.internal:4222"], credentials=tmp_path / "app.creds",
        nkey=tmp_path / "app.nk", user="u", password="p",
    )  # fmt: skip
    made = options.connect_options()
    assert made["user_credentials"] == str(tmp_path / "app.creds")
    assert made["nkeys_seed"] == str(tmp_path / "app.nk")
    assert (made["user"], made["password"]) == ("u", "p")
    assert "tls" not in made
    assert not cert.exists()
