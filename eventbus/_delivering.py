"""The fleet's careful paths: deliveries, and the events derived in them.

`eventbus.EventBus.deliver` runs an entry of the fleet's order here, and the
careful paths of module ``_dispatch`` hand over every publish made under a
delivery (derived in the fleet: module ``_fleet``). The steps themselves run
on `eventbus._dispatch.Dispatcher`'s machinery, with the context node of each
step's kind; the observers see a delivery as a dispatch with a `FleetEntry`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, final

from eventbus import signals
from eventbus._fleet import Delivery, Place
from eventbus._plans import FleetPlan, owner_name
from eventbus._subscription import Subscription
from eventbus.exceptions import AsyncHandlerError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventbus._context import Node
    from eventbus._dispatch import Dispatcher, Errors
    from eventbus.events import DomainEvent

__all__ = ["FleetDispatcher"]

PUBLISHED: Final = signals.event_published.receivers  # see module _dispatch


@final
class FleetDispatcher:
    """The fleet paths of one bus's `Dispatcher` (module docstring)."""

    __slots__ = ("_bus", "_context", "_main")

    def __init__(self, main: Dispatcher) -> None:
        self._main: Final = main
        self._bus: Final = main._bus
        self._context: Final = main._context

    async def deliver(
        self,
        event: DomainEvent,
        position: str,
        local: bool,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """See `eventbus.EventBus.deliver`."""
        # The entry's own event ran its local handlers where it was published.
        plan = self._bus._registry.fleet_plan(type(event), False)
        if not plan and not PUBLISHED and not self._main.observation.observers:
            return  # nothing runs or watches here: skip the context and the record
        delivery = Delivery(position, local)
        parent = self._context.var.get()
        started = None
        if self._main.observation.observers:
            started = self._main.started(
                event, self._main.observation.entry(position, local, headers)
            )
        error: BaseException | None = None
        try:
            errors = await self._dispatch(event, delivery, Place(delivery, position), parent, plan)
            # Deferred by a task a handler started, after the last step.
            errors = await self.drain(delivery, errors)
        except BaseException as exc:
            error = exc
            raise
        finally:
            delivery.closed = True
            self._main.ended(event, started, error)
        if errors:
            self._main.raise_group(event, errors)

    @staticmethod
    def _delivery(parent: Node) -> Delivery:
        place = parent[3]
        assert isinstance(place, Place)  # checked by the caller
        return place.delivery

    def _place(self, delivery: Delivery, plan: FleetPlan) -> Place | None:
        # Only events with fleet handlers are numbered (module _fleet).
        return delivery.next_place() if plan.fleet else None

    async def publish(self, event: DomainEvent, parent: Node) -> None:
        # Published by a fleet handler: derived in the fleet, next position.
        delivery = self._delivery(parent)
        plan = self._bus._registry.fleet_plan(type(event), delivery.local)
        place = self._place(delivery, plan)
        started = self._main.started(event)
        error: BaseException | None = None
        try:
            errors = await self._dispatch(event, delivery, place, parent, plan)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._main.ended(event, started, error)
        if errors:
            self._main.raise_group(event, errors)

    async def _dispatch(
        self,
        event: DomainEvent,
        delivery: Delivery,
        place: Place | None,
        parent: Node | None,
        plan: FleetPlan,
    ) -> Errors:
        fleet_node = self._context.node(event, parent, place)
        local_node = fleet_node if place is None else (event, parent, fleet_node[2], None)
        return await self._main.run_async(event, plan, (fleet_node, local_node), delivery)

    def publish_sync(self, event: DomainEvent, parent: Node) -> None:
        delivery = self._delivery(parent)
        plan = self._bus._registry.fleet_plan(type(event), delivery.local)
        if plan.waits:
            # Async handlers cannot run from sync code: the delivery awaits this
            # publish as soon as the step that made it returns. Whether to defer
            # is decided on every handler, run here or not, and the position is
            # taken now: both are the same on every worker.
            if delivery.closed:
                names = [
                    owner_name(o)
                    for _, o, mode in self._bus._registry.fleet_plan(type(event), True)
                    if mode
                ]
                raise AsyncHandlerError(
                    f"publish_sync({type(event).__qualname__}) after its delivery ended "
                    f"(in a task a fleet handler started) would skip async handler(s) "
                    f"{', '.join(names)}; use 'await bus.publish(event)' instead"
                )
            place = self._place(delivery, plan)
            self._context.node(event, parent)  # the depth limit still applies
            delivery.pending.append((event, place, parent))
            return
        place = self._place(delivery, plan)
        var = self._context.var
        fleet_node = self._context.node(event, parent, place)
        local_node = fleet_node if place is None else (event, parent, fleet_node[2], None)
        errors: Errors = None
        start = time.perf_counter_ns() if PUBLISHED else None
        started = self._main.started(event)
        error: BaseException | None = None
        try:
            for handler, owner, _ in plan:
                fleet = isinstance(owner, Subscription) and owner.fleet
                token = var.set(fleet_node if fleet else local_node)
                try:
                    errors = self._main.step_sync(event, handler, owner, errors)
                finally:
                    var.reset(token)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._main.ended(event, started, error)
        if start is not None:
            self._main.published(event, len(plan), start)
        if errors:
            self._main.raise_group(event, errors)

    async def drain(self, delivery: Delivery, errors: Errors) -> Errors:
        while delivery.pending:
            event, place, parent = delivery.pending.pop(0)
            plan = self._bus._registry.fleet_plan(type(event), delivery.local)
            started = self._main.started(event)
            error: BaseException | None = None
            try:
                more = await self._dispatch(event, delivery, place, parent, plan)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._main.ended(event, started, error)
            if more:
                errors = [*(errors or ()), *more]
        return errors
