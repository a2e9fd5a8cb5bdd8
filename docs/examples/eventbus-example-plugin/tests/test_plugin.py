"""Tests for eventbus-example-plugin, using eventbus's pytest fixtures.

eventbus installs a pytest plugin providing ``event_bus`` (a fresh bus with
``raise_errors=True``, so a failing handler fails the test) and
``captured_events`` (every event published on it, in dispatch order).
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest
from eventbus import EventBus, InvalidEventError, codec
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_sse import SSEPlugin

from eventbus_example import LargeWithdrawal, LargeWithdrawalPlugin

USER = UUID("00000000-0000-7000-8000-000000000001")
ACCOUNT = UUID("00000000-0000-7000-8000-000000000002")


def balance(previous: str, new: str) -> AccountBalanceUpdated:
    """A balance event for the test account."""
    return AccountBalanceUpdated.from_change(
        user_id=USER,
        account_id=ACCOUNT,
        previous_balance=Decimal(previous),
        new_balance=Decimal(new),
        currency="EUR",
    )


@pytest.fixture(name="plugin")
def _plugin(event_bus: EventBus) -> LargeWithdrawalPlugin:
    plugin = LargeWithdrawalPlugin(threshold=Decimal("500"))
    event_bus.register_plugin(plugin, name="example")
    return plugin


class TestAlerts:
    """The handler publishes `LargeWithdrawal` for big drops only."""

    def test_large_drop_publishes_an_alert_after_the_balance_event(
        self, plugin: LargeWithdrawalPlugin, event_bus: EventBus, captured_events: list[object]
    ) -> None:
        """A 600 EUR drop yields one alert, dispatched right after its cause."""
        event_bus.publish_sync(balance("1000.00", "400.00"))
        assert [type(e) for e in captured_events] == [AccountBalanceUpdated, LargeWithdrawal]
        alert = captured_events[1]
        assert isinstance(alert, LargeWithdrawal)
        assert (alert.amount, alert.currency, alert.threshold) == (
            Decimal("600.00"),
            "EUR",
            Decimal("500"),
        )
        assert plugin.alerts == 1

    @pytest.mark.parametrize(("previous", "new"), [("1000", "501"), ("100", "900"), ("5", "5")])
    def test_small_drops_and_deposits_are_ignored(
        self,
        plugin: LargeWithdrawalPlugin,
        event_bus: EventBus,
        captured_events: list[object],
        previous: str,
        new: str,
    ) -> None:
        """Drops under the threshold, deposits and no-ops publish nothing more."""
        event_bus.publish_sync(balance(previous, new))
        assert [type(e) for e in captured_events] == [AccountBalanceUpdated]
        assert plugin.alerts == 0

    async def test_works_under_async_publish(
        self, plugin: LargeWithdrawalPlugin, event_bus: EventBus, captured_events: list[object]
    ) -> None:
        """The sync handler runs the same way under ``await bus.publish``."""
        await event_bus.publish(balance("900", "0"))
        assert [type(e) for e in captured_events] == [AccountBalanceUpdated, LargeWithdrawal]


class TestEvent:
    """`LargeWithdrawal` validates its fields and has a wire name."""

    def test_round_trips_through_the_codec(self) -> None:
        """The wire name is registered, so the codec can encode and decode it."""
        alert = LargeWithdrawal(
            user_id=USER,
            account_id=ACCOUNT,
            amount=Decimal("12.50"),
            currency="USD",
            threshold=Decimal("10"),
        )
        assert codec.loads(codec.dumps(alert)) == alert
        assert b'"example.withdrawal.large"' in codec.dumps(alert)

    def test_rejects_a_non_positive_amount(self) -> None:
        """The error names the field."""
        with pytest.raises(InvalidEventError, match=r"LargeWithdrawal\.amount"):
            LargeWithdrawal(
                user_id=USER,
                account_id=ACCOUNT,
                amount=Decimal("-1"),
                currency="USD",
                threshold=Decimal("10"),
            )


class TestPlugin:
    """Registration and lifecycle."""

    def test_rejects_a_bad_threshold(self) -> None:
        """A float threshold is refused, naming the parameter."""
        with pytest.raises(ValueError, match="threshold"):
            LargeWithdrawalPlugin(threshold=0.5)  # type: ignore[arg-type]

    def test_registration_is_visible_in_plugins(
        self, plugin: LargeWithdrawalPlugin, event_bus: EventBus
    ) -> None:
        """`bus.plugins()` reports the hooks and the subscription."""
        (info,) = [p for p in event_bus.plugins() if p.name == "example"]
        assert info.hooks == ("eventbus_register", "eventbus_shutdown", "eventbus_startup")
        assert [(s.event_type, s.priority) for s in info.subscriptions] == [
            ("AccountBalanceUpdated", -10)
        ]

    async def test_lifecycle_hooks_run(
        self, plugin: LargeWithdrawalPlugin, event_bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """``async with bus`` calls the startup and (async) shutdown hooks."""
        caplog.set_level("INFO", logger="eventbus_example")
        async with event_bus:
            event_bus.publish_sync(balance("2000", "0"))
        assert "watching for withdrawals of 500 or more" in caplog.text
        assert "reported 1 large withdrawal(s)" in caplog.text

    async def test_alerts_are_streamed_when_the_sse_plugin_is_loaded(
        self, plugin: LargeWithdrawalPlugin, event_bus: EventBus
    ) -> None:
        """With eventbus's SSE plugin on the bus, startup registers the alert's SSE mapping."""
        event_bus.load_entry_points()
        sse = event_bus.get_plugin(SSEPlugin)
        async with event_bus:
            names = sse.broadcaster.event_names()
        assert "example.withdrawal.large" in names
