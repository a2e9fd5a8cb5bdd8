"""`NetWorthPlugin` on a real bus: entry points, the event chain, threads and async subscribers."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from eventbus import DomainEvent, EventBus, PluginLoadError
from eventbus.events import EXACT
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)
from eventbus_networth import NetWorthPlugin
from tests.plugins.networth.helpers import RATES, balance
from tests.support import wait_until_async


@pytest.fixture(name="isolated_env")
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Only this issue's plugins load; no rates from the environment."""
    monkeypatch.setenv("EVENTBUS_BLOCK_PLUGINS", "sse,redis")
    monkeypatch.delenv("EVENTBUS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("EVENTBUS_NETWORTH_BASE", raising=False)
    monkeypatch.delenv("EVENTBUS_NETWORTH_RATES", raising=False)
    return monkeypatch


@pytest.fixture(name="plugin")
def _plugin(event_bus: EventBus) -> NetWorthPlugin:
    plugin = NetWorthPlugin("USD", RATES)
    event_bus.register_plugin(plugin, name="networth")
    return plugin


def _chain_ok(events: list[PortfolioNetWorthRecalculated], final: Decimal) -> bool:
    """Consecutive events link up (each starts where the previous ended) and end at ``final``."""
    start = Decimal(0)
    for event in events:
        if event.previous_net_worth != start or event.delta == 0:
            return False
        start = event.new_net_worth
    return start == final


class TestEntryPoint:
    """Loading through ``load_entry_points()``, as users do."""

    def test_chain_through_a_real_bus(
        self,
        isolated_env: pytest.MonkeyPatch,
        event_bus: EventBus,
        captured_events: list[DomainEvent],
    ) -> None:
        """One balance event leads to exactly one recalculated event, right after it."""
        assert set(event_bus.load_entry_points()) >= {"logging", "networth"}
        user = uuid4()
        cause = balance(user, uuid4(), 0, "250.00")
        event_bus.publish_sync(cause)
        assert [type(e) for e in captured_events] == [
            AccountBalanceUpdated,
            PortfolioNetWorthRecalculated,
        ]
        derived = captured_events[1]
        assert isinstance(derived, PortfolioNetWorthRecalculated)
        assert (derived.user_id, derived.new_net_worth, derived.delta) == (
            user,
            Decimal("250.00"),
            Decimal("250.00"),
        )

    def test_listed_in_plugins(self, isolated_env: pytest.MonkeyPatch, event_bus: EventBus) -> None:
        """Both plugins appear in ``bus.plugins()`` with their subscriptions."""
        event_bus.load_entry_points()
        infos = {info.name: info for info in event_bus.plugins()}
        assert infos["networth"].distribution == "eventbus"
        assert [s.event_type for s in infos["networth"].subscriptions] == ["AccountBalanceUpdated"]
        assert [s.event_type for s in infos["logging"].subscriptions] == ["DomainEvent"]

    def test_configured_from_environment(
        self, isolated_env: pytest.MonkeyPatch, event_bus: EventBus
    ) -> None:
        """Without arguments the plugin reads its base currency and rates from env vars."""
        isolated_env.setenv("EVENTBUS_NETWORTH_BASE", "EUR")
        isolated_env.setenv("EVENTBUS_NETWORTH_RATES", "USD:EUR=0.92,GBP:EUR=1.17")
        event_bus.load_entry_points()
        plugin = event_bus.get_plugin("networth")
        assert isinstance(plugin, NetWorthPlugin)
        user = uuid4()
        event_bus.publish_sync(balance(user, uuid4(), 0, "100", "USD"))
        event_bus.publish_sync(balance(user, uuid4(), 0, "100", "GBP"))
        assert plugin.aggregator.base_currency == "EUR"
        assert plugin.aggregator.net_worth(user) == Decimal("209.00")

    def test_bad_environment_fails_loading(
        self, isolated_env: pytest.MonkeyPatch, event_bus: EventBus
    ) -> None:
        """A malformed rates variable is a load error naming the variable."""
        isolated_env.setenv("EVENTBUS_NETWORTH_RATES", "EUR-USD=1.08")
        with pytest.raises(PluginLoadError) as info:
            event_bus.load_entry_points()
        assert "EVENTBUS_NETWORTH_RATES" in str(info.value.__cause__)

    def test_registered_instance_wins(
        self, isolated_env: pytest.MonkeyPatch, event_bus: EventBus
    ) -> None:
        """A plugin registered as "networth" first is kept; the entry point is skipped."""
        mine = NetWorthPlugin("GBP")
        event_bus.register_plugin(mine, name="networth")
        assert "networth" not in event_bus.load_entry_points()
        assert event_bus.get_plugin("networth") is mine

    def test_one_bus_per_instance(self, event_bus: EventBus, plugin: NetWorthPlugin) -> None:
        """Registering the same instance with a second bus is refused."""
        with pytest.raises(Exception, match="another bus"):
            EventBus().register_plugin(plugin, name="networth")


class TestPublishing:
    """What the plugin publishes, and what it ignores."""

    def test_no_event_when_unchanged(
        self, plugin: NetWorthPlugin, event_bus: EventBus, captured_events: list[DomainEvent]
    ) -> None:
        """A balance update that leaves net worth unchanged publishes nothing."""
        user, account = uuid4(), uuid4()
        event_bus.publish_sync(balance(user, account, 0, "10"))
        event_bus.publish_sync(balance(user, account, "10", "10.0"))
        derived = [e for e in captured_events if isinstance(e, PortfolioNetWorthRecalculated)]
        assert len(derived) == 1

    def test_holdings_change_nothing(
        self, plugin: NetWorthPlugin, event_bus: EventBus, captured_events: list[DomainEvent]
    ) -> None:
        """Holdings events carry no value: no state change, no event."""
        user = uuid4()
        event_bus.publish_sync(
            AccountHoldingsUpdated(
                user_id=user,
                account_id=uuid4(),
                holdings_count=3,
                created_count=3,
                updated_count=0,
                deactivated_count=0,
            )
        )
        assert len(captured_events) == 1
        assert plugin.aggregator.accounts(user) == {}


class TestThreads:
    """publish_sync from several threads at once."""

    def test_concurrent_updates_are_exact_and_ordered(
        self, plugin: NetWorthPlugin, event_bus: EventBus
    ) -> None:
        """Final totals are exact and each user's events form one unbroken chain."""
        users = [uuid4() for _ in range(3)]
        accounts = {u: [uuid4() for _ in range(4)] for u in users}
        currencies = ("USD", "EUR", "GBP", "JPY")
        derived: list[PortfolioNetWorthRecalculated] = []
        event_bus.subscribe(PortfolioNetWorthRecalculated, derived.append)
        barrier = threading.Barrier(4)

        def worker(seed: int) -> None:
            barrier.wait()
            for step in range(300):
                user = users[(seed + step) % 3]
                index = (seed * 7 + step) % 4
                new = Decimal(f"{seed}{step}.{step % 100:02d}")
                # previous_balance is unknown under contention: the aggregator trusts new_balance.
                event_bus.publish_sync(
                    balance(user, accounts[user][index], 0, new, currencies[index])
                )

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        agg = plugin.aggregator
        for user in users:
            expected = Decimal(0)
            for account, entry in agg.accounts(user).items():
                index = accounts[user].index(account)
                rate = Decimal(1) if index == 0 else RATES[(currencies[index], "USD")]
                expected = EXACT.add(expected, EXACT.multiply(entry.balance, rate))
            assert agg.net_worth(user) == expected
            mine = [e for e in derived if e.user_id == user]
            assert _chain_ok(mine, expected)


class TestAsyncSubscribers:
    """An async handler on the net-worth event: delivered on the loop, in order."""

    async def test_await_publish_delivers_in_order(
        self, plugin: NetWorthPlugin, event_bus: EventBus
    ) -> None:
        """Under ``await bus.publish`` the derived events reach an async handler in order."""
        got: list[PortfolioNetWorthRecalculated] = []

        async def slow(event: PortfolioNetWorthRecalculated) -> None:
            await asyncio.sleep(0)  # yields, so a naive scheduler would interleave
            got.append(event)

        event_bus.subscribe(PortfolioNetWorthRecalculated, slow)
        user, account = uuid4(), uuid4()
        previous = Decimal(0)
        for n in range(1, 21):
            await event_bus.publish(balance(user, account, previous, n))
            previous = Decimal(n)
        await wait_until_async(lambda: len(got) == 20, what="20 net-worth events")
        assert _chain_ok(got, Decimal(20))
        assert plugin.pending() == 0

    async def test_queued_events_are_published_as_derived_not_roots(
        self, plugin: NetWorthPlugin, event_bus: EventBus
    ) -> None:
        """The outbox publishes each net worth inside ``caused_by(balance)``: never a root event."""
        chains: list[tuple[str, ...]] = []

        async def record(event: PortfolioNetWorthRecalculated) -> None:
            chains.append(tuple(type(e).__name__ for e in event_bus.event_chain()))

        event_bus.subscribe(PortfolioNetWorthRecalculated, record)
        await event_bus.publish(balance(uuid4(), uuid4(), 0, 1))
        await wait_until_async(lambda: chains, what="the net-worth event")
        assert chains == [("AccountBalanceUpdated", "PortfolioNetWorthRecalculated")]

    async def test_from_threads_via_started_bus(
        self, plugin: NetWorthPlugin, event_bus: EventBus
    ) -> None:
        """publish_sync from worker threads hands derived events to the loop, per-user ordered."""
        got: list[PortfolioNetWorthRecalculated] = []

        async def record(event: PortfolioNetWorthRecalculated) -> None:
            await asyncio.sleep(0)
            got.append(event)

        event_bus.subscribe(PortfolioNetWorthRecalculated, record)
        users = [uuid4(), uuid4()]
        async with event_bus:

            def worker(user: UUID) -> None:
                account = uuid4()
                for n in range(1, 51):
                    event_bus.publish_sync(balance(user, account, n - 1, n))

            threads = [threading.Thread(target=worker, args=(u,)) for u in users]
            for thread in threads:
                thread.start()
            await wait_until_async(lambda: not any(t.is_alive() for t in threads), what="workers")
            await wait_until_async(lambda: len(got) == 100, what="100 net-worth events")
        for user in users:
            assert _chain_ok([e for e in got if e.user_id == user], Decimal(50))

    async def test_shutdown_flushes_pending(
        self, plugin: NetWorthPlugin, event_bus: EventBus
    ) -> None:
        """Leaving ``async with bus`` delivers events still queued for async handlers."""
        got: list[PortfolioNetWorthRecalculated] = []

        async def record(event: PortfolioNetWorthRecalculated) -> None:
            got.append(event)

        event_bus.subscribe(PortfolioNetWorthRecalculated, record)
        async with event_bus:
            event_bus.publish_sync(balance(uuid4(), uuid4(), 0, 1))  # sync caller on the loop
            assert plugin.pending() + len(got) == 1
        assert len(got) == 1

    def test_no_loop_logs_an_error(
        self, plugin: NetWorthPlugin, event_bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With async subscribers but no loop anywhere, the loss is logged, state still updated."""

        async def record(event: PortfolioNetWorthRecalculated) -> None:
            """Never called: there is no loop."""

        event_bus.subscribe(PortfolioNetWorthRecalculated, record)
        user = uuid4()
        event_bus.publish_sync(balance(user, uuid4(), 0, 5))
        assert plugin.aggregator.net_worth(user) == Decimal(5)
        assert "no running loop" in caplog.text
