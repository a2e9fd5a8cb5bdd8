"""Scenarios and hand-written floors for the benchmark suites.

The one-type dispatch comparisons (eventbus, hand loop, ``dict.get``, blinker,
pluggy, pyee, the bare ``await`` loop) come from `eventbus.cli._bench.dispatchers`,
the same factories ``eventbus bench`` times, so the CLI and this suite measure
the same code. This module adds the scenarios only the suite runs: ten event
types under one base class, mixed priorities, a sync/async mix, and
publishing from several threads.

Every ``run(n)`` here performs ``n`` dispatches; the suites call it with
`CALLS_PER_ROUND`, so pytest-benchmark's per-round figures in microseconds read
as nanoseconds per dispatch.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from eventbus import DomainEvent, EventBus
from eventbus.cli._bench import Call, noop_handlers, sample_event
from eventbus.portfolio import AccountBalanceUpdated

__all__ = [
    "CALLS_PER_ROUND",
    "MIXED_PRIORITIES",
    "base_class_runs",
    "event_kinds",
    "mixed_async_calls",
    "priority_calls",
    "publish_from_threads",
]

#: Dispatches per benchmark round: the reported microseconds are nanoseconds per dispatch.
CALLS_PER_ROUND: Final = 1000
#: Ten handlers' priorities, deliberately out of order.
MIXED_PRIORITIES: Final = (3, -2, 7, 0, 0, 10, -5, 1, 3, 2)


def event_kinds(count: int = 10) -> list[AccountBalanceUpdated]:
    """One instance each of ``count`` distinct subclasses of `AccountBalanceUpdated`."""
    template = sample_event()
    fields = {
        name: getattr(template, name)
        for name in (
            "user_id",
            "account_id",
            "previous_balance",
            "new_balance",
            "delta",
            "currency",
        )
    }
    kinds = [
        type(f"BalanceKind{i}", (AccountBalanceUpdated,), {"__slots__": ()}) for i in range(count)
    ]
    return [kind(**fields) for kind in kinds]


def _repeat_over(publish: Callable[[Any], object], events: Sequence[Any]) -> Callable[[int], None]:
    rounds = len(events)

    def run(n: int) -> None:
        # n dispatches in all, cycling through the event types.
        for _ in itertools.repeat(None, n // rounds):
            for event in events:
                publish(event)

    return run


def base_class_runs(handlers: int = 3, kinds: int = 10) -> dict[str, Callable[[int], None]]:
    """``run(n)`` per candidate: handlers on a base class, events of ``kinds`` subclasses.

    ``eventbus base class`` subscribes on `AccountBalanceUpdated` and publishes
    the subclasses; ``eventbus exact types`` subscribes every handler to every
    concrete type; ``hand loop`` is a table already flattened per concrete type.
    """
    events = event_kinds(kinds)
    funcs = noop_handlers(handlers)
    base = EventBus()
    for func in funcs:
        base.subscribe(AccountBalanceUpdated, func)
    exact = EventBus()
    for event in events:
        for func in funcs:
            exact.subscribe(type(event), func)
    table: dict[type, tuple[Callable[[Any], Any], ...]] = {type(e): tuple(funcs) for e in events}

    def hand_loop(e: DomainEvent) -> None:
        for h in table[type(e)]:
            h(e)

    return {
        "eventbus base class": _repeat_over(base.publish_sync, events),
        "eventbus exact types": _repeat_over(exact.publish_sync, events),
        "hand loop": _repeat_over(hand_loop, events),
    }


def priority_calls(event: AccountBalanceUpdated) -> dict[str, Call]:
    """Ten handlers with `MIXED_PRIORITIES`, against ten at one priority and the hand loop."""
    funcs = noop_handlers(len(MIXED_PRIORITIES))
    mixed, flat = EventBus(), EventBus()
    for func, priority in zip(funcs, MIXED_PRIORITIES, strict=True):
        mixed.subscribe(AccountBalanceUpdated, func, priority=priority)
        flat.subscribe(AccountBalanceUpdated, func)
    ordered = tuple(
        f for _, f in sorted(zip(MIXED_PRIORITIES, funcs, strict=True), key=lambda p: -p[0])
    )
    table: dict[type, tuple[Callable[[Any], Any], ...]] = {AccountBalanceUpdated: ordered}

    def hand_loop(e: DomainEvent) -> None:
        for h in table[type(e)]:
            h(e)

    return {
        "eventbus mixed priorities": Call(mixed.publish_sync, (event,)),
        "eventbus one priority": Call(flat.publish_sync, (event,)),
        "hand loop": Call(hand_loop, (event,)),
    }


def mixed_async_calls(event: AccountBalanceUpdated, pairs: int = 2) -> dict[str, Call]:
    """``await publish`` to sync and async handlers interleaved, against a bare loop."""
    sync_funcs = noop_handlers(pairs)
    async_funcs = noop_handlers(pairs, is_async=True)
    plan: list[tuple[Callable[[Any], Any], bool]] = []
    bus = EventBus()
    for sync_func, async_func in zip(sync_funcs, async_funcs, strict=True):
        for func, is_async in ((sync_func, False), (async_func, True)):
            bus.subscribe(AccountBalanceUpdated, func)
            plan.append((func, is_async))
    table: dict[type, tuple[tuple[Callable[[Any], Any], bool], ...]] = {
        AccountBalanceUpdated: tuple(plan)
    }

    async def mixed_loop(e: DomainEvent) -> None:
        for h, is_async in table[type(e)]:
            if is_async:
                await h(e)
            else:
                h(e)

    return {
        "eventbus": Call(bus.publish, (event,), is_async=True),
        "await loop": Call(mixed_loop, (event,), is_async=True),
    }


def publish_from_threads(
    publish: Callable[[Any], object], event: DomainEvent, threads: int, total: int
) -> None:
    """Publish ``total`` events split evenly over ``threads`` threads, started together."""
    per_thread = total // threads
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in itertools.repeat(None, per_thread):
                publish(event)
        except BaseException as exc:  # re-raised in the caller: a benchmark must not pass silently
            failures.append(exc)

    workers = [threading.Thread(target=work, name=f"publisher-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
