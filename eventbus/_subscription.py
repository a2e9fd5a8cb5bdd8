"""`Subscription`: one handler subscribed to one event type on one bus."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from eventbus._bus import EventBus
    from eventbus.events import DomainEvent

__all__ = ["Handler", "Subscription", "handler_name"]

E = TypeVar("E", bound="DomainEvent")

#: A handler: a callable taking the event. What it returns is ignored (an async
#: handler's coroutine is awaited).
#: Whether it is async is decided once, when it is subscribed.
Handler = Callable[[E], object]


def handler_name(handler: object) -> str:
    """Return a readable ``module.qualname`` for a handler (for logs and errors)."""
    target = getattr(handler, "__func__", handler)
    module = getattr(target, "__module__", None) or type(handler).__module__
    qualname = getattr(target, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{qualname}"


async def _skipped() -> None:
    """What an async handler's wrapper returns when it does not call the handler.

    The bus awaits (or makes a task of) whatever an async handler returns, so a
    skipped call must still return an awaitable, never ``None``.
    """


def check_timeout(timeout: float | None, what: str = "timeout") -> float | None:
    """Validate a handler timeout in seconds: ``None`` or a positive number (``inf`` = none).

    Raises:
        TypeError: Not a number.
        ValueError: Not positive (or NaN).
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"{what} must be a number of seconds or None, got {timeout!r}")
    if not timeout > 0:
        raise ValueError(f"{what} must be > 0 seconds, got {timeout!r}")
    return float(timeout)


def _timed(call: Callable[[Any], Any], seconds: float, name: str) -> Callable[[Any], Any]:
    """``call`` (async) bounded to ``seconds``: past that it is cancelled, `TimeoutError`."""

    async def call_timed(event: Any) -> None:
        try:
            async with asyncio.timeout(seconds):
                await call(event)
        except TimeoutError as exc:
            raise TimeoutError(f"handler {name} timed out after {seconds:g} s") from exc

    return call_timed


def _is_async(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(type(handler), "__call__", None)  # noqa: B004  # async __call__ objects
    return not inspect.isfunction(handler) and inspect.iscoroutinefunction(call)


@final
class Subscription(Generic[E]):
    """A live subscription, returned by `EventBus.subscribe`.

    Cancel it with `cancel` (idempotent), or use it as a context manager:

        with bus.subscribe(AccountBalanceUpdated, on_balance):
            ...  # subscribed here
        # cancelled here

    Attributes:
        event_type: The subscribed type; instances of subclasses are delivered too.
        handler: The handler as given (for ``weak=True``, ``None`` once it died).
        priority: Higher runs first; ties run in subscription order.
        is_async: Whether the handler is a coroutine function.
        concurrent: Whether an async handler runs concurrently with the next ones.
        timeout: Seconds an async handler may run before it is cancelled and
            fails with `TimeoutError` (``None``: no limit).
        fleet: Whether it runs on every worker, in the fleet's order (`eventbus.EventBus.deliver`).
        plugin: Name of the plugin that made the subscription, if any.
    """

    __slots__ = (
        "__weakref__",
        "_active",
        "_bus",
        "_call",
        "_handler_ref",
        "_seq",
        "concurrent",
        "event_type",
        "fleet",
        "is_async",
        "once",
        "plugin",
        "priority",
        "timeout",
    )

    _seq_counter = itertools.count()

    def __init__(
        self,
        bus: EventBus,
        event_type: type[E],
        handler: Handler[E],
        *,
        priority: int,
        once: bool,
        weak: bool,
        concurrent: bool,
        fleet: bool = False,
        plugin: str | None,
        timeout: float | None = None,
        default_timeout: float | None = None,
    ) -> None:
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority must be an int, got {priority!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        self._bus = bus
        self._active = True
        self._seq = next(self._seq_counter)
        self.event_type: type[E] = event_type
        self.priority: int = priority
        self.once: bool = once
        self.is_async: bool = _is_async(handler)
        if concurrent and not self.is_async:
            raise TypeError(f"concurrent=True needs an async handler, got {handler_name(handler)}")
        self.concurrent: bool = concurrent
        timeout = check_timeout(timeout)
        if timeout is not None and not self.is_async:
            raise TypeError(
                f"timeout= needs an async handler (a sync one cannot be interrupted), "
                f"got {handler_name(handler)}"
            )
        if timeout is None and self.is_async:
            timeout = default_timeout
        self.timeout: float | None = None if timeout is None or math.isinf(timeout) else timeout
        self.fleet: bool = fleet
        self.plugin: str | None = plugin
        self._handler_ref: Callable[[], Handler[E] | None]
        self._call: Callable[[Any], Any]
        is_async = self.is_async
        if weak:
            ref: Callable[[], Any]
            me = weakref.ref(self)

            def _died(_: object) -> None:
                # Runs inside garbage collection, possibly while this thread holds
                # the bus lock: never block here (see EventBus._unsubscribe).
                sub = me()
                if sub is not None:
                    sub._bus._unsubscribe(sub, blocking=False)

            if inspect.ismethod(handler):
                ref = weakref.WeakMethod(handler, _died)
            else:
                ref = weakref.ref(handler, _died)
            self._handler_ref = ref

            def call_weak(event: E) -> Any:
                target = ref()
                if target is None:  # died after the plan was taken
                    return _skipped() if is_async else None
                return target(event)

            call: Callable[[Any], Any] = call_weak
        else:
            self._handler_ref = lambda: handler
            call = handler
        if once:
            first = itertools.count()
            inner = call

            def call_once(event: E) -> Any:
                # next() on itertools.count is atomic under the GIL: exactly one
                # caller wins even when several threads publish at once.
                if next(first) == 0:
                    self.cancel()
                    return inner(event)
                # Delivered already (a plan taken before the cancel, or a race).
                return _skipped() if is_async else None

            call = call_once
        if self.timeout is not None:
            call = _timed(call, self.timeout, handler_name(handler))
        self._call = call

    @property
    def handler(self) -> Handler[E] | None:
        """The subscribed handler (``None`` for a weak handler that was collected)."""
        return self._handler_ref()

    @property
    def active(self) -> bool:
        """``True`` until the subscription is cancelled."""
        return self._active

    def cancel(self) -> bool:
        """Unsubscribe. Idempotent and thread-safe.

        Returns:
            ``True`` if this call cancelled it, ``False`` if it already was.
        """
        return self._bus._unsubscribe(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def __repr__(self) -> str:
        state = "active" if self._active else "cancelled"
        return (
            f"<Subscription {self.event_type.__qualname__} -> {handler_name(self.handler)} "
            f"priority={self.priority} {state}>"
        )
