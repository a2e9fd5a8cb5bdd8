"""The SSE broadcaster's cost per event does not grow with the number of clients.

Clients are connected at the broadcaster level (`Broadcaster.connect`, no
HTTP), so only routing is timed: the bus dispatch to the broadcaster's handler,
one encode, the user's resume buffer, and a ``put_nowait`` per client of that
user. Both setups give every user 10 clients:

* 10 clients of 1 user, every event for that user;
* 10,000 clients spread over 1,000 users, events cycling through the users.

Each round publishes `CALLS` events with ``publish_sync``; client queues are
drained between rounds, untimed. The target is ``time(10,000) / time(10) <= 1.5``.
A second check counts encodes: one per event, whatever the fan-out.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import pytest

from benchmarks.ratios import RatioBook
from eventbus import DomainEvent, EventBus, codec
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_sse import Broadcaster, SSEPlugin, Subscriber

CALLS: Final = 1000
PER_USER: Final = 10


def _balance(user: UUID, i: int) -> AccountBalanceUpdated:
    return AccountBalanceUpdated.from_change(
        user_id=user,
        account_id=UUID(int=i),
        previous_balance=Decimal("1000.00"),
        new_balance=Decimal(f"{1000 + i}.25"),
        currency="USD",
    )


def _setup(
    clients: int, encoder: Callable[[DomainEvent], bytes] = codec.dumps
) -> tuple[Callable[[], None], Callable[[], None], list[Subscriber], Broadcaster]:
    # No caps: these clients hold no sockets, and 10,000 may pass the descriptor-derived cap.
    broadcaster = Broadcaster(
        queue_size=2 * CALLS, encoder=encoder, max_clients=None, max_clients_per_user=None
    )
    bus = EventBus()
    bus.register_plugin(SSEPlugin(broadcaster), name="sse")
    users = [UUID(int=u + 1) for u in range(clients // PER_USER)]
    subs = [broadcaster.connect(user) for user in users for _ in range(PER_USER)]
    events = [_balance(users[i % len(users)], i) for i in range(CALLS)]
    publish = bus.publish_sync

    def run() -> None:
        for event in events:
            publish(event)

    async def _drain() -> None:
        for sub in subs:
            await sub.next_batch(0.0)

    def drain() -> None:
        asyncio.run(_drain())

    run()  # warm: plans compiled, buffers allocated
    drain()
    return run, drain, subs, broadcaster


class TestPublishCost:
    """``publish_sync`` of one event with ``clients`` connected clients."""

    @pytest.mark.parametrize("clients", [10, 10_000])
    def test_publish(self, benchmark: Any, ratios: RatioBook, clients: int) -> None:
        """`CALLS` events, each to the 10 clients of its user."""
        run, drain, _, broadcaster = _setup(clients)
        benchmark.group = "sse: publish cost per event"
        benchmark.pedantic(run, setup=drain, rounds=15, iterations=1)
        ratios.record(f"sse {clients} clients", benchmark, CALLS)
        assert broadcaster.statistics()["dropped_clients"] == 0


class TestEncodeOnce:
    """One encode per event, however many clients receive it."""

    def test_encodes_equal_events(self, ratios: RatioBook) -> None:
        """With 10,000 clients connected, CALLS events cost exactly CALLS encodes."""
        encodes = 0

        def counting(event: DomainEvent) -> bytes:
            nonlocal encodes
            encodes += 1
            return codec.dumps(event)

        run, drain, _, broadcaster = _setup(10_000, counting)
        encodes = 0
        run()
        stats = broadcaster.statistics()
        assert encodes == CALLS
        assert stats["frames_routed"] == 2 * CALLS * PER_USER  # warm-up round + this one
        drain()
        ratios.notes.append(f"sse: {encodes} encodes for {CALLS} events to 10,000 clients")


class TestTargets:
    """The issue's target as a ratio of this run."""

    def test_cost_independent_of_client_count(self, ratios: RatioBook) -> None:
        """Cost per event with 10,000 clients is at most 1.5x the cost with 10."""
        ratios.check("sse 10000 clients", "sse 10 clients", at_most=1.5)


class TestResumeMemory:
    """What the resume buffers hold per user, measured with tracemalloc (see docs/sse.md).

    Not timings: these run, and check their generous bounds, under
    ``--benchmark-disable`` too. Frames carry fleet positions (the longer ids
    every worker gives with the Redis bridge), as in the deployed shape.
    """

    @staticmethod
    def _fill(broadcaster: Broadcaster, users: list[UUID], frames: int) -> int:
        """Route ``frames`` balance frames to each user; the bytes it took to hold them."""
        positions = (f"{1_718_000_000_000 + n}-0" for n in itertools.count())
        broadcaster.bind_positions(lambda: next(positions))
        events = [_balance(user, i) for user in users for i in range(frames)]
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for event in events:
                broadcaster.handle(event)
            gc.collect()
            return int(tracemalloc.get_traced_memory()[0] - base)
        finally:
            tracemalloc.stop()

    def test_bytes_per_user_with_a_full_buffer(self, ratios: RatioBook) -> None:
        """1,000 users, each with a full default buffer (64 frames)."""
        broadcaster = Broadcaster()
        users = [UUID(int=u + 1) for u in range(1000)]
        grown = self._fill(broadcaster, users, 64)
        per_user, per_frame = grown / len(users), grown / (64 * len(users))
        assert broadcaster.statistics()["buffered"] == 64 * len(users)
        ratios.notes.append(
            f"sse resume buffer: {per_user:,.0f} bytes per user with 64 frames "
            f"({per_frame:,.0f} per balance frame)"
        )
        assert 0 < per_frame < 2048
        assert per_user < 128 * 1024

    def test_bytes_per_user_with_one_frame(self, ratios: RatioBook) -> None:
        """2,000 users with one frame each: the buffer's own overhead shows."""
        broadcaster = Broadcaster()
        users = [UUID(int=u + 1) for u in range(2000)]
        per_user = self._fill(broadcaster, users, 1) / len(users)
        ratios.notes.append(f"sse resume buffer: {per_user:,.0f} bytes per user with 1 frame")
        assert 0 < per_user < 4096

    def test_buffered_users_bounds_the_total(self, ratios: RatioBook) -> None:
        """2,000 users stream through ``buffered_users=100``: only 100 buffers' worth stays."""
        capped = Broadcaster(buffered_users=100, buffer_size=16)
        grown = self._fill(capped, [UUID(int=u + 1) for u in range(2000)], 16)
        reference = Broadcaster(buffer_size=16)
        full = self._fill(reference, [UUID(int=u + 1) for u in range(100)], 16)
        assert capped.statistics()["buffered"] == 100 * 16
        ratios.notes.append(
            f"sse resume buffers: {grown:,} bytes kept for 2,000 users with "
            f"buffered_users=100 ({full:,} for 100 users alone)"
        )
        assert grown < 1.5 * full
