"""`EventBus`: subscribe, publish, and the compiled per-type dispatch plans.

Subscriptions live in one immutable tuple. Any change builds a new tuple and
new, empty plan caches under a lock (copy-on-write); publishers never lock.
The first publish of a concrete type compiles its plan (module ``_plans``).
A publish is then one dict lookup, a context push, and the handler loop.

The two publish methods below run the common case inline: a top-level
dispatch, or one nested in the same kind of dispatch, with nobody listening
to the instrumentation signals. Every other case goes to the careful paths
of module ``_dispatch``. The dispatch context is exact on both (module
``_context``): there is one path per case, never a mode that switches later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Concatenate, Final, ParamSpec, TypeVar, final

from eventbus import _plans, _waiting
from eventbus._context import DispatchContext
from eventbus._dispatch import Dispatcher
from eventbus._fleet import Place, Projection, Projections, Sequencer
from eventbus._observed import DispatchObserver, watch
from eventbus._plugins import PluginHost, PluginMethods, acting_plugin
from eventbus._registry import Caches, Registry
from eventbus._subscription import Handler, Subscription, check_timeout
from eventbus.events import DomainEvent
from eventbus.exceptions import BusNotRunningError

__all__ = ["EventBus"]

E = TypeVar("E", bound=DomainEvent)
P = ParamSpec("P")
R = TypeVar("R")


#: What the careful sync path is handed for a publish it routes by context alone.
_NO_PLAN: Final = _plans.SyncPlan()
_NO_PLAN.owners = {}


@final
class EventBus(PluginMethods):
    """A typed, in-process publish/subscribe bus.

    Args:
        raise_errors: Run every handler, then raise an `ExceptionGroup` of the
            handler failures (each with a note naming its handler and the
            event). Default: failures are logged and reported on the
            `signals.handler_failed` signal, and publishing never raises.
        max_depth: How many events one dispatch chain may hold before
            `EventCycleError`.
        default_timeout: Seconds an async handler may run before it is
            cancelled and fails with `TimeoutError`, for subscriptions that set
            no ``timeout=`` themselves. ``None`` (the default): no limit.
    """

    __slots__ = (
        "__weakref__",
        "_async_plans",
        "_context",
        "_default_timeout",
        "_dispatch",
        "_loop",
        "_plugins",
        "_projections",
        "_registry",
        "_sync_plans",
        "_tls",
        "_var",
        "raise_errors",
    )

    def __init__(
        self,
        *,
        raise_errors: bool = False,
        max_depth: int = 64,
        default_timeout: float | None = None,
    ) -> None:
        self.raise_errors: Final = raise_errors
        self._default_timeout: Final = check_timeout(default_timeout, "default_timeout")
        self._context: Final = DispatchContext(max_depth)
        # The hot paths read these two directly: one attribute load each.
        self._tls: Final = self._context.tls
        self._var: Final = self._context.var
        self._sync_plans: dict[type, _plans.SyncPlan] = {}
        self._async_plans: dict[type, _plans.AsyncPlan] = {}
        self._registry: Final = Registry(self._install)
        self._dispatch: Final = Dispatcher(self)
        self._projections: Final = Projections()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._plugins = PluginHost(self)
        watch(self)

    @property
    def default_timeout(self) -> float | None:
        """Seconds an async handler may run when its subscription sets no ``timeout=``."""
        return self._default_timeout

    @property
    def max_depth(self) -> int:
        """How many events one dispatch chain may hold."""
        return self._context.max_depth

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
        fleet: bool = False,
        timeout: float | None = None,
    ) -> Subscription[E]:
        """Subscribe ``handler`` to ``event_type`` and all its subclasses.

        Args:
            event_type: A `DomainEvent` subclass (or an ABC events are registered with).
            handler: Called with each event; may be ``async def``.
            priority: Higher runs first; equal priorities run in subscription
                order. `Priority` names the bands plugins use.
            once: Cancel the subscription after the first delivery.
            weak: Hold the handler (e.g. a bound method) by weak reference, and
                cancel the subscription when it is garbage-collected.
            concurrent: For async handlers under `publish`: start this handler as a
                task and carry on with the next handlers; `publish` still waits
                for it before returning.
            fleet: Run on every worker of the fleet, in the fleet's order
                (`deliver`), instead of only where the event was published.
                Without a sequencer both kinds run at publish time.
            timeout: For async handlers: seconds the handler may run; past that
                it is cancelled and fails with a `TimeoutError` (logged, sent on
                ``handler_failed``, in the ``raise_errors`` group) and the next
                handlers run. ``None``: the bus's ``default_timeout``;
                ``math.inf``: no limit even if the bus has a default.

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
            fleet=fleet,
            plugin=plugin,
            timeout=timeout,
            default_timeout=self._default_timeout,
        )
        self._registry.add(sub)
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
        fleet: bool = False,
        timeout: float | None = None,
    ) -> Callable[[Callable[Concatenate[E, P], R]], Callable[Concatenate[E, P], R]]:
        """Decorator form of `subscribe`; returns the function unchanged.

        Typed to keep what type checkers know of the function: its return type
        (any value is accepted and ignored) and any further keyword parameters.
        Its first parameter must accept ``event_type``'s events, or the
        decoration is rejected; the price is that type checkers forget that
        parameter's *name* (standard typing has no signature that keeps it and
        still checks its type).
        """

        def decorate(handler: Callable[Concatenate[E, P], R]) -> Callable[Concatenate[E, P], R]:
            self.subscribe(
                event_type,
                handler,
                priority=priority,
                once=once,
                weak=weak,
                concurrent=concurrent,
                fleet=fleet,
                timeout=timeout,
            )
            return handler

        return decorate

    def subscriptions(self) -> tuple[Subscription[Any], ...]:
        """All active subscriptions, in subscription order."""
        return self._registry.active()

    def _unsubscribe(self, sub: Subscription[Any], *, blocking: bool = True) -> bool:
        return self._registry.remove(sub, blocking=blocking)

    def _install(self, caches: Caches) -> None:
        # A new generation of plans (module _registry): the hot paths read these.
        self._sync_plans = caches.sync
        self._async_plans = caches.fast

    # ------------------------------------------------------------------ publishing

    def publish_sync(self, event: DomainEvent) -> None:
        """Deliver ``event`` to its sync handlers, in order, in this thread.

        Raises:
            AsyncHandlerError: An async handler is subscribed for this type
                (raised before any handler runs).
            EventCycleError: The dispatch chain would exceed ``max_depth``.
            ExceptionGroup: Only with ``raise_errors=True``: the handler failures.
        """
        try:
            plan = self._sync_plans[type(event)]
        except KeyError:
            # The type's first publish, or somebody observes (module _observed).
            node = self._var.get()
            if node is not None and isinstance(node[3], Place):
                # Derived in the fleet: its fleet plan applies, never the local
                # one (which may hold async handlers: publish_sync defers those).
                self._dispatch.publish_sync(event, _NO_PLAN)
                return
            plan = self._registry.compile_sync(type(event))
            if plan:
                self._dispatch.publish_sync(event, plan)
            else:
                self._dispatch.published(event, 0, None)
            return
        if not plan:
            return
        try:
            stack = self._tls.stack
        except AttributeError:  # this thread's first publish
            stack = self._context.stack()
        # The fast path: this thread's stack, when its room allows (module
        # _context) and the dispatch is not inside an async one or the fleet.
        if stack:
            if len(stack) >= stack.room:
                self._dispatch.publish_sync(event, plan)
                return
        elif self._var.get() is not None:
            self._dispatch.publish_sync(event, plan)
            return
        stack.append(event)
        errors = None
        try:
            # Inline, not a helper: a call per publish would cost more than a
            # handler call.
            for handler in plan:
                try:
                    handler(event)
                except Exception as exc:
                    errors = self._dispatch.failed(event, plan.owners[id(handler)], exc, errors)
        finally:
            del stack[-1]
        if errors:
            self._dispatch.raise_group(event, errors)

    async def publish(self, event: DomainEvent) -> None:
        """Deliver ``event`` to all its handlers, sync and async, in order.

        Sync handlers run inline; async ones are awaited one after another,
        except those subscribed with ``concurrent=True``, which run as tasks
        that this call waits for before returning.

        Raises:
            EventCycleError: The dispatch chain would exceed ``max_depth``.
            ExceptionGroup: Only with ``raise_errors=True``: the handler failures.
        """
        plan = self._async_plans.get(type(event))
        try:
            # A sync dispatch in progress on this thread: a loop runs inside it.
            nested = bool(self._tls.stack)
        except AttributeError:  # this thread's first publish: make its stack, once
            nested = bool(self._context.stack())
        if plan is None or nested:
            await self._publish_careful(event, plan)
            return
        var = self._var
        parent = var.get()
        if parent is None:
            depth = 1
        elif parent[3] is not None or parent[2] >= self._context.max_depth:
            await self._publish_careful(event, plan)
            return
        else:
            depth = parent[2] + 1
        # The fast path: no concurrent handlers, a linked node in the ContextVar.
        token = var.set((event, parent, depth, None))
        errors = None
        try:
            for handler, is_async in plan:
                try:
                    if is_async:
                        await handler(event)
                    else:
                        handler(event)
                except Exception as exc:
                    errors = self._dispatch.failed(event, plan.owners[id(handler)], exc, errors)
        finally:
            var.reset(token)
        if errors:
            self._dispatch.raise_group(event, errors)

    async def _publish_careful(self, event: DomainEvent, plan: _plans.AsyncPlan | None) -> None:
        if plan is None:
            plan = self._registry.compile_async(type(event))
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        await self._dispatch.publish(event, plan)

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
        # run_coroutine_threadsafe copies the current context into the task:
        # hand it a copy with this bus's chain cleared.
        context = contextvars.copy_context()
        context.run(self._var.set, None)
        return context.run(asyncio.run_coroutine_threadsafe, self.publish(event), loop)

    # ------------------------------------------------------------------ waiting

    async def wait_for(
        self,
        event_type: type[E],
        predicate: Callable[[E], bool] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  # the API asyncio.wait_for users expect
        *,
        fleet: bool = False,
    ) -> E:
        """Wait for the next ``event_type`` event (that ``predicate`` accepts), and return it.

        Subscribes until the event comes: only events published after the call
        count. A local handler by default; ``fleet=True`` waits in the fleet's
        order (module ``_fleet``).

        Example:
            done = await bus.wait_for(PortfolioNetWorthRecalculated,
                                      lambda e: e.user_id == user, timeout=5)

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        return await _waiting.wait_for(self, event_type, predicate, timeout, fleet)

    def stream(
        self,
        event_type: type[E],
        *,
        maxsize: int = 1024,
        overflow: _waiting.Overflow = "error",
        fleet: bool = False,
    ) -> _waiting.EventStream[E]:
        """Iterate over ``event_type`` events as they are published, from asyncio code.

        Subscribes at once, into a buffer of ``maxsize`` events that never
        blocks a publisher. When it is full, ``overflow="error"`` (the default)
        ends the iteration with `StreamOverflowError` after the buffered events,
        so a consumer that falls behind learns it lost events;
        ``"drop_oldest"`` keeps the newest and counts the dropped. Use it as an
        async context manager, so it unsubscribes however the loop ends:

            async with bus.stream(AccountBalanceUpdated) as balances:
                async for event in balances:
                    ...

        Raises:
            ValueError: ``maxsize`` below 1, or an unknown ``overflow``.
            RuntimeError: No running event loop.
        """
        return _waiting.EventStream(self, event_type, maxsize, overflow, fleet)

    # ------------------------------------------------------------------ context

    def current_event(self) -> DomainEvent | None:
        """The event being dispatched in this thread or task, or ``None`` at top level.

        Inside a handler this is the event the handler was called with.
        """
        chain = self._context.chain()
        return chain[-1] if chain else None

    def event_chain(self) -> tuple[DomainEvent, ...]:
        """The events being dispatched in this thread or task, outermost first.

        Empty at top level; ``(event,)`` inside a handler of a *root* event (one
        published outside any handler); longer inside handlers of events that
        other handlers published. Exact from the first publish, in every
        thread and task: a task or thread started with a copy of the context
        (``asyncio.create_task`` inside an async dispatch, ``asyncio.to_thread``)
        continues the chain it was started in.
        """
        return self._context.chain()

    def caused_by(self, cause: DomainEvent) -> AbstractContextManager[None]:
        """Publish inside the block as if from a handler of ``cause``.

        For work a handler hands on to a queue, a task or a thread that
        publishes later: those events are derived from ``cause``, not roots.
        Inside the block `event_chain` ends with ``cause`` (after any dispatch
        already in progress in this task), and ``cause`` counts towards
        ``max_depth``. The block is local context (module ``_fleet``): with a
        sequencer, what is published in it is appended.

        Example:
            with bus.caused_by(balance_event):
                await bus.publish(net_worth_event)

        Raises:
            RuntimeError: Called during a sync dispatch in this thread, where
                publishing makes derived events already.
        """
        return self._context.caused_by(cause)

    # ------------------------------------------------------------------ fleet

    @property
    def sequencer(self) -> Sequencer | None:
        """The attached `Sequencer`, if any (see `set_sequencer`)."""
        return self._registry.sequencer

    def set_sequencer(self, sequencer: Sequencer | None) -> None:
        """Attach the fleet's `Sequencer` (the Redis bridge does), or detach it.

        From now on, events of the types it sequences run their local handlers
        at publish time (its ``append`` first) and their fleet handlers when it
        delivers them (`deliver`). ``None`` restores single-process dispatch.

        Raises:
            TypeError: ``sequencer`` lacks ``sequences`` or ``append``.
            RuntimeError: Another sequencer is attached.
        """
        if sequencer is not None and not isinstance(sequencer, Sequencer):
            raise TypeError(f"a sequencer needs sequences() and append(), got {sequencer!r}")
        self._registry.set_sequencer(sequencer)

    async def deliver(
        self,
        event: DomainEvent,
        position: str,
        *,
        local: bool,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Run ``event``'s fleet handlers: an entry of the fleet's order, at ``position``.

        The sequencer's reader calls this for every entry, its own included,
        one at a time, in order. Events the fleet handlers publish are derived
        in the fleet (module ``_fleet``): positions ``<position>.1``, ``.2``...;
        their local handlers run only where ``local`` (this worker appended the
        entry). ``headers`` are the entry's observer headers, as a
        `HeaderSequencer` stored them (`DispatchObserver.inject`).

        Raises:
            EventCycleError: The dispatch chain would exceed ``max_depth``.
            ExceptionGroup: Only with ``raise_errors=True``: the handler failures.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        await self._dispatch.deliver(event, position, local, headers)

    def current_position(self) -> str | None:
        """The fleet position of the event a fleet handler is handling, else ``None``.

        ``"<entry position>"`` for a delivered entry's own event, then
        ``"<entry position>.1"``, ``.2``... for the events derived from it, the
        same on every worker (the SSE broadcaster uses it as the SSE id).
        """
        node = self._var.get()
        if node is not None and isinstance(node[3], Place) and not self._context.stack():
            return node[3].position
        return None

    def register_projection(self, projection: Projection) -> None:
        """Register state built by fleet handlers, for a sequencer to snapshot and restore.

        Raises:
            TypeError: ``projection`` is not a `Projection`.
            ValueError: A projection with its name is registered already.
        """
        self._projections.register(projection)

    def unregister_projection(self, projection: Projection) -> None:
        """Forget ``projection`` (no error if it was not registered)."""
        self._projections.unregister(projection)

    def projections(self) -> tuple[Projection, ...]:
        """The registered projections, in registration order."""
        return self._projections.all()

    # ------------------------------------------------------------------ observers

    def add_observer(self, observer: DispatchObserver) -> None:
        """Call ``observer`` around every dispatch and handler call of this bus.

        See `DispatchObserver`. While any bus has an observer, publishes take
        the careful dispatch path; with none, observers cost nothing. Added
        from a plugin's hook, it is the plugin's: `unregister_plugin` removes it.

        Raises:
            TypeError: ``observer`` is not a `DispatchObserver`.
        """
        self._dispatch.observation.add(observer)
        plugin = acting_plugin(self)
        if plugin is not None:
            self._plugins.record_observer(plugin, observer)

    def remove_observer(self, observer: DispatchObserver) -> bool:
        """Stop calling ``observer``; whether it was registered."""
        return self._dispatch.observation.remove(observer)

    def observers(self) -> tuple[DispatchObserver, ...]:
        """The registered observers, in registration order."""
        return self._dispatch.observation.observers

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the bus to the running loop and run every plugin's ``eventbus_startup``."""
        self._loop = asyncio.get_running_loop()
        await self._plugins.startup()

    def __repr__(self) -> str:
        return f"<EventBus subscriptions={len(self._registry)} plugins={len(self.plugins())}>"
