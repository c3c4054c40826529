"""The endpoint over a fake transport: what an envelope owes to where it is sent from."""

from __future__ import annotations

import pytest

from loom_kernel import Envelope, LoomError, RemoteError, RequestTimeout
from loom_kernel.messaging import Endpoint, current_event
from tests.support.fake_transport import Hub

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def hub() -> Hub:
    return Hub()


async def test_send_fills_source_id_payload_and_counts(hub: Hub) -> None:
    endpoint = Endpoint(hub.transport(), "pricer")
    env = endpoint.send(Envelope(topic="market.price.BTC", data={"price": 1.5}))
    assert (env.source, env.payload, env.hops, env.traceparent) == (
        "pricer",
        b'{"price":1.5}',
        0,
        None,
    )
    assert env.id and endpoint.emitted == 1 and endpoint.last_emit > 0


async def test_what_a_handler_sends_continues_the_thread_of_its_event(hub: Hub) -> None:
    endpoint = Endpoint(hub.transport(), "trend")
    handled = Envelope(topic="market.price.BTC", id="e1", hops=2, thread_id="t-9")
    token = current_event.set(handled)
    try:
        env = await endpoint.emit("analysis.trend.BTC", {"up": True})
    finally:
        current_event.reset(token)
    assert (env.hops, env.thread_id) == (3, "t-9")


async def test_a_chain_past_max_hops_is_refused_as_a_loop(hub: Hub) -> None:
    endpoint = Endpoint(hub.transport(), "echo", max_hops=3)
    token = current_event.set(Envelope(topic="ping", id="e", hops=3))
    try:
        with pytest.raises(LoomError, match="past \\[runtime\\] max_hops = 3"):
            await endpoint.emit("ping", 1)
        report = endpoint.report("loom.log.echo", {"message": "still allowed"}, type="log")
    finally:
        current_event.reset(token)
    assert report.hops == 4 and endpoint.emitted == 0  # reports are not the agent's activity


async def test_request_and_reply_between_two_endpoints(hub: Hub) -> None:
    asker = Endpoint(hub.transport("a"), "asker")
    answerer = Endpoint(hub.transport("b"), "answerer")
    requests = await answerer.subscribe("quote.*")

    async def answer() -> None:
        event = await requests.get(timeout=5)
        await answerer.reply(event, {"price": 2.0})

    import asyncio

    task = asyncio.create_task(answer())
    reply = await asyncio.wait_for(asker.request("quote.BTC", {"n": 1}, timeout=5), 5)
    await task
    assert (reply.data, reply.source, reply.type) == ({"price": 2.0}, "answerer", "reply")


async def test_an_error_reply_raises_remote_error(hub: Hub) -> None:
    import asyncio

    asker, answerer = Endpoint(hub.transport(), "asker"), Endpoint(hub.transport(), "bad")
    requests = await answerer.subscribe("job.*")

    async def fail() -> None:
        event = await requests.get(timeout=5)
        await answerer.reply(event, {"error": "ValueError", "message": "nope"}, type="error")

    task = asyncio.create_task(fail())
    with pytest.raises(RemoteError, match="ValueError: nope"):
        await asker.request("job.run", timeout=5)
    await task


async def test_a_request_nobody_answers_times_out(hub: Hub) -> None:
    with pytest.raises(RequestTimeout):
        await Endpoint(hub.transport(), "asker").request("nobody.home", timeout=0.05)


async def test_reply_to_an_event_that_expects_none_says_why(hub: Hub) -> None:
    endpoint = Endpoint(hub.transport(), "x")
    with pytest.raises(LoomError, match=r"published with ctx\.emit"):
        await endpoint.reply(Envelope(topic="a.b", id="e"), 1)


async def test_aclose_closes_the_subscriptions_it_made(hub: Hub) -> None:
    endpoint = Endpoint(hub.transport(), "x")
    subs = [await endpoint.subscribe("a.*"), await endpoint.subscribe("b.*", qos="realtime")]
    await endpoint.aclose()
    assert all(sub.closed for sub in subs)
