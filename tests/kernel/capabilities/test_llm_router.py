"""The ``[router]`` strategies, each proven against two real local OpenAI-compatible servers
(``tests/support/openai_server.py``): ``fast`` answers at once, ``slow`` after ``DELAY``
seconds. Each answers its own name, in one word (one completion token each: litellm's
latency is seconds per completion token), so ``answer.text`` tells which one litellm picked.

Every check counts which server answered; none times our code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loom_kernel import ConfigError, LLMError, Runtime
from loom_kernel.capabilities.llm import STRATEGIES
from loom_kernel.capabilities.llm._litellm import load_litellm
from loom_kernel.capabilities.llm.router import RouterProvider
from loom_kernel.config import parse_config
from loom_kernel.tracing.store import SpanStore
from tests.conftest import wait_until
from tests.kernel.capabilities.test_llm import (  # _in_project: the autouse fixture, here too
    _in_project,  # noqa: F401
    entry,
    runtime,
)
from tests.support.openai_server import OpenAIServer, Reply

pytestmark = pytest.mark.timeout(30)

DELAY = 0.4  # seconds the slow server waits before answering
PROMPT = "hi there"  # two words: the test server counts 2 prompt tokens


@pytest.fixture
def fast() -> Iterator[OpenAIServer]:
    with OpenAIServer(default=Reply(content="fast"), model_name="fast") as server:
        yield server


@pytest.fixture
def slow() -> Iterator[OpenAIServer]:
    with OpenAIServer(default=Reply(content="slow", delay=DELAY), model_name="slow") as server:
        yield server


async def router_over(
    fast: OpenAIServer,
    slow: OpenAIServer,
    strategy: str,
    fast_settings: dict[str, Any] | None = None,
    slow_settings: dict[str, Any] | None = None,
    **router: Any,
) -> Runtime:
    """A runtime whose ``[router]`` routes between ``[llm.fast]`` and ``[llm.slow]``."""
    return await runtime(
        {
            "fast": entry(fast.url, model="openai/fast", **(fast_settings or {})),
            "slow": entry(slow.url, model="openai/slow", **(slow_settings or {})),
        },
        router={"models": ["fast", "slow"], "strategy": strategy, **router},
    )


async def calls(rt: Runtime, count: int) -> list[str]:
    """``count`` router calls, 5 at a time; who answered each."""
    router = rt.llm("router")
    # 5: the test server's listen backlog; more connections at once would wait on TCP retries
    in_flight = asyncio.Semaphore(5)

    async def call() -> str:
        async with in_flight:
            return (await router.complete(PROMPT)).text

    return await asyncio.gather(*(call() for _ in range(count)))


async def a_fresh_minute(margin: float = 6.0) -> None:
    """litellm counts requests per UTC minute (keys ``<id>:<model>:rpm:HH-MM``): a test
    crossing into the next minute would see its counts start over. Start with ``margin``
    seconds of the minute left, at least."""
    now = datetime.now(UTC)
    left = 60 - now.second - now.microsecond / 1e6
    if left < margin:
        await asyncio.sleep(left + 0.1)


# -- latency ---------------------------------------------------------------------------

WARM_UP_LIMIT = 10  # router calls at most until both models have answered
MEASURED = 20


@pytest.mark.parametrize("strategy", ["latency", "latency-based-routing"])
async def test_latency_sends_most_calls_to_the_fast_model(
    strategy: str, fast: OpenAIServer, slow: OpenAIServer
):
    # How litellm picks (router_strategy/lowest_latency.py): the lowest average of each
    # model's last 10 measures, where a model never measured counts as 0 s (and that 0 stays
    # in its list). Measures are recorded in the background: until both models have one, the
    # pick may be random; the one still unmeasured gets the next call. After that the slow
    # model averages DELAY / 2 = 0.2 s at least, the fast one about 0.01 s (its first
    # measure, the one with connection setup, 0.01-0.15 s on a loaded 2-core machine), so
    # the fast one wins every call. A model that is not picked is never measured again: were
    # the fast one's first measure above the slow one's average, it would lose for good;
    # hence the first call through litellm, which imports its provider code, is made outside
    # the router, where nobody measures it.
    rt = await router_over(fast, slow, strategy)
    async with rt:
        router = rt.llm("router")
        assert router.strategy == "latency-based-routing"
        await rt.llm("fast").complete("warm up")
        warm_fast = len(fast.requests)
        for _ in range(WARM_UP_LIMIT):
            await router.complete(PROMPT)
            if len(fast.requests) > warm_fast and slow.requests:
                break
        assert len(fast.requests) > warm_fast, "the router never tried the fast model"
        assert slow.requests, "the router never tried the slow model"

        answers = [(await router.complete(PROMPT)).text for _ in range(MEASURED)]

    # one slow pick may still come while the slow model's first measure is being recorded
    assert answers.count("fast") >= 0.8 * MEASURED, answers


# -- cost ------------------------------------------------------------------------------


async def test_cost_sends_every_call_to_the_cheaper_model_even_a_slow_one(
    fast: OpenAIServer, slow: OpenAIServer
):
    # USD per token, as on a price list: the slow model is 20 times cheaper
    cheap = {"input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7}
    dear = {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6}
    rt = await router_over(fast, slow, "cost", fast_settings=dear, slow_settings=cheap)
    async with rt:
        assert rt.llm("router").strategy == "cost-based-routing"
        assert await calls(rt, 5) == ["slow"] * 5
        answer = await rt.llm("router").complete(PROMPT)

    assert fast.requests == []
    assert len(slow.requests) == 6
    # litellm prices the answer with the entry's prices too: 2 prompt tokens, 1 completion
    assert answer.usage.cost_usd == pytest.approx(2 * 1e-7 + 1 * 4e-7)


# -- usage -----------------------------------------------------------------------------

RPM = 3


async def test_usage_sends_calls_beyond_a_models_rpm_to_the_other(
    fast: OpenAIServer, slow: OpenAIServer
):
    # litellm (router_strategy/lowest_tpm_rpm_v2.py) counts each model's requests of the
    # current minute before each call, leaves out a model that reached its rpm (in fact
    # rpm - 1: `count + 1 >= rpm`), and picks the one that used the fewest tokens among the
    # others. So the fast model, limited to RPM a minute, takes no more than RPM of the 6
    # calls, and at least one (once the slow one's tokens are recorded, the fast one, with
    # none, is the least used); the slow one, unlimited, takes the rest.
    await a_fresh_minute()
    rt = await router_over(fast, slow, "usage", fast_settings={"rpm": RPM})
    async with rt:
        assert rt.llm("router").strategy == "usage-based-routing-v2"
        answers = [(await rt.llm("router").complete(PROMPT)).text for _ in range(6)]

    assert 1 <= answers.count("fast") <= RPM, answers
    assert answers.count("slow") == 6 - answers.count("fast")
    assert (len(fast.requests), len(slow.requests)) == (
        answers.count("fast"),
        answers.count("slow"),
    )


async def test_usage_spreads_calls_over_the_pool_then_fails_at_once_when_all_are_full(
    fast: OpenAIServer, slow: OpenAIServer
):
    await a_fresh_minute()
    limited = {"rpm": RPM}
    rt = await router_over(
        fast, slow, "usage", fast_settings=limited, slow_settings=limited, num_retries=0
    )
    async with rt:
        router = rt.llm("router")
        answers: list[str] = []
        with pytest.raises(LLMError) as failure:
            for _ in range(2 * RPM + 1):  # one more than both limits together
                answers.append((await router.complete(PROMPT)).text)

    # the pool is full only once both models reached their limit: both took calls, and
    # neither more than its rpm
    assert 1 <= answers.count("fast") <= RPM, answers
    assert 1 <= answers.count("slow") <= RPM, answers
    # the call over the limits reached no server: litellm refused it itself, at once
    assert (len(fast.requests), len(slow.requests)) == (
        answers.count("fast"),
        answers.count("slow"),
    )
    message = str(failure.value)
    assert "[router] router(fast, slow) failed HTTP 429" in message
    assert "No deployments available" in message
    assert router.statistics().errors == 1


# -- simple ----------------------------------------------------------------------------

SHUFFLED = 30


async def test_simple_shuffles_calls_over_both_models(fast: OpenAIServer, slow: OpenAIServer):
    # A uniform pick per call: the chance that one model gets none of the 30 calls is
    # 2 * 0.5**30, about 2e-9.
    rt = await router_over(fast, slow, "simple")
    async with rt:
        assert rt.llm("router").strategy == "simple-shuffle"
        answers = await calls(rt, SHUFFLED)

    assert answers.count("fast") >= 1, answers
    assert answers.count("slow") >= 1, answers
    assert (len(fast.requests), len(slow.requests)) == (
        answers.count("fast"),
        answers.count("slow"),
    )


async def test_simple_weights_the_pick_by_rpm(fast: OpenAIServer, slow: OpenAIServer):
    # Weights 900:100, so each call goes to fast with p = 0.9 (litellm's simple_shuffle.py:
    # rpm is a weight here, not a limit). Fast gets a majority (16+) of 30 calls except
    # with probability P(Binomial(30, 0.9) <= 15), about 4e-8; unweighted (p = 0.5), this
    # check would fail 57 % of the time.
    rt = await router_over(
        fast, slow, "simple-shuffle", fast_settings={"rpm": 900}, slow_settings={"rpm": 100}
    )
    async with rt:
        answers = await calls(rt, SHUFFLED)

    assert answers.count("fast") > SHUFFLED / 2, answers


# -- names, errors, spans --------------------------------------------------------------

LITELLM_NAMES = {
    **STRATEGIES,
    # litellm's own names, as earlier releases took them
    "simple-shuffle": "simple-shuffle",
    "latency-based-routing": "latency-based-routing",
    "cost-based-routing": "cost-based-routing",
    "usage-based-routing": "usage-based-routing",
    "usage-based-routing-v2": "usage-based-routing-v2",
}


@pytest.mark.parametrize(("strategy", "litellm_name"), sorted(LITELLM_NAMES.items()))
def test_every_accepted_strategy_name_maps_to_litellms(strategy: str, litellm_name: str):
    config = parse_config(
        {"llm": {"a": {"model": "openai/a"}}, "router": {"models": ["a"], "strategy": strategy}}
    )

    assert RouterProvider(config.router, config.llm).strategy == litellm_name


def test_an_unknown_strategy_is_a_config_error_listing_the_accepted_ones():
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "llm": {"a": {"model": "openai/a"}},
                "router": {"models": ["a"], "strategy": "fastest"},
            }
        )

    message = str(info.value)
    assert "[router] strategy = 'fastest'" in message
    for name in (*STRATEGIES, "latency-based-routing", "cost-based-routing"):
        assert f"'{name}'" in message


@pytest.mark.parametrize("strategy", ["cost", "cost-based-routing"])
async def test_each_router_call_says_its_strategy_on_its_span(
    strategy: str, project: Path, fast: OpenAIServer, slow: OpenAIServer
):
    rt = await router_over(fast, slow, strategy)
    async with rt:
        router = rt.llm("router")
        answers = [await router.complete(PROMPT) for _ in range(2)]
        assert router.strategy == "cost-based-routing"

    store = SpanStore(project / ".loom" / "traces.db")
    try:
        await wait_until(lambda: len(store.query(name="chat router(fast, slow)")) == 2)
        spans = store.query(name="chat router(fast, slow)")
    finally:
        store.close()
    # the strategy by Loom's name, however loom.toml spells it; the model the router picked
    assert [span.attributes["loom.llm.strategy"] for span in spans] == ["cost", "cost"]
    assert sorted(span.attributes["gen_ai.response.model"] for span in spans) == sorted(
        answer.model for answer in answers
    )
    assert {span.attributes["loom.llm.provider"] for span in spans} == {"router"}


def test_providers_of_one_configuration_share_one_litellm_router(
    fast: OpenAIServer, slow: OpenAIServer
):
    # litellm measures for one Router per strategy at a time (see router.py): every agent's
    # provider of a configuration uses the same one, so they share measures and rpm counts.
    def provider(strategy: str) -> RouterProvider:
        config = parse_config(
            {
                "llm": {"fast": entry(fast.url), "slow": entry(slow.url)},
                "router": {"models": ["fast", "slow"], "strategy": strategy},
            }
        )
        return RouterProvider(config.router, config.llm)

    shared = provider("latency").router()

    assert provider("latency").router() is shared
    assert provider("latency-based-routing").router() is shared  # the same strategy
    assert provider("cost").router() is not shared  # another configuration


async def test_a_direct_model_call_beside_a_cost_router_logs_no_litellm_error(
    fast: OpenAIServer, slow: OpenAIServer, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
):  # fmt: skip
    """litellm's cost strategy watches every call of the process, and fails on a call that
    is not the router's unless it carries ``model_info``: each direct call printed a
    traceback (``lowest_cost.py ... 'NoneType' object has no attribute 'get'``)."""
    litellm = load_litellm()  # offline: Loom's import sets the local price map first
    from litellm.integrations.custom_logger import CustomLogger

    class Last(CustomLogger):
        """Registered after the router's strategy: once it has seen a call's success,
        litellm has run the strategy's handlers for that call too (they run in order)."""

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            self.seen.append("async")

    dear = {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6}
    rt = await router_over(fast, slow, "cost", fast_settings=dear)
    last = Last()
    async with rt:
        await rt.llm("router").complete(PROMPT)  # the router, and its strategy, now exist
        litellm.callbacks.append(last)
        try:
            answer = await rt.llm("fast").complete(PROMPT)  # a direct call to one model
            await wait_until(lambda: "async" in last.seen)
        finally:
            litellm.callbacks.remove(last)
    assert answer.text == "fast"
    assert answer.usage.cost_usd == pytest.approx(2 * 2e-6 + 1 * 8e-6)  # its own prices
    assert "model_info" not in fast.requests[-1]  # litellm's, never sent to the model
    printed = capfd.readouterr().err + caplog.text
    assert "lowest_cost" not in printed and "NoneType" not in printed, printed
