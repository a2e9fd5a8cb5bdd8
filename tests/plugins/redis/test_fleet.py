"""What runs where: local handlers on the publisher, fleet handlers everywhere, in one order.

Two buses with their own bridges in this process are two workers as far as
Redis can tell (each has its own origin id and connections). The two-process
tests with real uvicorn are in tests/fleet/.
"""

from __future__ import annotations

import asyncio
import threading
from uuid import uuid4

from eventbus import DomainEvent, EventBus
from eventbus.events import derived_id
from eventbus.portfolio import AccountBalanceUpdated, AccountHoldingsUpdated
from tests.plugins.redis.conftest import MakeWorker, RedisServer
from tests.plugins.redis.helpers import STREAM, balance, holdings, numbered, publish_all
from tests.support import wait_until_async


def entry_ids(server: RedisServer) -> list[str]:
    """The ids of every entry in the events stream, in order."""
    with server.client() as client:
        return [entry_id.decode() for entry_id, _ in client.xrange(STREAM)]


class TestWhatRunsWhere:
    """The rule of docs/redis.md: local handlers where published, fleet handlers everywhere."""

    async def test_local_handlers_run_only_on_the_publisher(self, workers: MakeWorker) -> None:
        """A's local handler sees A's events at publish time; B's local handler never does."""
        a, b = await workers(), await workers()
        events = numbered(20)
        await publish_all(a, events)
        assert a.local == events  # at once, before any stream round trip
        await b.delivered(20)
        assert b.local == []

    async def test_fleet_handlers_run_on_every_worker_including_the_publisher(
        self, workers: MakeWorker
    ) -> None:
        """Every worker's fleet handler gets each entry once, the publisher's included."""
        a, b = await workers(), await workers()
        events = numbered(30)
        await publish_all(a, events)
        await a.delivered(30)
        await b.delivered(30)
        assert a.fleet_events == events
        assert b.fleet_events == events
        assert a.stats()["own"] == a.stats()["received"] == 30
        assert b.stats()["own"] == 0
        assert b.stats()["received"] == 30

    async def test_positions_are_the_stream_entry_ids(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """``bus.current_position()`` in a fleet handler is the entry's id, on every worker."""
        a, b = await workers(), await workers()
        await publish_all(a, numbered(5))
        await publish_all(b, numbered(5, 5))
        await a.delivered(10)
        await b.delivered(10)
        ids = entry_ids(redis_server)
        assert a.positions == ids
        assert b.positions == ids
        # Outside a fleet handler there is no position.
        assert a.bus.current_position() is None

    async def test_concurrent_publishers_agree_on_one_order(self, workers: MakeWorker) -> None:
        """Events published on A and B at the same time reach both in the same order."""
        a, b = await workers(), await workers()
        on_a, on_b = numbered(100), numbered(100, 100)
        await asyncio.gather(publish_all(a, on_a), publish_all(b, on_b))
        await a.delivered(200)
        await b.delivered(200)
        assert a.fleet == b.fleet
        # Each publisher's own events keep their publishing order in the stream.
        assert [e for e in a.fleet_events if e in set(on_a)] == on_a
        assert [e for e in a.fleet_events if e in set(on_b)] == on_b

    async def test_publishing_from_other_threads(self, workers: MakeWorker) -> None:
        """``publish_sync`` from several threads: each thread's order holds in the fleet order."""
        a, b = await workers(), await workers()
        per_thread = [numbered(200, 1000 * t) for t in range(4)]

        def run(events: list[AccountHoldingsUpdated]) -> None:
            for event in events:
                a.bus.publish_sync(event)

        threads = [threading.Thread(target=run, args=(events,)) for events in per_thread]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        await b.delivered(800)
        for events in per_thread:
            mine = set(events)
            assert [e for e in b.fleet_events if e in mine] == events


class TestDerived:
    """Events published by handlers: fleet-derived stay out of the stream, local ones go in."""

    async def test_derived_in_the_fleet_same_position_everywhere_local_handlers_on_origin(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """A fleet handler's event: ``<id>.1`` on both, not appended, local handlers on A only."""

        def derive(bus: EventBus) -> None:
            def on_balance(event: AccountBalanceUpdated) -> None:
                bus.publish_sync(
                    AccountHoldingsUpdated(
                        event_id=derived_id(event, "holdings"),
                        occurred_at=event.occurred_at,
                        user_id=event.user_id,
                        account_id=event.account_id,
                        holdings_count=1,
                        created_count=1,
                        updated_count=0,
                        deactivated_count=0,
                    )
                )

            bus.subscribe(AccountBalanceUpdated, on_balance, fleet=True)

        a, b = await workers(setup=derive), await workers(setup=derive)
        root = balance(uuid4(), "10")
        await a.bus.publish(root)
        await a.delivered(2)
        await b.delivered(2)
        (entry,) = entry_ids(redis_server)
        assert a.fleet == b.fleet
        assert a.positions == [entry, f"{entry}.1"]
        derived = a.fleet_events[1]
        assert isinstance(derived, AccountHoldingsUpdated)
        assert a.local == [root, derived]  # the origin runs the derived event's local handlers
        assert b.local == []
        assert a.stats()["sent"] == 1

    async def test_a_local_handler_publishes_in_local_context(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """What a local handler publishes is an entry of its own: every worker gets both."""
        follow_up = holdings(99)

        def chain(bus: EventBus) -> None:
            def on_balance(event: AccountBalanceUpdated) -> None:
                bus.publish_sync(follow_up)

            bus.subscribe(AccountBalanceUpdated, on_balance)

        a = await workers(setup=chain)
        b = await workers()
        root = balance(uuid4(), "5")
        await a.bus.publish(root)
        await b.delivered(2)
        assert b.fleet_events == [root, follow_up]
        assert b.positions == entry_ids(redis_server)


class TestSelection:
    """Types the bridge does not sequence run all their handlers at publish time."""

    async def test_unselected_class_runs_fleet_handlers_at_publish(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """With ``events=(AccountHoldingsUpdated,)`` a balance update never enters the stream."""
        a = await workers(events=(AccountHoldingsUpdated,))
        event = balance(uuid4(), "1")
        await a.bus.publish(event)
        assert a.fleet == [(None, event)]  # at once, no position
        marker = holdings()
        await a.bus.publish(marker)
        await a.delivered(2)
        assert a.fleet_events == [event, marker]
        assert len(entry_ids(redis_server)) == 1

    async def test_classes_without_a_wire_name_stay_local(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """A DomainEvent the codec cannot name is dispatched entirely here."""
        a = await workers()
        plain = DomainEvent()
        await a.bus.publish(plain)
        assert a.fleet == [(None, plain)]
        await a.bus.publish(holdings())
        await wait_until_async(lambda: a.stats()["sent"] == 1, what="one sent")
        assert len(entry_ids(redis_server)) == 1


class TestShutdown:
    """Closing flushes what is pending and reads it back first."""

    async def test_close_drains_and_delivers_own_entries(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """Events published just before ``aclose`` are in the stream and reached the fleet handler."""
        a = await workers()
        events = numbered(300)
        for event in events:
            a.bus.publish_sync(event)
        await a.bus.aclose()
        assert len(entry_ids(redis_server)) == 300
        assert a.fleet_events == events
        assert a.bus.sequencer is None

    async def test_after_close_fleet_handlers_run_at_publish(self, workers: MakeWorker) -> None:
        """Detached, the bus is its own fleet again."""
        a = await workers()
        await a.bus.aclose()
        event = holdings()
        await a.bus.publish(event)
        assert a.fleet == [(None, event)]
