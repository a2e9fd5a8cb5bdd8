"""`Outbox`: derived events waiting for async subscribers, published in order.

Why it exists: the aggregator's handler is sync and publishes with
``publish_sync``, which refuses an event type that has ``async def``
subscribers (`eventbus.AsyncHandlerError`) in local context. Such events wait
here, first in first out, and one task on the bus's loop publishes them with
``await bus.publish(...)``, one at a time. In fleet context (inside
`eventbus.EventBus.deliver`) the bus awaits such publishes itself, within the
delivery, so nothing comes here.

Each event is published inside ``bus.caused_by(cause)``, the balance update it
was derived from, so it stays a derived event (its ``event_chain()`` starts
with the cause) rather than a root of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections import deque
from typing import Final, final

from eventbus import DomainEvent, EventBus

__all__ = ["Outbox"]

_log = logging.getLogger("eventbus.networth")


@final
class Outbox:
    """A FIFO of (event, cause) that one task on the bus's loop drains.

    Thread-safe. While it is not empty, the caller must queue new events
    behind it (see `busy`), so the order holds.

    Args:
        bus: The bus to publish on.
    """

    __slots__ = ("_bus", "_drainer", "_draining", "_items", "_lock", "_loop")

    def __init__(self, bus: EventBus) -> None:
        self._bus: Final = bus
        self._items: deque[tuple[DomainEvent, DomainEvent | None]] = deque()
        self._lock: Final = threading.Lock()
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def busy(self) -> bool:
        """Whether events are waiting or being published: new ones go behind them."""
        with self._lock:
            return self._draining

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain on ``loop`` when events are put from threads without a running loop."""
        self._loop = loop

    def put(self, event: DomainEvent, cause: DomainEvent | None) -> None:
        """Queue ``event`` (derived from ``cause``) for ``await bus.publish``; any thread."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            here = True
        except RuntimeError:
            loop, here = self._loop, False
        if loop is None or loop.is_closed():
            _log.error(
                "%s %s cannot reach its async subscribers: no running loop "
                "(start the bus with 'async with bus')",
                type(event).__qualname__,
                event.event_id,
            )
            return
        with self._lock:
            self._items.append((event, cause))
            if self._draining:
                return
            self._draining = True
        if here:
            self._start()
        else:
            loop.call_soon_threadsafe(self._start)

    async def join(self) -> None:
        """Return once everything queued so far is published."""
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            await drainer

    def _start(self) -> None:
        # A fresh context: the drainer outlives the dispatch that started it,
        # whose chain it must not carry into later events (each gets its own
        # cause). A strong reference: the loop holds tasks only weakly.
        self._drainer = asyncio.get_running_loop().create_task(
            self._drain(), context=contextvars.Context()
        )

    async def _drain(self) -> None:
        bus = self._bus
        try:
            while True:
                with self._lock:
                    if not self._items:
                        self._draining = False
                        return
                    event, cause = self._items.popleft()
                try:
                    if cause is None:
                        await bus.publish(event)
                    else:
                        with bus.caused_by(cause):
                            await bus.publish(event)
                except Exception:  # raise_errors=True: report, keep the order going
                    _log.exception(
                        "publishing %s %s failed", type(event).__qualname__, event.event_id
                    )
        except BaseException:
            with self._lock:
                self._draining = False
            raise
