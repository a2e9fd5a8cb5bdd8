"""The careful dispatch paths, and how handler failures are reported.

`eventbus.EventBus.publish_sync` and `eventbus.EventBus.publish` run the
common case inline (module ``_bus``). Everything else comes here:
instrumentation, nesting under another kind of dispatch, the depth limit,
an event loop run inside a sync handler, and the fleet (deliveries, and the
events derived in them; module ``_fleet``). Correctness first here: these
paths may cost a helper call or a ``ContextVar`` set per step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final, final

from eventbus import signals
from eventbus._fleet import Delivery, Place
from eventbus._plans import AsyncPlan, FleetPlan, FleetStep, Owner, SyncPlan, owner_name
from eventbus._subscription import Subscription
from eventbus.exceptions import AsyncHandlerError

if TYPE_CHECKING:
    from eventbus._bus import EventBus
    from eventbus._context import Node
    from eventbus.events import DomainEvent

__all__ = ["Dispatcher"]

_log = logging.getLogger("eventbus")

# blinker mutates these dicts in place; a truth test is the cheapest possible
# "is anybody listening" check.
PUBLISHED: Final = signals.event_published.receivers
COMPLETED: Final = signals.handler_completed.receivers
FAILED: Final = signals.handler_failed.receivers

_Errors = list[Exception] | None


def _handler_of(owner: Owner) -> object:
    return owner.handler if isinstance(owner, Subscription) else owner.append


@final
class Dispatcher:
    """The careful paths of one bus (module docstring)."""

    __slots__ = ("_bus", "_context")

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._context = bus._context

    # ------------------------------------------------------------------ sync

    def publish_sync(self, event: DomainEvent, plan: SyncPlan) -> None:
        """``publish_sync`` when the fast path cannot: see the module docstring."""
        context = self._context
        stack = context.stack()
        context.settle(stack)
        parent = context.var.get()
        if not stack and parent is not None and isinstance(parent[3], Place):
            self._fleet_sync(event, parent)
            return
        bottom = not stack
        if not bottom:
            if context.depth() >= context.max_depth:
                context.refuse(event)
        elif parent is not None:
            # The stack's bottom runs inside an async dispatch: the fast path
            # may push only as deep as that chain leaves room for.
            if parent[2] >= context.max_depth:
                context.refuse(event)
            stack.room = context.max_depth - parent[2]
        stack.append(event)
        try:
            errors = self.run_sync(event, plan)
        finally:
            del stack[-1]
            if bottom:
                stack.room = context.max_depth
                stack.loop_top = None  # a loop run inside this dispatch is over
        if errors:
            self.raise_group(event, errors)

    def run_sync(self, event: DomainEvent, plan: SyncPlan) -> _Errors:
        """Call every step of ``plan``, instrumented if anybody listens."""
        errors: _Errors = None
        if not (COMPLETED or PUBLISHED):
            for handler in plan:
                try:
                    handler(event)
                except Exception as exc:
                    errors = self.failed(event, plan.owners[handler], exc, errors)
            return errors
        start = time.perf_counter_ns()
        for handler in plan:
            t0 = time.perf_counter_ns()
            try:
                handler(event)
            except Exception as exc:
                errors = self.failed(event, plan.owners[handler], exc, errors)
            else:
                if COMPLETED:
                    self._completed(event, plan.owners[handler], time.perf_counter_ns() - t0)
        self.published(event, len(plan), start)
        return errors

    # ------------------------------------------------------------------ async

    async def publish(self, event: DomainEvent, plan: AsyncPlan) -> None:
        """``await publish`` when the fast path cannot: see the module docstring."""
        context = self._context
        stack = context.stack()
        parent = context.var.get()
        if not stack and parent is not None and isinstance(parent[3], Place):
            await self._fleet_publish(event, parent)
            return
        if not plan:
            self.published(event, 0, None)
            return
        if not stack:
            token = context.var.set(context.node(event, parent))
            try:
                errors = await self.run_async(event, plan)
            finally:
                context.var.reset(token)
        else:
            # A loop runs inside a sync handler of this thread (module _context).
            token = context.var.set(context.node(event, context.absorb_stack(parent, stack)))
            try:
                with context.loop_inside_sync(stack):
                    errors = await self.run_async(event, plan)
            finally:
                context.var.reset(token)
        if errors:
            self.raise_group(event, errors)

    async def run_async(
        self,
        event: DomainEvent,
        plan: AsyncPlan | FleetPlan,
        nodes: tuple[Node, Node] | None = None,
        delivery: Delivery | None = None,
    ) -> _Errors:
        """Run ``plan``: sync steps inline, async ones awaited, concurrent ones as tasks.

        With ``nodes`` (fleet node, local node), each step runs under the node
        of its kind; with ``delivery``, publishes deferred by a step are
        awaited right after it.
        """
        errors: _Errors = None
        tasks: list[tuple[Owner, asyncio.Task[Any]]] = []
        timed = bool(COMPLETED)
        start = time.perf_counter_ns() if PUBLISHED else None
        var = self._context.var
        steps: tuple[FleetStep, ...] = (
            tuple((call, plan.owners[call], mode) for call, mode in plan)
            if isinstance(plan, AsyncPlan)
            else plan
        )
        try:
            for handler, owner, mode in steps:
                token = None
                if nodes is not None:
                    fleet = isinstance(owner, Subscription) and owner.fleet
                    token = var.set(nodes[0] if fleet else nodes[1])
                t0 = time.perf_counter_ns() if timed else 0
                try:
                    if mode == 1:
                        await handler(event)
                    elif mode == 0:
                        handler(event)
                    else:
                        # The task copies the context now, chain included.
                        tasks.append((owner, asyncio.ensure_future(handler(event))))
                except Exception as exc:
                    errors = self.failed(event, owner, exc, errors)
                else:
                    if timed and mode != 2 and COMPLETED:
                        self._completed(event, owner, time.perf_counter_ns() - t0)
                finally:
                    if token is not None:
                        var.reset(token)
                if delivery is not None and delivery.pending:
                    errors = await self._drain(delivery, errors)
            if tasks:
                errors = await self._join(event, tasks, errors)
                if delivery is not None and delivery.pending:
                    # Deferred by a concurrent handler after the last step.
                    errors = await self._drain(delivery, errors)
        finally:
            for _, task in tasks:
                task.cancel()  # no-op for finished tasks; stops orphans if we were cancelled
        if start is not None:
            self.published(event, len(plan), start)
        return errors

    async def _join(
        self,
        event: DomainEvent,
        tasks: list[tuple[Owner, asyncio.Task[Any]]],
        errors: _Errors,
    ) -> _Errors:
        await asyncio.wait([task for _, task in tasks])
        # Report every handler failure before a BaseException (a cancelled or
        # interrupted handler) propagates, or failures after it would be lost.
        escaping: asyncio.Task[Any] | None = None
        for owner, task in tasks:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, Exception):
                errors = self.failed(event, owner, exc, errors)
            elif escaping is None and (exc is not None or task.cancelled()):
                escaping = task
        if escaping is not None:
            escaping.result()  # re-raises its CancelledError or KeyboardInterrupt
        return errors

    # ------------------------------------------------------------------ fleet

    async def deliver(self, event: DomainEvent, position: str, local: bool) -> None:
        """See `eventbus.EventBus.deliver`."""
        # The entry's own event ran its local handlers where it was published.
        plan = self._bus._fleet_plan(type(event), False)
        if not plan and not PUBLISHED:
            return  # nothing to run here: skip the context and the delivery record
        delivery = Delivery(position, local)
        parent = self._context.var.get()
        try:
            errors = await self._fleet_dispatch(
                event, delivery, Place(delivery, position), parent, plan
            )
            # Deferred by a task a handler started, after the last step.
            errors = await self._drain(delivery, errors)
        finally:
            delivery.closed = True
        if errors:
            self.raise_group(event, errors)

    @staticmethod
    def _delivery(parent: Node) -> Delivery:
        place = parent[3]
        assert isinstance(place, Place)  # checked by the caller
        return place.delivery

    def _place(self, delivery: Delivery, plan: FleetPlan) -> Place | None:
        # Only events with fleet handlers are numbered (module _fleet).
        return delivery.next_place() if plan.fleet else None

    async def _fleet_publish(self, event: DomainEvent, parent: Node) -> None:
        # Published by a fleet handler: derived in the fleet, next position.
        delivery = self._delivery(parent)
        plan = self._bus._fleet_plan(type(event), delivery.local)
        place = self._place(delivery, plan)
        errors = await self._fleet_dispatch(event, delivery, place, parent, plan)
        if errors:
            self.raise_group(event, errors)

    async def _fleet_dispatch(
        self,
        event: DomainEvent,
        delivery: Delivery,
        place: Place | None,
        parent: Node | None,
        plan: FleetPlan,
    ) -> _Errors:
        fleet_node = self._context.node(event, parent, place)
        local_node = fleet_node if place is None else (event, parent, fleet_node[2], None)
        return await self.run_async(event, plan, (fleet_node, local_node), delivery)

    def _fleet_sync(self, event: DomainEvent, parent: Node) -> None:
        delivery = self._delivery(parent)
        plan = self._bus._fleet_plan(type(event), delivery.local)
        if plan.waits:
            # Async handlers cannot run from sync code: the delivery awaits this
            # publish as soon as the step that made it returns. Whether to defer
            # is decided on every handler, run here or not, and the position is
            # taken now: both are the same on every worker.
            if delivery.closed:
                names = [
                    owner_name(o) for _, o, mode in self._bus._fleet_plan(type(event), True) if mode
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
        errors: _Errors = None
        start = time.perf_counter_ns() if PUBLISHED else None
        for handler, owner, _ in plan:
            fleet = isinstance(owner, Subscription) and owner.fleet
            token = var.set(fleet_node if fleet else local_node)
            t0 = time.perf_counter_ns()
            try:
                handler(event)
            except Exception as exc:
                errors = self.failed(event, owner, exc, errors)
            else:
                if COMPLETED:
                    self._completed(event, owner, time.perf_counter_ns() - t0)
            finally:
                var.reset(token)
        if start is not None:
            self.published(event, len(plan), start)
        if errors:
            self.raise_group(event, errors)

    async def _drain(self, delivery: Delivery, errors: _Errors) -> _Errors:
        while delivery.pending:
            event, place, parent = delivery.pending.pop(0)
            plan = self._bus._fleet_plan(type(event), delivery.local)
            more = await self._fleet_dispatch(event, delivery, place, parent, plan)
            if more:
                errors = [*(errors or ()), *more]
        return errors

    # ------------------------------------------------------------- reporting

    def failed(self, event: DomainEvent, owner: Owner, exc: Exception, errors: _Errors) -> _Errors:
        """Report ``owner``'s failure on ``event``; collect it with ``raise_errors``."""
        name = owner_name(owner)
        _log.error(
            "handler %s failed on %s",
            name,
            type(event).__qualname__,
            exc_info=exc,
            extra={"event_type": type(event).__qualname__, "event_id": str(event.event_id)},
        )
        if FAILED:
            signals._send(
                signals.handler_failed,
                self._bus,
                event=event,
                handler=_handler_of(owner),
                exception=exc,
            )
        if self._bus.raise_errors:
            exc.add_note(f"in handler {name}, on {type(event).__qualname__} {event.event_id}")
            errors = [] if errors is None else errors
            errors.append(exc)
        return errors

    def _completed(self, event: DomainEvent, owner: Owner, elapsed: int) -> None:
        signals._send(
            signals.handler_completed,
            self._bus,
            event=event,
            handler=_handler_of(owner),
            elapsed_ns=elapsed,
        )

    def published(self, event: DomainEvent, handlers: int, start: int | None) -> None:
        """Send `signals.event_published` if anybody listens."""
        if PUBLISHED:
            elapsed = 0 if start is None else time.perf_counter_ns() - start
            signals._send(
                signals.event_published,
                self._bus,
                event=event,
                handlers=handlers,
                elapsed_ns=elapsed,
            )

    @staticmethod
    def raise_group(event: DomainEvent, errors: list[Exception]) -> None:
        """Raise the ``raise_errors`` group of ``event``'s handler failures."""
        raise ExceptionGroup(
            f"{len(errors)} handler(s) failed on {type(event).__qualname__}", errors
        )
