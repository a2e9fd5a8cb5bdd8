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
