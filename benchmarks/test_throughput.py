"""Throughput: events per second from one publisher thread and from four.

Every round publishes the same number of events (`TOTAL`) to 3 no-op
handlers, from 1 thread or split over 4, so the round times compare directly:
``time(1 thread) / time(4 threads)`` is the 4-thread throughput relative to
1 thread. Under the GIL four threads cannot be faster than one, but nothing on
the publish path (no lock, no shared mutable state) should make them slower:
the hand-written loop, measured beside it, shows the GIL's own cost, and the
target is judged against it.
"""

from __future__ import annotations

from typing import Any, Final

import pytest

from benchmarks.baselines import publish_from_threads
from benchmarks.ratios import RatioBook
from eventbus.cli._bench import dispatchers
from eventbus.portfolio import AccountBalanceUpdated

#: Events per round, whatever the number of threads. Enough that each thread runs
#: well past the GIL switch interval (5 ms), so the threads really interleave.
TOTAL: Final = 400_000
#: Noise allowance on "not lower": a shared 2-core machine jitters by a few percent.
TOLERANCE: Final = 0.95
# Four threads cost even the hand loop 1-5% here (GIL hand-offs), and that part
# jitters from run to run; so the target is judged against the hand loop's own
# 4-thread/1-thread ratio from the same run: eventbus must lose nothing beyond it.

CASES = [(lib, threads) for lib in ("hand loop", "eventbus") for threads in (1, 4)]


class TestThroughput:
    """``publish_sync`` from 1 and 4 threads, 3 handlers, against the hand loop."""

    @pytest.mark.parametrize(
        ("lib", "threads"), CASES, ids=[f"{lib.replace(' ', '-')}-{n}-threads" for lib, n in CASES]
    )
    def test_publish_from_threads(
        self,
        benchmark: Any,
        ratios: RatioBook,
        event: AccountBalanceUpdated,
        lib: str,
        threads: int,
    ) -> None:
        """``TOTAL`` events to 3 handlers, published from ``threads`` threads."""
        benchmark.group = f"throughput, {TOTAL} events, 3 handlers"
        # A fresh bus per case: what one case switches on must not slow the next.
        publish = dispatchers(3, event)[lib].fn
        benchmark.pedantic(
            publish_from_threads, args=(publish, event, threads, TOTAL), rounds=5, warmup_rounds=1
        )
        ratios.record(f"throughput {lib} {threads}", benchmark, TOTAL)
        if benchmark.stats is not None:
            per_event = benchmark.stats.stats.min / TOTAL
            benchmark.extra_info["events_per_second"] = round(1 / per_event)


class TestTargets:
    """4-thread throughput is not lower than 1-thread throughput, beyond the GIL's own cost."""

    def test_four_threads_not_slower_than_one(self, ratios: RatioBook) -> None:
        """eventbus's 4-thread/1-thread throughput, over the hand loop's, is >= `TOLERANCE`."""
        for lib in ("hand loop", "eventbus"):
            ratios.note_ratio(
                f"{lib}, 4-thread / 1-thread throughput",
                f"throughput {lib} 1",
                f"throughput {lib} 4",
            )
        ratios.check(
            "throughput eventbus 1",
            "throughput eventbus 4",
            relative_to=("throughput hand loop 1", "throughput hand loop 4"),
            at_least=TOLERANCE,
        )
