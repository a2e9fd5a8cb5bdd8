"""The careful dispatch paths, and how handler failures are reported.

`eventbus.EventBus.publish_sync` and `eventbus.EventBus.publish` run the
common case inline (module ``_bus``). Everything else comes here:
instrumentation, nesting under another kind of dispatch, the depth limit,
an event loop run inside a sync handler, and the fleet (deliveries, and the
events derived in them; module ``_fleet``). Correctness first here: these
paths may cost a helper call or a ``ContextVar`` set per step.

They also call the bus's `eventbus.DispatchObserver` objects (module
``_observed``): around each dispatch and each handler call, in the context
the handler runs in. Only these paths need to, because a bus caches no plans
while it has observers, so no publish takes a fast path then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final, final

from eventbus import signals
from eventbus._delivering import FleetDispatcher
from eventbus._fleet import Place
from eventbus._observed import FleetEntry, Observation, Started
from eventbus._plans import AsyncPlan, FleetPlan, FleetStep, Owner, SyncPlan, owner_name
from eventbus._subscription import Subscription

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from eventbus._bus import EventBus
    from eventbus._context import Node
    from eventbus._fleet import Delivery
    from eventbus.events import DomainEvent

__all__ = ["Dispatcher", "Errors"]

_log = logging.getLogger("eventbus")

# blinker mutates these dicts in place; a truth test is the cheapest possible
# "is anybody listening" check.
PUBLISHED: Final = signals.event_published.receivers
COMPLETED: Final = signals.handler_completed.receivers
FAILED: Final = signals.handler_failed.receivers

#: The failures ``raise_errors`` collects; ``None`` until the first.
Errors = list[Exception] | None


def _handler_of(owner: Owner) -> object:
    return owner.handler if isinstance(owner, Subscription) else owner.append


@final
class Dispatcher:
    """The careful paths of one bus (module docstring)."""

    __slots__ = ("_bus", "_context", "deliver", "fleet", "observation")

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._context = bus._context
        self.observation: Final = Observation(bus)
        self.fleet: Final = FleetDispatcher(self)
        #: `eventbus.EventBus.deliver` (module ``_delivering``).
        self.deliver: Final = self.fleet.deliver

    def started(self, event: DomainEvent, entry: FleetEntry | None = None) -> Started | None:
        """Tell the observers (if any) that ``event``'s dispatch starts."""
        observation = self.observation
        return observation.publish_started(event, entry) if observation.observers else None

    def ended(
        self, event: DomainEvent, started: Started | None, error: BaseException | None
    ) -> None:
        if started is not None:
            self.observation.publish_ended(event, started, error)

    # ------------------------------------------------------------------ sync

    def publish_sync(self, event: DomainEvent, plan: SyncPlan) -> None:
        """``publish_sync`` when the fast path cannot: see the module docstring."""
        context = self._context
        stack = context.stack()
        context.settle(stack)
        parent = context.var.get()
        if not stack and parent is not None and isinstance(parent[3], Place):
            self.fleet.publish_sync(event, parent)
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
        started = self.started(event)
        error: BaseException | None = None
        try:
            errors = self.run_sync(event, plan)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.ended(event, started, error)
            del stack[-1]
            if bottom:
                stack.room = context.max_depth
                stack.loop_top = None  # a loop run inside this dispatch is over
        if errors:
            self.raise_group(event, errors)

    def run_sync(self, event: DomainEvent, plan: SyncPlan) -> Errors:
        """Call every step of ``plan``, instrumented if anybody listens."""
        errors: Errors = None
        observation = self.observation
        if not (COMPLETED or PUBLISHED or observation.observers):
            for handler in plan:
                try:
                    handler(event)
                except Exception as exc:
                    errors = self.failed(event, plan.owners[id(handler)], exc, errors)
            return errors
        start = time.perf_counter_ns()
        for handler in plan:
            owner = plan.owners[id(handler)]
            errors = self.step_sync(event, handler, owner, errors)
        self.published(event, len(plan), start)
        return errors

    def step_sync(self, event: DomainEvent, handler: Any, owner: Owner, errors: Errors) -> Errors:
        """One instrumented, observed sync step."""
        observation = self.observation
        observing = bool(observation.observers)
        started = observation.handler_started(event, owner) if observing else None
        error: BaseException | None = None
        t0 = time.perf_counter_ns()
        try:
            if observing and not isinstance(owner, Subscription):
                observation.append(owner, handler, event)
            else:
                handler(event)
        except Exception as exc:
            error = exc
            errors = self.failed(event, owner, exc, errors)
        except BaseException as exc:
            error = exc
            raise
        else:
            if COMPLETED:
                self._completed(event, owner, time.perf_counter_ns() - t0)
        finally:
            if started is not None:
                observation.handler_ended(event, owner, started, error)
        return errors

    # ------------------------------------------------------------------ async

    async def publish(self, event: DomainEvent, plan: AsyncPlan) -> None:
        """``await publish`` when the fast path cannot: see the module docstring."""
        context = self._context
        stack = context.stack()
        parent = context.var.get()
        if not stack and parent is not None and isinstance(parent[3], Place):
            await self.fleet.publish(event, parent)
            return
        if not plan:
            self.published(event, 0, None)
            return
        if not stack:
            token = context.var.set(context.node(event, parent))
        else:
            # A loop runs inside a sync handler of this thread (module _context).
            token = context.var.set(context.node(event, context.absorb_stack(parent, stack)))
        started = self.started(event)
        error: BaseException | None = None
        try:
            if not stack:
                errors = await self.run_async(event, plan)
            else:
                with context.loop_inside_sync(stack):
                    errors = await self.run_async(event, plan)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.ended(event, started, error)
            context.var.reset(token)
        if errors:
            self.raise_group(event, errors)

    async def run_async(
        self,
        event: DomainEvent,
        plan: AsyncPlan | FleetPlan,
        nodes: tuple[Node, Node] | None = None,
        delivery: Delivery | None = None,
    ) -> Errors:
        """Run ``plan``: sync steps inline, async ones awaited, concurrent ones as tasks.

        With ``nodes`` (fleet node, local node), each step runs under the node
        of its kind; with ``delivery``, publishes deferred by a step are
        awaited right after it.
        """
        errors: Errors = None
        tasks: list[tuple[Owner, asyncio.Task[Any]]] = []
        observation = self.observation
        observing = bool(observation.observers)
        timed = bool(COMPLETED)
        start = time.perf_counter_ns() if PUBLISHED else None
        var = self._context.var
        steps: tuple[FleetStep, ...] = (
            tuple((call, plan.owners[id(call)], mode) for call, mode in plan)
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
                started = None
                if observing and mode != 2:
                    started = observation.handler_started(event, owner)
                error: BaseException | None = None
                try:
                    if mode == 1:
                        await handler(event)
                    elif mode == 0:
                        if observing and not isinstance(owner, Subscription):
                            observation.append(owner, handler, event)
                        else:
                            handler(event)
                    else:
                        # The task copies the context now, chain included.
                        coro = handler(event)
                        if observing:
                            coro = self._observed_task(event, owner, coro)
                        tasks.append((owner, asyncio.ensure_future(coro)))
                except Exception as exc:
                    error = exc
                    errors = self.failed(event, owner, exc, errors)
                except BaseException as exc:
                    error = exc
                    raise
                else:
                    if timed and mode != 2 and COMPLETED:
                        self._completed(event, owner, time.perf_counter_ns() - t0)
                finally:
                    if started is not None:
                        observation.handler_ended(event, owner, started, error)
                    if token is not None:
                        var.reset(token)
                if delivery is not None and delivery.pending:
                    errors = await self.fleet.drain(delivery, errors)
            if tasks:
                errors = await self._join(event, tasks, errors)
                if delivery is not None and delivery.pending:
                    # Deferred by a concurrent handler after the last step.
                    errors = await self.fleet.drain(delivery, errors)
        finally:
            for _, task in tasks:
                task.cancel()  # no-op for finished tasks; stops orphans if we were cancelled
        if start is not None:
            self.published(event, len(plan), start)
        return errors

    async def _observed_task(
        self, event: DomainEvent, owner: Owner, coro: Coroutine[Any, Any, Any]
    ) -> None:
        """A concurrent handler's task: its observers are called inside it."""
        started = self.observation.handler_started(event, owner)
        error: BaseException | None = None
        try:
            await coro
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.observation.handler_ended(event, owner, started, error)

    async def _join(
        self,
        event: DomainEvent,
        tasks: list[tuple[Owner, asyncio.Task[Any]]],
        errors: Errors,
    ) -> Errors:
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

    # ------------------------------------------------------------- reporting

    def failed(self, event: DomainEvent, owner: Owner, exc: Exception, errors: Errors) -> Errors:
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
        """Send `signals.event_published` if anybody listens.

        ``start`` is ``None`` for an event published with no handlers: the
        observers see its (empty) dispatch here.
        """
        if start is None and handlers == 0 and self.observation.observers:
            self.ended(event, self.started(event), None)
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
