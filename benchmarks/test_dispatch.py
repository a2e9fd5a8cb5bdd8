"""Dispatch latency: eventbus against the hand-written floor and the peers, in one run.

Each benchmark round makes `CALLS_PER_ROUND` (1000) dispatches, so the
microseconds pytest-benchmark reports read as nanoseconds per dispatch. The
groups put every candidate of one comparison side by side; `TestTargets`
(last in the module) checks the design targets as ratios of this run's
minimum round times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.baselines import (
    CALLS_PER_ROUND,
    base_class_runs,
    mixed_async_calls,
    priority_calls,
)
from benchmarks.ratios import RatioBook
from eventbus.cli._bench import COUNTS, compile_loop, dispatchers
from eventbus.cli._bench_deployed import Deployed
from eventbus.portfolio import AccountBalanceUpdated
from tests.support import RedisServer

SYNC_CASES = [
    (count, lib)
    for count in COUNTS
    for lib in (
        "hand loop",
        *(("dict.get",) if count == 0 else ()),
        "blinker",
        "pluggy",
        "pyee",
        "eventbus",
    )
]


def _bench_call(benchmark: Any, ratios: RatioBook, key: str, run: Any) -> None:
    benchmark(run, CALLS_PER_ROUND)
    ratios.record(key, benchmark, CALLS_PER_ROUND)


class TestSyncDispatch:
    """``publish_sync`` to 0, 1, 3 and 10 no-op handlers, beside every baseline."""

    @pytest.mark.parametrize(
        ("count", "lib"), SYNC_CASES, ids=[f"{c}-{lib.replace(' ', '-')}" for c, lib in SYNC_CASES]
    )
    def test_publish_sync(
        self, benchmark: Any, ratios: RatioBook, event: AccountBalanceUpdated, count: int, lib: str
    ) -> None:
        """One dispatch to ``count`` handlers, by ``lib``."""
        calls = dispatchers(count, event)
        if lib not in calls:
            pytest.skip(f"{lib} is not installed (pip install -e '.[bench]')")
        benchmark.group = f"publish_sync, {count} handlers"
        _bench_call(benchmark, ratios, f"sync {count} {lib}", compile_loop(calls[lib]))


class TestAsyncDispatch:
    """``await publish``: 3 async handlers, and a sync/async mix, against a bare await loop."""

    @pytest.mark.parametrize("lib", ["await loop", "eventbus"])
    @pytest.mark.parametrize("scenario", ["async 3", "mixed"])
    def test_await_publish(
        self,
        benchmark: Any,
        ratios: RatioBook,
        event: AccountBalanceUpdated,
        runner: asyncio.Runner,
        scenario: str,
        lib: str,
    ) -> None:
        """One ``await`` dispatch: to 3 async handlers, or to 2 sync and 2 async interleaved."""
        if scenario == "async 3":
            benchmark.group = "await publish, 3 async handlers"
            call = dispatchers(3, event, is_async=True)[lib]
        else:
            benchmark.group = "await publish, 2 sync + 2 async handlers"
            call = mixed_async_calls(event)[lib]
        _bench_call(benchmark, ratios, f"{scenario} {lib}", compile_loop(call, runner))


class TestDeployedDispatch:
    """The same comparisons where users run the bus: every plugin loaded, the Redis bridge on.

    A balance update's local plan then holds the bridge's ``append`` and the
    logging handler besides the 3 no-op handlers; the floor and the peers call
    that same list. The bridge's loop is paused during each timed round and
    drained between rounds (`eventbus.cli._bench_deployed.Deployed.pause`): its
    own throughput is `benchmarks/test_redis.py`'s subject.
    """

    @pytest.mark.parametrize("lib", ["hand loop", "blinker", "pluggy", "pyee", "eventbus"])
    def test_publish_sync(
        self,
        benchmark: Any,
        ratios: RatioBook,
        event: AccountBalanceUpdated,
        deployed_sync: Deployed,
        lib: str,
    ) -> None:
        """One ``publish_sync`` of a balance update in the deployed shape, by ``lib``."""
        deployed = deployed_sync
        calls = deployed.dispatchers(3, event)
        if lib not in calls:
            pytest.skip(f"{lib} is not installed (pip install -e '.[bench]')")
        benchmark.group = "publish_sync, 3 handlers + plugins, Redis bridge on"
        _bench_paused(benchmark, ratios, deployed, f"deployed sync {lib}", compile_loop(calls[lib]))

    @pytest.mark.parametrize("lib", ["await loop", "eventbus"])
    def test_await_publish(
        self,
        benchmark: Any,
        ratios: RatioBook,
        event: AccountBalanceUpdated,
        runner: asyncio.Runner,
        deployed_async: Deployed,
        lib: str,
    ) -> None:
        """One ``await publish`` of a balance update in the deployed shape, by ``lib``."""
        deployed = deployed_async
        call = deployed.dispatchers(3, event, is_async=True)[lib]
        benchmark.group = "await publish, 3 async handlers + plugins, Redis bridge on"
        _bench_paused(
            benchmark, ratios, deployed, f"deployed async {lib}", compile_loop(call, runner)
        )


@pytest.fixture(name="deployed_sync", scope="module")
def _deployed_sync(redis_server: RedisServer) -> Iterator[Deployed]:
    """The deployed bus for ``publish_sync`` (its handlers all sync)."""
    with Deployed(redis_server.url) as deployed:
        yield deployed


@pytest.fixture(name="deployed_async", scope="module")
def _deployed_async(redis_server: RedisServer) -> Iterator[Deployed]:
    """The deployed bus for ``await publish`` (3 async no-op handlers)."""
    with Deployed(redis_server.url) as deployed:
        yield deployed


def _bench_paused(
    benchmark: Any, ratios: RatioBook, deployed: Deployed, key: str, run: Any
) -> None:
    # Each round runs with the bridge's loop held; between rounds (untimed) it drains.
    benchmark.pedantic(
        run, args=(CALLS_PER_ROUND,), setup=deployed.pause, rounds=25, warmup_rounds=1
    )
    deployed.resume()
    ratios.record(key, benchmark, CALLS_PER_ROUND)


class TestPlanShapes:
    """Dispatch plans are flattened: base classes and priorities cost nothing per event."""

    @pytest.mark.parametrize("lib", ["hand loop", "eventbus exact types", "eventbus base class"])
    def test_base_class_across_ten_types(self, benchmark: Any, ratios: RatioBook, lib: str) -> None:
        """3 handlers on a base class; events of 10 concrete subclasses, round-robin."""
        benchmark.group = "publish_sync, 10 event types, 3 handlers on the base class"
        _bench_call(benchmark, ratios, f"kinds {lib}", base_class_runs()[lib])

    @pytest.mark.parametrize(
        "lib", ["hand loop", "eventbus one priority", "eventbus mixed priorities"]
    )
    def test_mixed_priorities(
        self, benchmark: Any, ratios: RatioBook, event: AccountBalanceUpdated, lib: str
    ) -> None:
        """10 handlers with out-of-order priorities, against one priority and the hand loop."""
        benchmark.group = "publish_sync, 10 handlers, mixed priorities"
        _bench_call(benchmark, ratios, f"priority {lib}", compile_loop(priority_calls(event)[lib]))


class TestTargets:
    """The design targets, as ratios of this run's minimum round times.

    Skipped under ``--benchmark-disable`` and when a side was not measured.
    """

    def test_three_handlers_within_budget_of_the_hand_loop(self, ratios: RatioBook) -> None:
        """``publish_sync`` with 3 handlers: at most 2.2x the hand-written loop."""
        ratios.check("sync 3 eventbus", "sync 3 hand loop", at_most=2.2)

    @pytest.mark.parametrize(("peer", "factor"), [("blinker", 5.0), ("pluggy", 5.0), ("pyee", 3.0)])
    def test_three_handlers_faster_than_peers(
        self, ratios: RatioBook, peer: str, factor: float
    ) -> None:
        """``publish_sync`` with 3 handlers: 5x faster than blinker and pluggy, 3x than pyee."""
        ratios.check(f"sync 3 {peer}", "sync 3 eventbus", at_least=factor)

    def test_no_subscribers_within_3x_dict_get(self, ratios: RatioBook) -> None:
        """No subscribers: at most 3.0x a bare ``dict.get(type(e))``."""
        ratios.check("sync 0 eventbus", "sync 0 dict.get", at_most=3.0)

    def test_three_async_handlers_within_budget_of_the_await_loop(self, ratios: RatioBook) -> None:
        """``await publish`` with 3 async handlers: at most 2.2x the bare await loop."""
        ratios.check("async 3 eventbus", "async 3 await loop", at_most=2.2)

    def test_deployed_sync_within_budget_of_the_hand_loop(self, ratios: RatioBook) -> None:
        """Deployed ``publish_sync``: at most 2.2x the hand loop over the same callables."""
        ratios.check("deployed sync eventbus", "deployed sync hand loop", at_most=2.2)

    @pytest.mark.parametrize(("peer", "factor"), [("blinker", 5.0), ("pluggy", 5.0), ("pyee", 3.0)])
    def test_deployed_overhead_below_peers(
        self, ratios: RatioBook, peer: str, factor: float
    ) -> None:
        """Deployed: the peer's dispatch overhead is ``factor`` times eventbus's.

        Overhead = time minus the hand loop over the same callables: the
        plugins' handlers do real work (an outbox append, a log-level check)
        that every library pays alike, so whole-call ratios shrink toward 1
        for everyone and would measure the handlers, not the dispatcher.
        """
        ratios.check_overhead(
            f"deployed sync {peer}", "deployed sync eventbus", "deployed sync hand loop", factor
        )

    def test_deployed_async_within_budget_of_the_await_loop(self, ratios: RatioBook) -> None:
        """Deployed ``await publish``: at most 2.2x the await loop over the same callables."""
        ratios.check("deployed async eventbus", "deployed async await loop", at_most=2.2)

    def test_base_class_costs_no_more_than_exact_types(self, ratios: RatioBook) -> None:
        """A base-class subscription dispatches as fast as exact-type ones (plans are flat)."""
        ratios.check("kinds eventbus base class", "kinds eventbus exact types", at_most=1.25)

    def test_priorities_cost_nothing_per_event(self, ratios: RatioBook) -> None:
        """Mixed priorities dispatch as fast as one priority (the order is precomputed)."""
        ratios.check(
            "priority eventbus mixed priorities", "priority eventbus one priority", at_most=1.25
        )
