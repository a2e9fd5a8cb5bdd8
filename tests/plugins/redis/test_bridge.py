"""The bridge between buses in one process, over a real redis-server.

Two buses with their own bridges are two workers as far as Redis can tell:
each bridge has its own origin id and its own connections.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from uuid import uuid4

import pytest

from eventbus import DomainEvent, EventBus, codec, event_type
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)
from tests.plugins.redis.conftest import Bridged, RedisServer
from tests.plugins.sse.helpers import balance, holdings, networth
from tests.support import wait_until_async


def collect(bus: EventBus, cls: type[DomainEvent] = DomainEvent) -> list[DomainEvent]:
    """Subscribe a handler that records every ``cls`` event ``bus`` dispatches."""
    seen: list[DomainEvent] = []
    bus.subscribe(cls, seen.append)
    return seen


async def arrived(seen: list[DomainEvent], count: int) -> None:
    """Wait until ``seen`` holds ``count`` events."""
    await wait_until_async(lambda: len(seen) >= count, what=f"{count} events")


async def crosses(a: EventBus, seen_b: list[DomainEvent], events: list[DomainEvent]) -> None:
    """Publish ``events`` on ``a``; the other bus's ``seen_b`` gets exactly them, in order."""
    for event in events:
        await a.publish(event)
    await arrived(seen_b, len(events))
    assert seen_b == events


class TestForwarding:
    """Root events cross; echoes, derived events and unnamed classes do not."""

    async def test_root_events_reach_the_other_bus_in_order(self, bridged: Bridged) -> None:
        """Every root event published on A is re-published once, in order, on B."""
        a, _ = await bridged()
        b, bridge_b = await bridged()
        events = [balance(uuid4(), str(i)) for i in range(50)] + [holdings(uuid4())]
        await crosses(a, collect(b), events)
        assert bridge_b.statistics()["received"] == len(events)

    async def test_no_echo(self, bridged: Bridged) -> None:
        """A bus never receives its own events back from the stream."""
        a, bridge_a = await bridged()
        b, _ = await bridged()
        seen_a, seen_b = collect(a), collect(b)
        events = [balance(uuid4(), "1"), balance(uuid4(), "2")]
        for event in events:
            a.publish_sync(event)
        await arrived(seen_b, 2)
        await wait_until_async(lambda: bridge_a.statistics()["echoes"] == 2, what="own entries")
        assert seen_a == events

    async def test_derived_events_stay_local(self, bridged: Bridged) -> None:
        """An event published by a handler is not forwarded; the root event is."""
        a, bridge_a = await bridged()
        b, _ = await bridged()
        user = uuid4()
        a.subscribe(AccountBalanceUpdated, lambda e: a.publish_sync(networth(e.user_id, "5")))
        seen_b = collect(b)
        root = balance(user, "5")
        await a.publish(root)
        marker = holdings(user)
        await a.publish(marker)
        await arrived(seen_b, 2)
        assert seen_b == [root, marker]
        assert bridge_a.statistics()["sent"] == 2

    async def test_forward_always_forwards_derived_events(self, bridged: Bridged) -> None:
        """A class in ``forward_always`` crosses even when a handler published it."""
        a, _ = await bridged(forward_always=(PortfolioNetWorthRecalculated,))
        b, _ = await bridged()
        derived = networth(uuid4(), "5")
        a.subscribe(AccountBalanceUpdated, lambda e: a.publish_sync(derived))
        seen_b = collect(b)
        root = balance(uuid4(), "5")
        await a.publish(root)
        await arrived(seen_b, 2)
        assert seen_b == [root, derived]

    async def test_events_caused_by_remote_events_are_not_forwarded_back(
        self, bridged: Bridged
    ) -> None:
        """B's handlers reacting to A's event publish locally only, even with forward_always."""
        a, _ = await bridged()
        b, bridge_b = await bridged(forward_always=(PortfolioNetWorthRecalculated,))
        b.subscribe(AccountBalanceUpdated, lambda e: b.publish_sync(networth(e.user_id, "5")))
        seen_a, seen_b = collect(a), collect(b)
        await a.publish(balance(uuid4(), "5"))
        await arrived(seen_b, 2)
        marker = holdings(uuid4())
        await b.publish(marker)
        await wait_until_async(lambda: marker in seen_a, what="B's own root event on A")
        assert [type(e) for e in seen_a] == [AccountBalanceUpdated, AccountHoldingsUpdated]
        assert bridge_b.statistics()["sent"] == 1

    async def test_event_selection_by_class(self, bridged: Bridged) -> None:
        """With ``events=(AccountHoldingsUpdated,)`` only holdings updates cross."""
        a, _ = await bridged(events=(AccountHoldingsUpdated,))
        b, _ = await bridged()
        seen_b = collect(b)
        await a.publish(balance(uuid4(), "1"))
        marker = holdings(uuid4())
        await a.publish(marker)
        await arrived(seen_b, 1)
        assert seen_b == [marker]

    async def test_classes_without_a_wire_name_stay_local(self, bridged: Bridged) -> None:
        """A DomainEvent subclass the codec cannot name is never sent."""
        a, bridge_a = await bridged()
        await a.publish(DomainEvent())
        await a.publish(holdings(uuid4()))
        await wait_until_async(lambda: bridge_a.statistics()["sent"] == 1, what="one sent")
        assert bridge_a.statistics()["sent"] == 1

    async def test_publishing_from_other_threads(self, bridged: Bridged) -> None:
        """Events published with ``publish_sync`` on other threads are forwarded, per-thread order kept."""
        a, _ = await bridged()
        b, _ = await bridged()
        seen_b = collect(b)
        per_thread = [[holdings(uuid4(), i) for i in range(200)] for _ in range(4)]

        def run(events: list[AccountHoldingsUpdated]) -> None:
            for event in events:
                a.publish_sync(event)

        threads = [threading.Thread(target=run, args=(events,)) for events in per_thread]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [t.join() for t in threads])
        await arrived(seen_b, 800)
        for events in per_thread:
            mine = set(events)
            assert [e for e in seen_b if e in mine] == events

    async def test_shutdown_drains_pending_events(self, redis_server: RedisServer) -> None:
        """Events queued just before ``aclose`` are in the stream afterwards."""
        from eventbus_redis import RedisBridgePlugin

        bus = EventBus()
        bus.register_plugin(RedisBridgePlugin(redis_server.url), name="redis")
        await bus.start()
        for i in range(300):
            bus.publish_sync(holdings(uuid4(), i))
        await bus.aclose()
        with redis_server.client() as client:
            assert client.xlen("eventbus:events") == 300


class TestServerVariants:
    """RESP3 clients, servers that refuse scripts, and replies that mean "not now"."""

    async def test_resp3_clients(self, redis_server: RedisServer) -> None:
        """Bridges given RESP3 clients read each other's events (XREAD replies nest deeper)."""
        from redis.asyncio import Redis

        from eventbus_redis import RedisBridgePlugin

        buses = []
        for _ in range(2):
            bus = EventBus(raise_errors=True)
            client = Redis(host="127.0.0.1", port=redis_server.port, protocol=3)
            bus.register_plugin(RedisBridgePlugin(client=client), name="redis")
            await bus.start()
            buses.append(bus)
        a, b = buses
        await crosses(a, collect(b), [holdings(uuid4(), i) for i in range(20)])
        for bus in buses:
            await bus.aclose()

    async def test_a_user_without_scripting_falls_back_to_a_pipeline(
        self, bridged: Bridged, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An ACL user denied EVALSHA still bridges: one warning, then pipelined XADD."""
        with redis_server.client() as admin:
            admin.execute_command(
                "ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "+@all", "-@scripting"
            )
        url = f"redis://noscripts:pw@127.0.0.1:{redis_server.port}/0"
        a, bridge_a = await bridged(url=url)
        b, _ = await bridged(url=url)
        await crosses(a, collect(b), [holdings(uuid4(), i) for i in range(10)])
        assert bridge_a.statistics()["dropped"] == 0
        assert "refuses scripts" in caplog.text

    async def test_out_of_memory_is_retried_not_dropped(
        self, bridged: Bridged, redis_server: RedisServer
    ) -> None:
        """OOM replies hold the batch back; once memory is available again it is sent."""
        a, bridge_a = await bridged()
        b, _ = await bridged()
        seen_b = collect(b)
        with redis_server.client() as admin:
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", 1)
            try:
                events = [holdings(uuid4(), i) for i in range(5)]
                for event in events:
                    await a.publish(event)
                await wait_until_async(
                    lambda: "errorstat_OOM" in admin.info("errorstats"),
                    what="the writer's append refused with OOM",
                )
                assert seen_b == []
            finally:
                admin.config_set("maxmemory", 0)
        await arrived(seen_b, len(events))
        assert seen_b == events
        assert bridge_a.statistics()["dropped"] == 0


@event_type("test.bridge.big_int")
@dataclass(frozen=True, kw_only=True, slots=True)
class BigInt(DomainEvent):
    """A third-party event with an unbounded int (orjson refuses past 64 bits)."""

    value: int


class TestTasksSurvive:
    """Neither the writer nor the reader ends on an error it does not expect."""

    async def test_an_unencodable_event_is_dropped_and_the_writer_goes_on(
        self, bridged: Bridged, caplog: pytest.LogCaptureFixture
    ) -> None:
        """orjson's TypeError for a 65-bit int drops that event only."""
        a, bridge_a = await bridged()
        b, _ = await bridged()
        seen_b = collect(b, AccountHoldingsUpdated)
        await a.publish(BigInt(value=2**70))
        after = holdings(uuid4())
        await a.publish(after)
        await arrived(seen_b, 1)
        assert seen_b == [after]
        assert bridge_a.statistics()["dropped"] == 1
        assert "cannot encode" in caplog.text

    async def test_a_reply_error_on_read_is_retried(
        self, bridged: Bridged, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The stream key briefly holds a string (WRONGTYPE): B's reader logs, waits, goes on."""
        a, _ = await bridged()
        b, bridge_b = await bridged()
        seen_b = collect(b)
        with redis_server.client() as admin:
            admin.delete("eventbus:events")
            admin.set("eventbus:events", "not a stream")
            await wait_until_async(
                lambda: "cannot read the stream" in caplog.text, what="the reader's WRONGTYPE"
            )
            admin.delete("eventbus:events")
        event = holdings(uuid4())
        await a.publish(event)
        await arrived(seen_b, 1)
        assert seen_b == [event]
        assert bridge_b.statistics()["reconnects"] >= 1


class TestMalformed:
    """Garbage in the stream is logged with its id and skipped."""

    @pytest.mark.parametrize(
        "fields",
        [
            {"a:1": "{}", "b:2": "{}"},
            {"someone": "{}"},
            {"someone:1": "not json"},
            {"someone:x": "{}"},
            {"someone:1": '{"type": "no.such.event"}'},
        ],
        ids=["two-fields", "no-seq", "bad-json", "bad-seq", "unknown-type"],
    )
    async def test_garbage_is_logged_and_skipped(
        self,
        bridged: Bridged,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
        fields: dict[str, str],
    ) -> None:
        """The reader logs the entry's stream id, skips it, and delivers what follows."""
        a, _ = await bridged()
        b, bridge_b = await bridged()
        seen_b = collect(b)
        with redis_server.client() as client:
            bad_id = client.xadd("eventbus:events", fields).decode()  # type: ignore[union-attr]
        good = holdings(uuid4())
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            await a.publish(good)
            await arrived(seen_b, 1)
        assert seen_b == [good]
        assert bridge_b.statistics()["malformed"] == 1
        assert any(bad_id in r.getMessage() for r in caplog.records), caplog.text

    async def test_replayed_entries_are_delivered_once(
        self, bridged: Bridged, redis_server: RedisServer
    ) -> None:
        """An entry appended twice (a writer's retry after a lost reply) is delivered once."""
        b, bridge_b = await bridged()
        seen_b = collect(b)
        first, second = holdings(uuid4(), 1), holdings(uuid4(), 2)
        with redis_server.client() as client:
            for seq, event in ((1, first), (1, first), (2, second)):
                client.xadd("eventbus:events", {f"w:{seq}": codec.dumps(event)})
        await arrived(seen_b, 2)
        assert seen_b == [first, second]
        assert bridge_b.statistics()["duplicates"] == 1
