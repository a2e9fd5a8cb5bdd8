"""`NetWorthPlugin`: wires a `NetWorthAggregator` to a bus and publishes its events.

The balance handler is a *fleet* handler. With a sequencer attached (the Redis
bridge), every worker applies every balance update from the stream, in stream
order, so every worker holds the same state and derives the same
`PortfolioNetWorthRecalculated` events: same position, same ``event_id`` (see
`eventbus.events.derived_id`), same bytes. The aggregator's state is
registered as a `eventbus.Projection`, so a worker that joins late restores it
instead of starting from zero. Without a sequencer the handler runs at publish
time, like any other.

Ordering: the derived event is published while the user's lock is still held,
so one user's events reach subscribers in exactly the order the state changed,
even when several threads publish balance updates for that user at once.
(Publishing after releasing the lock would let a later change overtake an
earlier one on its way to subscribers.)

Async subscribers: the handler is sync and publishes with ``publish_sync``.
Inside a delivery the bus awaits the handlers of such a publish itself. In
local context ``publish_sync`` refuses (`AsyncHandlerError`), and the event
goes to an `Outbox` drained on the bus's loop (module ``_outbox``).
"""

from __future__ import annotations

import asyncio
from typing import Final, final

from eventbus import AsyncHandlerError, EventBus, hookimpl
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus_networth._aggregator import NetWorthAggregator
from eventbus_networth._outbox import Outbox
from eventbus_networth._projection import NetWorthProjection
from eventbus_networth._rates import RatesProvider, env_config

__all__ = ["NetWorthPlugin"]


@final
class NetWorthPlugin:
    """The ``networth`` plugin: keeps net worth per user and publishes its changes.

    Subscribes to `AccountBalanceUpdated` only: `AccountHoldingsUpdated` carries
    no monetary value, so it never changes net worth. Query the state through
    `aggregator`:

        plugin = bus.get_plugin(NetWorthPlugin)
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
        projection: The state as the bus's ``"networth"`` projection.
    """

    __slots__ = ("_bus", "_outbox", "aggregator", "projection")

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
        self.projection: Final = NetWorthProjection(self.aggregator)
        self._bus: EventBus | None = None
        self._outbox: Outbox | None = None

    # ------------------------------------------------------------------ hooks

    @hookimpl
    def eventbus_register(self, bus: EventBus) -> None:
        """Subscribe to balance updates in the fleet; register the projection.

        One plugin instance serves one bus.
        """
        if self._bus is not None and self._bus is not bus:
            raise RuntimeError("this NetWorthPlugin is already registered with another bus")
        bus.subscribe(AccountBalanceUpdated, self.on_balance, fleet=True)
        # Last: a refused projection (a duplicate name) leaves no subscription,
        # as registration is atomic.
        bus.register_projection(self.projection)
        self._bus = bus
        self._outbox = Outbox(bus)

    @hookimpl
    async def eventbus_startup(self, bus: EventBus) -> None:
        """Remember the bus's loop, to hand events to async subscribers from other threads."""
        if self._outbox is not None:
            self._outbox.bind_loop(asyncio.get_running_loop())

    @hookimpl
    async def eventbus_shutdown(self, bus: EventBus) -> None:
        """Deliver the events still waiting for async subscribers."""
        if self._outbox is not None:
            await self._outbox.join()

    # ------------------------------------------------------------------ handling

    def on_balance(self, event: AccountBalanceUpdated) -> None:
        """Apply a balance update; publish `PortfolioNetWorthRecalculated` if net worth changed."""
        self.aggregator.apply(event, self._emit)

    def _emit(self, event: PortfolioNetWorthRecalculated) -> None:
        # Runs under the user's lock (see the module docstring).
        bus, outbox = self._bus, self._outbox
        if bus is None or outbox is None:
            return
        if bus.current_position() is not None:
            # Fleet context: the bus awaits async subscribers within the
            # delivery. Never the outbox, whose publish would be local context
            # again: an entry of its own, which every worker derives already.
            bus.publish_sync(event)
            return
        if not outbox.busy:
            try:
                bus.publish_sync(event)
                return
            except AsyncHandlerError:
                pass  # an async subscriber: deliver on the loop, in order
        outbox.put(event, bus.current_event())

    def pending(self) -> int:
        """Net-worth events queued for async subscribers and not yet published."""
        return 0 if self._outbox is None else len(self._outbox)

    def __repr__(self) -> str:
        return f"<NetWorthPlugin base={self.aggregator.base_currency}>"
