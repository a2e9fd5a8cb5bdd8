"""Waiting on events from asyncio code: `EventBus.wait_for` and `EventBus.stream`.

Both subscribe an ordinary handler, so they see what any handler of that kind
sees (local by default, ``fleet=True`` for the fleet's order), and both hand
events to the waiting task without ever blocking the publisher: from the
loop's own thread directly, from any other thread with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Generic, Literal, TypeVar, final

from eventbus.events import DomainEvent
from eventbus.exceptions import StreamOverflowError

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from eventbus._bus import EventBus
    from eventbus._subscription import Subscription

__all__ = ["EventStream", "Overflow", "wait_for"]

E = TypeVar("E", bound=DomainEvent)

#: What `EventStream` does when its buffer is full: ``"error"`` raises
#: `StreamOverflowError` once the buffered events are consumed; ``"drop_oldest"``
#: keeps the newest events and counts the rest in `EventStream.dropped`.
Overflow = Literal["error", "drop_oldest"]


def _hand_to(loop: asyncio.AbstractEventLoop, thread: int, call: Callable[[], None]) -> None:
    """Run ``call`` on ``loop``: now on its own thread, else thread-safely."""
    if threading.get_ident() == thread:
        call()
    else:
        loop.call_soon_threadsafe(call)


async def wait_for(
    bus: EventBus,
    event_type: type[E],
    predicate: Callable[[E], bool] | None,
    timeout: float | None,  # noqa: ASYNC109  # EventBus.wait_for's documented parameter
    fleet: bool,
) -> E:
    """See `eventbus.EventBus.wait_for`."""
    loop = asyncio.get_running_loop()
    thread = threading.get_ident()
    future: asyncio.Future[E] = loop.create_future()

    def settle(event: E) -> None:
        if not future.done():
            future.set_result(event)

    def handler(event: E) -> None:
        # The predicate runs in the publisher's thread, as any handler does; a
        # predicate that raises is that handler's failure, reported as usual.
        if predicate is None or predicate(event):
            _hand_to(loop, thread, lambda: settle(event))

    with bus.subscribe(event_type, handler, fleet=fleet):
        async with asyncio.timeout(timeout):
            return await future


@final
class EventStream(Generic[E]):
    """Events of one type, as an async iterator with a bounded buffer.

    Made by `eventbus.EventBus.stream`, which subscribes at once, so nothing
    published after that call is missed. Use it as an async context manager,
    so the subscription ends with the block however the loop exits:

        async with bus.stream(AccountBalanceUpdated) as balances:
            async for event in balances:
                ...

    Attributes:
        dropped: Events discarded under ``overflow="drop_oldest"``.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_closed",
        "_loop",
        "_maxsize",
        "_overflow",
        "_overflowed",
        "_subscription",
        "_thread",
        "_waiter",
        "dropped",
    )

    def __init__(
        self, bus: EventBus, event_type: type[E], maxsize: int, overflow: Overflow, fleet: bool
    ) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be an int >= 1, got {maxsize!r}")
        if overflow not in ("error", "drop_oldest"):
            raise ValueError(f"overflow must be 'error' or 'drop_oldest', got {overflow!r}")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._maxsize: Final = maxsize
        self._overflow: Final = overflow
        self._buffer: collections.deque[E] = collections.deque()
        self._overflowed = False
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self.dropped: int = 0
        # Weak: a stream dropped without close() unsubscribes when collected.
        self._subscription: Subscription[E] = bus.subscribe(
            event_type, self._handle, weak=True, fleet=fleet
        )

    def _handle(self, event: E) -> None:
        _hand_to(self._loop, self._thread, lambda: self._put(event))

    def _put(self, event: E) -> None:
        if self._closed or self._overflowed:
            return
        if len(self._buffer) >= self._maxsize:
            if self._overflow == "error":
                self._overflowed = True  # raised once the buffer is consumed
                self._wake()
                return
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> E:
        while not self._buffer:
            if self._overflowed:
                self.close()
                raise StreamOverflowError(
                    f"the stream's buffer of {self._maxsize} events overflowed: events were "
                    "lost (a bigger maxsize, a faster consumer, or overflow='drop_oldest')"
                )
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()

    def close(self) -> None:
        """Unsubscribe; buffered events can still be read, then iteration stops. Idempotent."""
        if not self._closed:
            self._closed = True
            self._subscription.cancel()
            self._wake()

    @property
    def closed(self) -> bool:
        """Whether `close` was called (or the block of ``async with`` ended)."""
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventStream {state} buffered={len(self._buffer)} dropped={self.dropped}>"
