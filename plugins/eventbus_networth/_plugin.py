"""`NetWorthPlugin`: wires a `NetWorthAggregator` to a bus and publishes its events.

Ordering: the derived `PortfolioNetWorthRecalculated` is published while the
user's lock is still held, so one user's events reach subscribers in exactly
the order the state changed, even when several threads publish balance
updates for that user at once. (Publishing after releasing the lock would let
a later change overtake an earlier one on its way to subscribers.)

Async subscribers: the balance handler is sync and publishes with
``publish_sync``. If someone subscribed an ``async def`` handler to the net
worth event, ``publish_sync`` refuses (`AsyncHandlerError`); the event then goes
to a FIFO outbox that one task on the bus's loop drains with ``await
bus.publish(...)``, one event at a time, so the order still holds. While the
outbox is not empty every new event queues behind it. From a thread other than
the loop's, the hand-over uses ``call_soon_threadsafe`` on the loop seen at
``eventbus_startup`` (so start the bus: ``async with bus``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Final, final

from eventbus import AsyncHandlerError, DomainEvent, EventBus, hookimpl
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus_networth._aggregator import NetWorthAggregator
from eventbus_networth._rates import RatesProvider, env_config

__all__ = ["NetWorthPlugin"]

_log = logging.getLogger("eventbus.networth")


@final
class NetWorthPlugin:
    """The ``networth`` plugin: keeps net worth per user and publishes its changes.

    Subscribes to `AccountBalanceUpdated` only: `AccountHoldingsUpdated` carries
    no monetary value, so it never changes net worth. Query the state through
    `aggregator`:

        plugin = bus.get_plugin("networth")
        plugin.aggregator.net_worth(user_id)

    Loaded by entry point (no arguments), it reads ``EVENTBUS_NETWORTH_BASE``
    (default ``USD``) and ``EVENTBUS_NETWORTH_RATES`` (``EUR:USD=1.08,...``).
    To configure it in code, register it before loading entry points; the
    loader skips a name that is already registered:

        bus.register_plugin(NetWorthPlugin("EUR", rates), name="networth")
        bus.load_entry_points()

    Args:
        base_currency: Net worth currency; default ``$EVENTBUS_NETWORTH_BASE`` or ``"USD"``.
        rates: ``{(from, to): Decimal}`` or ``rate(from, to)``; default ``$EVENTBUS_NETWORTH_RATES``.
        recent_ids: Event ids remembered per user to ignore replays.

    Raises:
        ValueError: Invalid arguments or environment variables (the message names them).

    Attributes:
        aggregator: The `NetWorthAggregator` holding the state.
    """

    __slots__ = ("_bus", "_drainer", "_draining", "_loop", "_outbox", "_outbox_lock", "aggregator")

    def __init__(
        self,
        base_currency: str | None = None,
        rates: RatesProvider | None = None,
        *,
        recent_ids: int = 1024,
    ) -> None:
        if base_currency is None or rates is None:
            env_base, env_rates = env_config()
            base_currency = base_currency or env_base or "USD"
            rates = rates if rates is not None else env_rates
        self.aggregator: Final = NetWorthAggregator(base_currency, rates, recent_ids=recent_ids)
        self._bus: EventBus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # (net-worth event, the balance update it was derived from)
        self._outbox: deque[tuple[PortfolioNetWorthRecalculated, DomainEvent | None]] = deque()
        self._outbox_lock: Final = threading.Lock()
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ hooks

    @hookimpl
    def eventbus_register(self, bus: EventBus) -> None:
        """Subscribe to balance updates (one plugin instance serves one bus)."""
        if self._bus is not None and self._bus is not bus:
            raise RuntimeError("this NetWorthPlugin is already registered with another bus")
        self._bus = bus
        bus.subscribe(AccountBalanceUpdated, self.on_balance)

    @hookimpl
    async def eventbus_startup(self, bus: EventBus) -> None:
        """Remember the bus's loop, to hand events to async subscribers from other threads."""
        self._loop = asyncio.get_running_loop()

    @hookimpl
    async def eventbus_shutdown(self, bus: EventBus) -> None:
        """Deliver the events still waiting for async subscribers."""
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            await drainer

    # ------------------------------------------------------------------ handling

    def on_balance(self, event: AccountBalanceUpdated) -> None:
        """Apply a balance update; publish `PortfolioNetWorthRecalculated` if net worth changed."""
        self.aggregator.apply(event, self._emit)

    def _emit(self, event: PortfolioNetWorthRecalculated) -> None:
        # Runs under the user's lock (see the module docstring).
        bus = self._bus
        if bus is None:
            return
        with self._outbox_lock:
            queued = self._draining
        if not queued:
            try:
                bus.publish_sync(event)
                return
            except AsyncHandlerError:
                pass  # an async subscriber: deliver on the loop, in order
        self._defer(event)

    def _defer(self, event: PortfolioNetWorthRecalculated) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            here = True
        except RuntimeError:
            loop, here = self._loop, False
        if loop is None or loop.is_closed():
            _log.error(
                "net worth of user %s changed to %s %s, but the event cannot reach its async "
                "subscribers: no running loop (start the bus with 'async with bus')",
                event.user_id,
                event.new_net_worth,
                event.currency,
            )
            return
        # The balance update being handled: the drain publishes the event as
        # derived from it, so it is no root (the Redis bridge must not forward
        # what every worker derives itself).
        cause = self._bus.current_event() if self._bus is not None else None
        with self._outbox_lock:
            self._outbox.append((event, cause))
            if self._draining:
                return
            self._draining = True
        if here:
            self._start_drain()
        else:
            loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        # A strong reference: the loop only holds tasks weakly.
        self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        bus = self._bus
        assert bus is not None  # _emit checked it
        try:
            while True:
                with self._outbox_lock:
                    if not self._outbox:
                        self._draining = False
                        return
                    event, cause = self._outbox.popleft()
                try:
                    if cause is None:
                        await bus.publish(event)
                    else:
                        with bus.caused_by(cause):
                            await bus.publish(event)
                except Exception:  # raise_errors=True: report, keep the order going
                    _log.exception("publishing %s for user %s failed", event, event.user_id)
        except BaseException:
            with self._outbox_lock:
                self._draining = False
            raise

    def pending(self) -> int:
        """Net-worth events queued for async subscribers and not yet published."""
        with self._outbox_lock:
            return len(self._outbox)

    def __repr__(self) -> str:
        return f"<NetWorthPlugin base={self.aggregator.base_currency}>"
