"""`EventBus`: subscribe, publish, and the compiled per-type dispatch plans.

Subscriptions live in one immutable tuple. Any change builds a new tuple and
new, empty plan caches under a lock (copy-on-write); publishers never lock.
The first publish of a concrete type compiles its *plan*: the matching
handlers (by ``issubclass``, so MRO and ABC-registered virtual subclasses both
match), ordered by priority then subscription order, as a tuple of callables.
A publish is then one dict lookup plus the handler loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar, final

from eventbus import signals
from eventbus._context import ContextMethods
from eventbus._plugins import PluginHost, PluginMethods, acting_plugin
from eventbus._subscription import Handler, Subscription, handler_name
from eventbus.events import DomainEvent
from eventbus.exceptions import AsyncHandlerError, BusNotRunningError

__all__ = ["EventBus"]

E = TypeVar("E", bound=DomainEvent)
R = TypeVar("R", bound="Awaitable[None] | None")

_log = logging.getLogger("eventbus")

# blinker mutates these dicts in place; a truth test is the cheapest possible
# "is anybody listening" check.
_PUBLISHED: Final = signals.event_published.receivers
_COMPLETED: Final = signals.handler_completed.receivers
_FAILED: Final = signals.handler_failed.receivers

_SyncPlan = tuple[Callable[[Any], Any], ...]
# (callable, mode): 0 = sync, 1 = awaited in order, 2 = concurrent task
_AsyncPlan = tuple[tuple[Callable[[Any], Any], int], ...]
# (subscriptions, sync plans, async fast-path plans, async plans with concurrent handlers)
_State = tuple[
    tuple[Subscription[Any], ...],
    dict[type, _SyncPlan],
    dict[type, _AsyncPlan],
    dict[type, _AsyncPlan],
]


@final
class EventBus(ContextMethods, PluginMethods):
    """A typed, in-process publish/subscribe bus.

    Args:
        raise_errors: Run every handler, then raise an `ExceptionGroup` of the
            handler failures. Default: failures are logged and reported on the
            `signals.handler_failed` signal, and publishing never raises.
        max_depth: How deep handlers may re-publish before `EventCycleError`.
    """

    __slots__ = (
        "__weakref__",
        "_async_plans",
        "_lock",
        "_loop",
        "_plugins",
        "_state",
        "_sync_plans",
        "raise_errors",
    )

    def __init__(self, *, raise_errors: bool = False, max_depth: int = 64) -> None:
        self.raise_errors: Final = raise_errors
        self._lock = threading.Lock()
        self._state: _State = ((), {}, {}, {})
        self._sync_plans: dict[type, _SyncPlan] = self._state[1]
        self._async_plans: dict[type, _AsyncPlan] = self._state[2]
        ContextMethods.__init__(self, max_depth)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._plugins = PluginHost(self)

    # ------------------------------------------------------------------ subscribing

    def subscribe(
        self,
        event_type: type[E],
        handler: Handler[E],
        *,
        priority: int = 0,
        once: bool = False,
        weak: bool = False,
        concurrent: bool = False,
    ) -> Subscription[E]:
        """Subscribe ``handler`` to ``event_type`` and all its subclasses.

        Args:
            event_type: A `DomainEvent` subclass (or an ABC events are registered with).
            handler: Called with each event; may be ``async def``.
            priority: Higher runs first; equal priorities run in subscription order.
            once: Cancel the subscription after the first delivery.
            weak: Hold the handler (e.g. a bound method) by weak reference, and
                cancel the subscription when it is garbage-collected.
            concurrent: For async handlers under `publish`: start this handler as a
                task and carry on with the next handlers; `publish` still waits
                for it before returning.

        Returns:
            The `Subscription`; call ``.cancel()`` or use it as a context manager.
        """
        if not isinstance(event_type, type):
            raise TypeError(f"event_type must be a class, got {event_type!r}")
        plugin = acting_plugin(self)
        sub = Subscription(
            self,
            event_type,
            handler,
            priority=priority,
            once=once,
            weak=weak,
            concurrent=concurrent,
            plugin=plugin,
        )
        with self._lock:
            self._replace((*self._state[0], sub))
        if plugin is not None:
            self._plugins.record(plugin, sub)
        return sub

    def on(
        self,
        event_type: type[E],
        *,
        priority: int = 0,
        once: bool = False,
        weak: bool = False,
        concurrent: bool = False,
    ) -> Callable[[Callable[[E], R]], Callable[[E], R]]:
        """Decorator form of `subscribe`; returns the function unchanged."""

        def decorate(handler: Callable[[E], R]) -> Callable[[E], R]:
            self.subscribe(
                event_type, handler, priority=priority, once=once, weak=weak, concurrent=concurrent
            )
            return handler

        return decorate

    def subscriptions(self) -> tuple[Subscription[Any], ...]:
        """All active subscriptions, in subscription order."""
        # A weak subscription whose object died while another thread held the
        # lock is only marked inactive until the next change (see _unsubscribe).
        return tuple(s for s in self._state[0] if s._active)

    def _unsubscribe(self, sub: Subscription[Any], *, blocking: bool = True) -> bool:
        if not self._lock.acquire(blocking):
            # Only from a weakref callback, whose GC may have interrupted this very
            # thread inside the lock. Mark it; the next change purges it.
            was_active, sub._active = sub._active, False
            return was_active
        try:
            if not sub._active:
                return False
            sub._active = False
            self._replace(tuple(s for s in self._state[0] if s is not sub))
        finally:
            self._lock.release()
        return True

    def _replace(self, subs: tuple[Subscription[Any], ...]) -> None:
        # Caller holds self._lock. Fresh caches: in-flight publishes keep the old
        # plan they already hold (snapshot semantics), new ones recompile.
        subs = tuple(s for s in subs if s._active)  # purge deferred cancellations
        state: _State = (subs, {}, {}, {})
        self._state = state
        self._sync_plans = state[1]
        self._async_plans = state[2]

    def _matching(self, subs: Iterable[Subscription[Any]], cls: type) -> list[Subscription[Any]]:
        matched = [s for s in subs if issubclass(cls, s.event_type)]
        matched.sort(key=lambda s: (-s.priority, s._seq))
        return matched

    def _compile_sync(self, cls: type) -> _SyncPlan:
        subs, sync_plans, _, _ = state = self._state
        matched = self._matching(subs, cls)
        asyncs = [handler_name(s.handler) for s in matched if s.is_async]
        if asyncs:
            # Not cached: every publish_sync of this type must raise again.
            raise AsyncHandlerError(
                f"publish_sync({cls.__qualname__}) would skip async handler(s) "
                f"{', '.join(asyncs)}; use 'await bus.publish(event)' instead"
            )
        plan = tuple(s._call for s in matched)
        if state is self._state:
            sync_plans[cls] = plan
        return plan

    def _compile_async(self, cls: type) -> _AsyncPlan:
        subs, _, async_plans, slow_plans = state = self._state
        plan = slow_plans.get(cls)
        if plan is None:
            plan = tuple(
                (s._call, 2 if s.concurrent else int(s.is_async)) for s in self._matching(subs, cls)
            )
            if state is self._state:
                # Plans with concurrent handlers never take the fast path, so
                # they are kept out of the dict it looks in.
                (slow_plans if any(mode == 2 for _, mode in plan) else async_plans)[cls] = plan
        return plan

    # ------------------------------------------------------------------ publishing

    def publish_sync(self, event: DomainEvent) -> None:
        """Deliver ``event`` to its sync handlers, in order, in this thread.

        Raises:
            AsyncHandlerError: An async handler is subscribed for this type
                (raised before any handler runs).
            EventCycleError: Handlers re-published deeper than ``max_depth``.
            ExceptionGroup: Only with ``raise_errors=True``: the handler failures.
        """
        try:
            plan = self._sync_plans[type(event)]
        except KeyError:
            plan = self._compile_sync(type(event))
        if not plan:
            if _PUBLISHED:
                signals._send(signals.event_published, self, event=event, handlers=0, elapsed_ns=0)
            return
        if _COMPLETED or _PUBLISHED:
            self._dispatch_instrumented(event, plan)
            return
        # The two hot paths below share their loop body on purpose: a helper
        # call per publish would cost more than a handler call (module _context).
        errors = None
        if self._gate:
            # Tracked: this thread's stack, guarded against cycles.
            stack = self._tls.stack
            if not stack:
                stack.room = self._sync_room()
            if len(stack) >= stack.room:
                self._refuse(event)
            stack.append(event)
            try:
                for handler in plan:
                    try:
                        handler(event)
                    except Exception as exc:
                        errors = self._failed(event, handler, exc, errors)
            finally:
                stack.pop()
        else:
            counter = self._untracked_var.get()
            if counter is None or counter.n:
                self._first_or_nested(event)
                return
            # The fast path: count it (so nesting is noticed), run the loop.
            counter.n += 1
            try:
                for handler in plan:
                    try:
                        handler(event)
                    except Exception as exc:
                        errors = self._failed(event, handler, exc, errors)
            finally:
                counter.n -= 1
        if errors:
            self._raise_group(event, errors)

    def _first_or_nested(self, event: DomainEvent) -> None:
        # First publish in this context: create its counter. A publish while
        # another is in flight here: a handler is publishing, so track from now on.
        if self._untracked().n:
            self._gate = 1
        self.publish_sync(event)

    def _dispatch_instrumented(self, event: DomainEvent, plan: _SyncPlan) -> None:
        counter = self._untracked()
        if counter.n:
            self._gate = 1
        tracked = bool(self._gate)
        if tracked:
            stack = self._tls.stack
            if not stack:
                stack.room = self._sync_room()
            if len(stack) >= stack.room:
                self._refuse(event)
            stack.append(event)
        else:
            counter.n += 1
        errors = None
        timed = bool(_COMPLETED)
        start = time.perf_counter_ns()
        try:
            for handler in plan:
                t0 = time.perf_counter_ns()
                try:
                    handler(event)
                except Exception as exc:
                    errors = self._failed(event, handler, exc, errors)
                else:
                    if timed:
                        self._completed(event, handler, time.perf_counter_ns() - t0)
        finally:
            if tracked:
                stack.pop()
            else:
                counter.n -= 1
        if _PUBLISHED:
            elapsed = time.perf_counter_ns() - start
            signals._send(
                signals.event_published, self, event=event, handlers=len(plan), elapsed_ns=elapsed
            )
        if errors:
            self._raise_group(event, errors)

    async def publish(self, event: DomainEvent) -> None:
        """Deliver ``event`` to all its handlers, sync and async, in order.

        Sync handlers run inline; async ones are awaited one after another,
        except those subscribed with ``concurrent=True``, which run as tasks
        that this call waits for before returning.

        Raises:
            EventCycleError: Handlers re-published deeper than ``max_depth``.
            ExceptionGroup: Only with ``raise_errors=True``: the handler failures.
        """
        plan = self._async_plans.get(type(event))
        if plan is None or self._gate or _COMPLETED or _PUBLISHED:
            await self._publish_slow(event, plan)
            return
        counter = self._untracked_var.get()
        if counter is None or counter.n:
            await self._publish_slow(event, plan)
            return
        # The fast path (see publish_sync): no concurrent handlers, no nesting.
        counter.n += 1
        errors = None
        try:
            for handler, is_async in plan:
                try:
                    if is_async:
                        await handler(event)
                    else:
                        handler(event)
                except Exception as exc:
                    errors = self._failed(event, handler, exc, errors)
        finally:
            counter.n -= 1
        if errors:
            self._raise_group(event, errors)

    async def _publish_slow(self, event: DomainEvent, plan: _AsyncPlan | None) -> None:
        if plan is None:
            plan = self._compile_async(type(event))
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if not plan:
            if _PUBLISHED:
                signals._send(signals.event_published, self, event=event, handlers=0, elapsed_ns=0)
            return
        counter = self._untracked()
        if counter.n:
            self._gate = 1
        token = None
        counted = False
        if self._gate:
            chain = self._chain_var.get()
            if len(chain) + len(self._tls.stack) + counter.n >= self.max_depth:
                self._refuse(event)
            token = self._chain_var.set((*chain, event))
        else:
            counter.n += 1
            counted = True
        errors: list[Exception] | None = None
        tasks: list[tuple[Callable[[Any], Any], asyncio.Task[Any]]] = []
        timed = bool(_COMPLETED)
        start = time.perf_counter_ns() if _PUBLISHED else 0
        try:
            for handler, mode in plan:
                t0 = time.perf_counter_ns() if timed else 0
                try:
                    if mode == 1:
                        await handler(event)
                    elif mode == 0:
                        handler(event)
                    else:
                        if token is None:
                            # A task copies the context when created, so the chain
                            # must be set first for current_event() inside it.
                            self._gate = 1
                            token = self._chain_var.set((*self._chain_var.get(), event))
                            counter.n -= 1  # now tracked, not untracked
                            counted = False
                        tasks.append((handler, asyncio.ensure_future(handler(event))))
                        continue
                except Exception as exc:
                    errors = self._failed(event, handler, exc, errors)
                else:
                    if timed and _COMPLETED:
                        self._completed(event, handler, time.perf_counter_ns() - t0)
            if tasks:
                errors = await self._join(event, tasks, errors)
        finally:
            for _, task in tasks:
                task.cancel()  # no-op for finished tasks; stops orphans if we were cancelled
            if counted:
                counter.n -= 1
            if token is not None:
                self._chain_var.reset(token)
        if _PUBLISHED:
            signals._send(
                signals.event_published,
                self,
                event=event,
                handlers=len(plan),
                elapsed_ns=time.perf_counter_ns() - start,
            )
        if errors:
            self._raise_group(event, errors)

    async def _join(
        self,
        event: DomainEvent,
        tasks: list[tuple[Callable[[Any], Any], asyncio.Task[Any]]],
        errors: list[Exception] | None,
    ) -> list[Exception] | None:
        await asyncio.wait([task for _, task in tasks])
        # Report every handler failure before a BaseException (a cancelled or
        # interrupted handler) propagates, or failures after it would be lost.
        escaping: asyncio.Task[Any] | None = None
        for handler, task in tasks:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, Exception):
                errors = self._failed(event, handler, exc, errors)
            elif escaping is None and (exc is not None or task.cancelled()):
                escaping = task
        if escaping is not None:
            escaping.result()  # re-raises its CancelledError or KeyboardInterrupt
        return errors

    def publish_threadsafe(self, event: DomainEvent) -> concurrent.futures.Future[None]:
        """Hand ``event`` from any thread to the loop the bus runs on.

        The loop is the one `start` (or the first `publish`) ran on. The event
        runs in a copy of the caller's context (so ``contextvars`` such as a
        request id travel with it) but as a top-level event there: the caller's
        own dispatch, on another thread, is not its parent.

        Returns:
            A future that resolves when every handler has run.

        Raises:
            BusNotRunningError: The bus has no open event loop.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            raise BusNotRunningError(
                "publish_threadsafe() needs the bus's event loop: call 'await bus.start()' "
                "(or 'async with bus') on the loop first"
            )
        # run_coroutine_threadsafe copies the current context into the task.
        # Hand it a copy with this bus's dispatch state cleared: otherwise the
        # loop's task and this thread share one untracked counter, and this
        # thread's next top-level publish looks nested in the loop's dispatch.
        context = contextvars.copy_context()
        context.run(self._chain_var.set, ())
        context.run(self._untracked_var.set, None)
        return context.run(asyncio.run_coroutine_threadsafe, self.publish(event), loop)

    # --------------------------------------------------------------- errors

    def _failed(
        self,
        event: DomainEvent,
        call: Callable[[Any], Any],
        exc: Exception,
        errors: list[Exception] | None,
    ) -> list[Exception] | None:
        handler = self._handler_for(call)
        _log.error(
            "handler %s failed on %s",
            handler_name(handler),
            type(event).__qualname__,
            exc_info=exc,
            extra={"event_type": type(event).__qualname__, "event_id": str(event.event_id)},
        )
        if _FAILED:
            signals._send(signals.handler_failed, self, event=event, handler=handler, exception=exc)
        if self.raise_errors:
            errors = [] if errors is None else errors
            errors.append(exc)
        return errors

    def _completed(self, event: DomainEvent, call: Callable[[Any], Any], elapsed: int) -> None:
        signals._send(
            signals.handler_completed,
            self,
            event=event,
            handler=self._handler_for(call),
            elapsed_ns=elapsed,
        )

    def _handler_for(self, call: Callable[[Any], Any]) -> object:
        for sub in self._state[0]:
            if sub._call is call:
                return sub.handler
        # A once-subscription that already cancelled itself: its wrapper knows it.
        owner = getattr(call, "subscription", None)
        return owner.handler if isinstance(owner, Subscription) else call

    @staticmethod
    def _raise_group(event: DomainEvent, errors: list[Exception]) -> None:
        raise ExceptionGroup(
            f"{len(errors)} handler(s) failed on {type(event).__qualname__}", errors
        )

    async def start(self) -> None:
        """Bind the bus to the running loop and run every plugin's ``eventbus_startup``."""
        self._loop = asyncio.get_running_loop()
        await self._plugins.startup()

    def __repr__(self) -> str:
        return f"<EventBus subscriptions={len(self._state[0])} plugins={len(self.plugins())}>"


EventBus._dispatch_codes = frozenset(
    {
        EventBus.publish_sync.__code__,
        EventBus._first_or_nested.__code__,
        EventBus._dispatch_instrumented.__code__,
        EventBus.publish.__code__,
        EventBus._publish_slow.__code__,
    }
)
