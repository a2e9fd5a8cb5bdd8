"""Net worth in a fleet: every worker derives the same events from the stream, and a
late worker restores the projection. Workers are real buses fed by a hand-played
stream (`Stream`, a tiny `eventbus.Sequencer`), as the Redis bridge would feed them.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from eventbus import EventBus, PluginRegistrationError, codec
from eventbus.events import derived_id
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus_networth import PROJECTION_NAME, NetWorthPlugin
from tests.plugins.networth.helpers import RATES, Stream, balance


def worker(stream: Stream) -> tuple[EventBus, NetWorthPlugin, list[PortfolioNetWorthRecalculated]]:
    """A bus with the net-worth plugin on ``stream``, and the net worth it derives."""
    bus = stream.attach(EventBus(raise_errors=True))
    plugin = NetWorthPlugin("USD", RATES)
    bus.register_plugin(plugin, name="networth")
    derived: list[PortfolioNetWorthRecalculated] = []
    bus.subscribe(PortfolioNetWorthRecalculated, derived.append, fleet=True)
    return bus, plugin, derived


def wire(events: list[PortfolioNetWorthRecalculated]) -> list[bytes]:
    """The events as the codec puts them on the wire (and SSE in its frames)."""
    return [codec.dumps(e) for e in events]


class TestRegistration:
    """What the plugin hands the bus."""

    def test_a_fleet_handler_and_the_networth_projection(self) -> None:
        """The balance handler runs in the fleet; the state is the "networth" projection."""
        bus = EventBus()
        plugin = NetWorthPlugin("USD", RATES)
        bus.register_plugin(plugin, name="networth")
        (sub,) = bus.subscriptions()
        assert (sub.event_type, sub.fleet) == (AccountBalanceUpdated, True)
        assert bus.projections() == (plugin.projection,)
        assert plugin.projection.name == PROJECTION_NAME == "networth"

    def test_a_taken_projection_name_leaves_nothing_behind(self) -> None:
        """A second net-worth plugin on one bus is refused whole: no stray subscription."""
        bus = EventBus()
        bus.register_plugin(NetWorthPlugin("USD", RATES), name="networth")
        with pytest.raises(PluginRegistrationError, match="networth"):
            bus.register_plugin(NetWorthPlugin("EUR"), name="networth-eur")
        assert len(bus.subscriptions()) == 1


class TestSameEverywhere:
    """Two workers fed the same stream derive the same net worth, byte for byte."""

    async def test_derived_ids_and_bytes_are_identical(self) -> None:
        """Entries published on both workers: the same derived events on each, at .1."""
        stream = Stream()
        (a, _, on_a), (b, _, on_b) = worker(stream), worker(stream)
        user = uuid4()
        causes = [balance(user, uuid4(), 0, 100), balance(user, uuid4(), 0, 100, "EUR")]
        a.publish_sync(causes[0])
        await b.publish(causes[1])
        assert on_a == on_b == []  # nothing is derived before the stream delivers
        for bus in (a, b):
            await stream.deliver(bus)
        assert wire(on_a) == wire(on_b)
        assert [e.event_id for e in on_a] == [derived_id(c, "networth") for c in causes]
        assert [e.occurred_at for e in on_a] == [c.occurred_at for c in causes]
        assert on_a[-1].new_net_worth == Decimal("208.00")
        assert [type(e) for e, _ in stream.entries] == [AccountBalanceUpdated] * 2  # not appended

    @pytest.mark.parametrize("b_first", [False, True], ids=["a-wins", "b-wins"])
    async def test_concurrent_updates_converge_in_stream_order(self, b_first: bool) -> None:
        """A and B update one user at once; whichever append wins, both agree on every frame."""
        stream = Stream()
        (a, on_a_plugin, on_a), (b, on_b_plugin, on_b) = worker(stream), worker(stream)
        user = uuid4()
        a.publish_sync(balance(user, uuid4(), 0, 100))  # each worker's local order differs
        b.publish_sync(balance(user, uuid4(), 0, 100, "EUR"))
        if b_first:
            stream.entries.reverse()  # B's XADD reached Redis first
        for bus in (b, a):  # delivery timing differs per worker; the order does not
            await stream.deliver(bus)
        assert wire(on_a) == wire(on_b)
        first = Decimal("108.00") if b_first else Decimal(100)
        assert [e.new_net_worth for e in on_a] == [first, Decimal("208.00")]
        assert on_a_plugin.aggregator.net_worth(user) == on_b_plugin.aggregator.net_worth(user)

    async def test_async_subscribers_in_the_fleet_need_no_outbox(self) -> None:
        """Inside a delivery the bus awaits async subscribers; nothing is queued or appended."""
        stream = Stream()
        bus, plugin, _ = worker(stream)
        got: list[tuple[PortfolioNetWorthRecalculated, str | None]] = []

        async def record(event: PortfolioNetWorthRecalculated) -> None:
            got.append((event, bus.current_position()))

        bus.subscribe(PortfolioNetWorthRecalculated, record, fleet=True)
        bus.publish_sync(balance(uuid4(), uuid4(), 0, 5))
        await stream.deliver(bus)
        assert [position for _, position in got] == [f"{Stream.position(0)}.1"]
        assert plugin.pending() == 0
        assert len(stream.entries) == 1


class TestProjection:
    """A late worker restores the state instead of starting from zero."""

    async def test_restore_then_catch_up_gives_the_same_events(self) -> None:
        """Snapshot A between two deliveries; C restores it and derives what A derives next."""
        stream = Stream()
        a, _, on_a = worker(stream)
        users, accounts = [uuid4(), uuid4()], [uuid4(), uuid4()]
        for n in range(1, 4):
            for user, account in zip(users, accounts, strict=True):
                a.publish_sync(balance(user, account, n - 1, n, "GBP"))
        await stream.deliver(a, upto=4)
        (projection,) = a.projections()
        snapshot = projection.snapshot()
        c, _, on_c = worker(stream)
        (restored,) = c.projections()
        restored.restore(snapshot)
        stream.skip(c, 4)  # C's reader starts at the snapshot's position
        before = len(on_a)
        for bus in (a, c):
            await stream.deliver(bus)
        assert len(on_c) == 2
        assert wire(on_c) == wire(on_a[before:])
        assert restored.snapshot() == projection.snapshot()

    async def test_a_restored_worker_ignores_entries_it_has(self) -> None:
        """Replaying an entry the snapshot already holds changes nothing (recent ids)."""
        stream = Stream()
        a, _, _ = worker(stream)
        a.publish_sync(balance(uuid4(), uuid4(), 0, 5))
        await stream.deliver(a)
        c, plugin, on_c = worker(stream)
        c.projections()[0].restore(a.projections()[0].snapshot())
        await stream.deliver(c)  # from the start: overlaps the snapshot
        assert on_c == []
        assert plugin.projection.snapshot() == a.projections()[0].snapshot()

    def test_a_bad_snapshot_is_refused_and_changes_nothing(self) -> None:
        """Restore validates: another base currency, or corrupt bytes, raise ValueError."""
        plugin = NetWorthPlugin("USD", RATES)
        user: UUID = uuid4()
        plugin.aggregator.apply(balance(user, uuid4(), 0, 3))
        for data in (NetWorthPlugin("EUR").projection.snapshot(), b"{"):
            with pytest.raises(ValueError, match="snapshot"):
                plugin.projection.restore(data)
        assert plugin.aggregator.net_worth(user) == 3
