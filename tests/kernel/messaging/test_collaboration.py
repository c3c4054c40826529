"""Collaboration patterns: request/reply, fan-out, fan-in, barrier and contract-net."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from loom_kernel import (
    Agent,
    BarrierTimeout,
    LoomTimeoutError,
    RequestTimeout,
    Runtime,
    Subscription,
    TopicError,
    on_event,
)
from loom_kernel.messaging.collaboration import FanInResult
from tests.conftest import WAIT, wait_until


class Responder(Agent):
    """Answers requests on ``topic`` with ``answer(data)``; holds replies while ``gate`` is shut."""

    def __init__(
        self,
        agent_id: str,
        topic: str,
        answer: Callable[[Any], Any] = lambda data: data,
        *,
        gated: bool = False,
    ):
        super().__init__(agent_id)
        self.topic = topic
        self.answer = answer
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.asked = asyncio.Event()

    async def on_start(self, ctx):
        self.sub = await ctx.subscribe(self.topic)

    async def run(self, ctx):
        async for event in self.sub:
            self.asked.set()
            await self.gate.wait()
            await ctx.reply(event, {"by": self.id, "value": self.answer(event.data)})


# -- request / reply -----------------------------------------------------------------


async def test_request_gets_the_reply_of_the_agent_serving_the_topic(rt: Runtime):
    await rt.start(Responder("square", "calc.square", lambda n: n * n))
    reply = await rt.request("calc.square", 7, timeout=WAIT)
    assert reply.data == {"by": "square", "value": 49}
    assert (reply.type, reply.source) == ("reply", "square")


async def test_an_agent_can_request_from_another_agent_inside_a_handler(rt: Runtime):
    class Asker(Agent):
        @on_event("asker.go")
        async def go(self, event, ctx):
            answer = await ctx.request("calc.square", event.data, timeout=WAIT)
            await ctx.reply(event, answer.data["value"] + 1)

    await rt.start(Responder("square", "calc.square", lambda n: n * n), Asker("asker"))
    assert (await rt.request("asker.go", 3, timeout=WAIT)).data == 10


async def test_request_timeout_is_a_timeout_error_naming_topic_and_seconds(rt: Runtime):
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        await rt.request("nobody.home", {"x": 1}, timeout=0.25)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < WAIT
    error = info.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error, LoomTimeoutError)
    assert (error.topic, error.timeout) == ("nobody.home", 0.25)
    assert "no reply on 'nobody.home' within 0.25 s" in str(error)
    assert "ctx.reply(event, data)" in str(error)


async def test_a_reply_after_the_timeout_is_counted_as_late(rt: Runtime):
    slow = Responder("slow", "calc.slow", gated=True)
    await rt.start(slow)
    with pytest.raises(RequestTimeout):
        await rt.request("calc.slow", 1, timeout=0.2)
    await asyncio.wait_for(slow.asked.wait(), WAIT)
    slow.gate.set()
    await wait_until(lambda: rt.client.statistics().late_replies == 1)


# -- fan-out -------------------------------------------------------------------------


@pytest.fixture
async def calculators(rt: Runtime) -> dict[str, Responder]:
    agents = {
        "square": Responder("square", "calc.square", lambda n: n * n),
        "neg": Responder("neg", "calc.neg", lambda n: -n),
        "silent": Responder("silent", "calc.silent", gated=True),
    }
    await rt.start(*agents.values())
    return agents


async def test_fan_out_gathers_one_reply_per_request(rt: Runtime, calculators):
    result = await rt.context.fan_out([("calc.square", 3), ("calc.neg", 4)], timeout=WAIT)
    assert isinstance(result, FanInResult)
    assert result.complete
    assert result.missing == []
    assert sorted((d["by"], d["value"]) for d in result.data) == [("neg", -4), ("square", 9)]
    assert len(result) == 2
    assert result.elapsed < WAIT


async def test_fan_out_first_k_returns_as_soon_as_k_replies_arrived(rt: Runtime, calculators):
    requests = [("calc.silent", 1), ("calc.square", 2), ("calc.neg", 3)]
    result = await rt.context.fan_out(requests, first=2, timeout=WAIT)
    assert result.complete
    assert len(result) == 2
    assert {d["by"] for d in result.data} == {"square", "neg"}
    assert result.missing == ["calc.silent"]
    assert result.elapsed < WAIT / 2


async def test_fan_out_timeout_returns_what_arrived_and_names_the_silent_topics(
    rt: Runtime, calculators
):
    requests = [("calc.square", 2), ("calc.silent", 1), ("calc.nobody", 0)]
    result = await rt.context.fan_out(requests, timeout=0.3)
    assert not result.complete
    assert result.data == [{"by": "square", "value": 4}]
    assert result.missing == ["calc.silent", "calc.nobody"]
    assert 0.3 <= result.elapsed < WAIT
    await asyncio.wait_for(calculators["silent"].asked.wait(), WAIT)  # asked, never answered


async def test_fan_out_on_one_topic_gathers_every_responder(rt: Runtime):
    await rt.start(
        *(Responder(f"quoter-{n}", "quote.ask", lambda d, n=n: d["base"] + n) for n in range(3))
    )
    result = await rt.context.fan_out("quote.ask", {"base": 100}, first=3, timeout=WAIT)
    assert result.complete
    assert sorted((d["by"], d["value"]) for d in result.data) == [
        ("quoter-0", 100),
        ("quoter-1", 101),
        ("quoter-2", 102),
    ]
    assert result.missing == []


async def test_a_broadcast_fan_out_without_first_collects_until_the_timeout(rt: Runtime):
    await rt.start(*(Responder(f"quoter-{n}", "quote.ask") for n in range(3)))
    result = await rt.context.fan_out("quote.ask", "hi", timeout=0.5)
    assert sorted(d["by"] for d in result.data) == ["quoter-0", "quoter-1", "quoter-2"]
    assert result.elapsed >= 0.5  # nobody knows how many will answer: it waits it out


async def test_fan_out_rejects_a_wildcard_topic(rt: Runtime):
    with pytest.raises(TopicError):
        await rt.context.fan_out([("calc.*", 1)])


# -- fan-in --------------------------------------------------------------------------

SIGNALS = ["sig.trend.*", "sig.risk.*", "sig.news.*"]


async def start_fan_in(rt: Runtime, patterns: Sequence[str], **options: Any) -> asyncio.Task:
    """Run ``fan_in`` in a task; return once its subscriptions are live."""
    task = asyncio.create_task(rt.context.fan_in(patterns, **options))

    def subscribed() -> bool:
        if task.done():
            return True
        live = [s["pattern"] for s in rt.client.statistics().subscriptions]
        return all(p in live for p in patterns)

    await wait_until(subscribed)
    # A subscription made after fan_in's is live only once theirs are (one pipe, in order).
    await (await rt.subscribe("sync.probe")).aclose()
    return task


async def test_fan_in_returns_one_event_per_pattern(rt: Runtime):
    task = await start_fan_in(rt, SIGNALS, timeout=WAIT)
    await rt.emit("sig.trend.BTC", "up")
    await rt.emit("sig.trend.BTC", "up again")  # a second one for the same pattern is not kept
    await rt.emit("sig.risk.BTC", "low")
    await rt.emit("sig.news.BTC.headline", "calm")
    result = await asyncio.wait_for(task, WAIT)
    assert result.complete
    assert result.missing == []
    assert sorted(e.topic for e in result.events) == [
        "sig.news.BTC.headline",
        "sig.risk.BTC",
        "sig.trend.BTC",
    ]
    assert "up again" not in result.data


async def test_fan_in_first_k_returns_after_k_events(rt: Runtime):
    task = await start_fan_in(rt, SIGNALS, first=2, timeout=WAIT)
    await rt.emit("sig.trend.BTC", 1)
    await rt.emit("sig.trend.ETH", 2)
    result = await asyncio.wait_for(task, WAIT)
    assert result.complete
    assert result.data == [1, 2]
    assert result.missing == ["sig.risk.*", "sig.news.*"]
    assert result.elapsed < WAIT / 2


async def test_fan_in_timeout_returns_what_arrived_naming_the_silent_patterns(rt: Runtime):
    task = await start_fan_in(rt, SIGNALS, timeout=0.4)
    await rt.emit("sig.risk.BTC", "high")
    result = await asyncio.wait_for(task, WAIT)
    assert not result.complete
    assert result.data == ["high"]
    assert result.missing == ["sig.trend.*", "sig.news.*"]
    assert result.elapsed >= 0.4


async def test_fan_in_where_keeps_only_matching_events(rt: Runtime):
    task = await start_fan_in(
        rt, SIGNALS[:2], where=lambda e: e.data["symbol"] == "BTC", timeout=WAIT
    )
    await rt.emit("sig.trend.ETH", {"symbol": "ETH", "n": 1})
    await rt.emit("sig.risk.ETH", {"symbol": "ETH", "n": 2})
    await rt.emit("sig.trend.BTC", {"symbol": "BTC", "n": 3})
    await rt.emit("sig.risk.BTC", {"symbol": "BTC", "n": 4})
    result = await asyncio.wait_for(task, WAIT)
    assert result.complete
    assert sorted(d["n"] for d in result.data) == [3, 4]


async def test_an_exception_in_where_propagates_out_of_fan_in(rt: Runtime):
    def needs_symbol(event):
        return event.data["symbol"] == "BTC"  # KeyError on events without a symbol

    task = await start_fan_in(rt, ["sig.trend.*"], where=needs_symbol, timeout=2.0)
    await rt.emit("sig.trend.BTC", {"price": 1})
    with pytest.raises(KeyError, match="symbol"):
        await asyncio.wait_for(task, WAIT)


async def test_fan_in_closes_its_subscriptions(rt: Runtime):
    task = await start_fan_in(rt, ["sig.only.*"], timeout=WAIT)
    await rt.emit("sig.only.x", 1)
    await asyncio.wait_for(task, WAIT)
    assert "sig.only.*" not in [s["pattern"] for s in rt.client.statistics().subscriptions]


# -- barrier -------------------------------------------------------------------------


class Party(Agent):
    """Reaches barrier ``name`` when told to go."""

    def __init__(self, agent_id: str, name: str, parties: int, timeout: float = WAIT):
        super().__init__(agent_id)
        self.name, self.parties, self.timeout = name, parties, timeout
        self.go = asyncio.Event()
        self.done = asyncio.Event()
        self.passed: list[str] | None = None
        self.error: BaseException | None = None

    async def run(self, ctx):
        await self.go.wait()
        try:
            self.passed = await ctx.barrier(self.name, self.parties, timeout=self.timeout)
        except BarrierTimeout as exc:
            self.error = exc
        self.done.set()


async def arrive(arrivals: Subscription, party: Party) -> None:
    """Let ``party`` go and wait until its arrival is on the bus."""
    party.go.set()
    while True:
        event = await arrivals.get(WAIT)
        if event.data["party"] == party.id:
            return


async def test_barrier_releases_three_agents_arriving_at_different_times(rt: Runtime):
    a, b, c = (Party(n, "step-1", 3) for n in ("a", "b", "c"))
    arrivals = await rt.subscribe("loom.barrier.step-1")
    await rt.start(a, b, c)

    await arrive(arrivals, a)
    await arrive(arrivals, b)
    assert not a.done.is_set() and not b.done.is_set()  # two of three: nobody passes
    await arrive(arrivals, c)

    await asyncio.wait_for(asyncio.gather(a.done.wait(), b.done.wait(), c.done.wait()), WAIT)
    assert a.passed == b.passed == c.passed == ["a", "b", "c"]


async def test_barrier_timeout_names_the_parties_that_arrived(rt: Runtime):
    a, b, c = (Party(n, "step-2", 3, timeout=0.5) for n in ("a", "b", "c"))
    arrivals = await rt.subscribe("loom.barrier.step-2")
    await rt.start(a, b, c)
    await arrive(arrivals, a)
    await arrive(arrivals, b)

    await asyncio.wait_for(asyncio.gather(a.done.wait(), b.done.wait()), WAIT)
    for party in (a, b):
        assert isinstance(party.error, BarrierTimeout)
        assert isinstance(party.error, TimeoutError)
        assert "barrier 'step-2': 2 of 3 parties arrived within 0.5 s (a, b)" in str(party.error)
    assert not c.done.is_set()


async def test_a_barrier_of_one_passes_at_once_and_zero_parties_is_refused(rt: Runtime):
    assert await rt.context.barrier("solo", 1, timeout=WAIT) == [rt.context.agent_id]
    with pytest.raises(ValueError, match="at least 1 party"):
        await rt.context.barrier("nobody", 0)


# -- contract-net --------------------------------------------------------------------


class Bidder(Agent):
    """Bids ``score`` on calls for proposals; does the job when awarded (if ``delivers``)."""

    def __init__(self, agent_id: str, score: float, *, delivers: bool = True):
        super().__init__(agent_id)
        self.score, self.delivers = score, delivers
        self.decided = asyncio.Event()
        self.award = None

    @on_event("jobs.cfp.*")
    async def cfp(self, event, ctx):
        self.award = await ctx.bid(event, self.score, {"eta_s": 10 - self.score}, timeout=WAIT)
        self.decided.set()
        if self.award is not None and self.delivers:
            await ctx.reply(self.award, {"done_by": self.id, "job": self.award.data})


async def test_contract_net_awards_the_two_best_bids_and_collects_their_results(rt: Runtime):
    bidders = {b.id: b for b in (Bidder("slow", 1), Bidder("fast", 9), Bidder("medium", 5))}
    await rt.start(*bidders.values())

    result = await rt.context.contract_net(
        "jobs.cfp.render",
        {"frame": 7},
        max_awards=2,
        expected_bids=3,
        bid_timeout=WAIT,
        result_timeout=WAIT,
    )

    assert sorted(b.source for b in result.bids) == ["fast", "medium", "slow"]
    assert result.winners == ["fast", "medium"]  # best first
    assert result.awarded[0].data == {"score": 9, "data": {"eta_s": 1}}
    assert result.complete
    assert sorted(r.data["done_by"] for r in result.results) == ["fast", "medium"]
    assert all(r.data["job"] == {"frame": 7} for r in result.results)

    await asyncio.wait_for(bidders["slow"].decided.wait(), WAIT)
    assert bidders["slow"].award is None  # rejected: ctx.bid returns None
    assert bidders["fast"].award.type == "award"


async def test_contract_net_is_incomplete_when_a_winner_never_delivers(rt: Runtime):
    flaky, steady = Bidder("flaky", 9, delivers=False), Bidder("steady", 5)
    loser = Bidder("loser", 1)
    await rt.start(flaky, steady, loser)

    result = await rt.context.contract_net(
        "jobs.cfp.render",
        "job",
        max_awards=2,
        expected_bids=3,
        bid_timeout=WAIT,
        result_timeout=0.3,
    )

    assert result.winners == ["flaky", "steady"]
    assert not result.complete
    assert [r.source for r in result.results] == ["steady"]
    assert flaky.award is not None


async def test_contract_net_with_a_custom_score_and_bid_timeout(rt: Runtime):
    await rt.start(Bidder("high", 9), Bidder("low", 2))
    result = await rt.context.contract_net(
        "jobs.cfp.cheap",
        None,
        bid_timeout=0.3,  # no expected_bids: gathers bids until the bid timeout
        score=lambda bid: -bid.data["score"],  # the lowest score wins
        result_timeout=WAIT,
    )
    assert sorted(b.source for b in result.bids) == ["high", "low"]
    assert result.winners == ["low"]
    assert result.complete
    assert [r.source for r in result.results] == ["low"]


async def test_contract_net_refuses_zero_awards(rt: Runtime):
    with pytest.raises(ValueError, match="max_awards must be at least 1"):
        await rt.context.contract_net("jobs.cfp.x", max_awards=0)
