"""`LargeWithdrawalPlugin`: the hook implementations and the one event handler."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Final, final

from eventbus import EventBus, PluginNotFoundError, Priority, Subscription, hookimpl
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_sse import SSEPlugin

from eventbus_example.events import LargeWithdrawal

__all__ = ["DEFAULT_THRESHOLD", "LargeWithdrawalPlugin"]

#: Used when the plugin is created by ``load_entry_points()`` (which passes no arguments).
DEFAULT_THRESHOLD: Final = Decimal("1000")

_log = logging.getLogger("eventbus_example")


@final
class LargeWithdrawalPlugin:
    """Publish `LargeWithdrawal` when an account loses ``threshold`` or more in one sync.

    ``load_entry_points()`` instantiates this class once per bus, so every bus
    gets its own counters and nothing is shared between buses.

    Args:
        threshold: The smallest drop that is reported, in the account's currency.
    """

    __slots__ = ("_bus", "_subscription", "alerts", "threshold")

    def __init__(self, threshold: Decimal = DEFAULT_THRESHOLD) -> None:
        if not isinstance(threshold, Decimal) or threshold <= 0:
            raise ValueError(f"threshold must be a positive Decimal, got {threshold!r}")
        self.threshold = threshold
        self.alerts = 0
        self._bus: EventBus | None = None
        self._subscription: Subscription[AccountBalanceUpdated] | None = None

    @hookimpl
    def eventbus_register(self, bus: EventBus) -> None:
        """Subscribe the handler (runs once, when the plugin is registered)."""
        # Subscriptions made here are recorded against the plugin: `eventbus
        # plugins` lists them, and a failure here cancels them all (atomic).
        self._bus = bus
        # A local handler (the default kind): with the Redis bridge it runs once,
        # on the worker where the balance was published, not on every worker.
        self._subscription = bus.subscribe(
            AccountBalanceUpdated, self._on_balance, priority=Priority.DEFAULT - 10
        )

    @hookimpl
    def eventbus_startup(self, bus: EventBus) -> None:
        """Stream alerts to browsers if the SSE plugin is loaded, then announce the threshold."""
        # Startup runs after every plugin is registered, so this is the place to
        # look for other plugins: by class, which is typed (the SSE plugin ships
        # with eventbus, but an application may not have loaded it).
        try:
            sse = bus.get_plugin(SSEPlugin)
        except PluginNotFoundError:
            pass
        else:
            sse.broadcaster.register_mapping(LargeWithdrawal, user=lambda event: event.user_id)
        _log.info("watching for withdrawals of %s or more", self.threshold)

    @hookimpl
    async def eventbus_shutdown(self, bus: EventBus) -> None:
        """Report what was seen; async hooks are awaited by ``bus.aclose()``."""
        _log.info("reported %d large withdrawal(s)", self.alerts)

    def _on_balance(self, event: AccountBalanceUpdated) -> None:
        # A sync handler: it runs under publish_sync() and publish() alike. The
        # event it publishes is dispatched depth-first, before publish returns.
        if -event.delta < self.threshold or self._bus is None:
            return
        self.alerts += 1
        self._bus.publish_sync(
            LargeWithdrawal(
                user_id=event.user_id,
                account_id=event.account_id,
                amount=-event.delta,
                currency=event.currency,
                threshold=self.threshold,
            )
        )
