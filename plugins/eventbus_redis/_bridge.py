"""`RedisBridge`: the fleet's sequencer, a Redis stream shared by every worker.

It implements the core's `eventbus.Sequencer`: the bus hands it every event of
a sequenced type published in local context (`append`, first in that event's
local dispatch), and it attaches itself with ``bus.set_sequencer`` while it
runs. It is a `eventbus.HeaderSequencer` too: while the bus has an observer,
events come with the observers' headers (`append_with_headers`, a W3C
``traceparent`` for instance), which travel in the entry and come back to
``bus.deliver(..., headers=...)`` on every worker (`eventbus_redis._headers`). It composes the two halves, each one concept:

* `eventbus_redis._writer.Writer`: the bounded outbox and the task that
  appends it to the stream;
* `eventbus_redis._reader.Reader`: bootstrap from a snapshot, then every
  entry, its own included, to ``bus.deliver`` in stream order, so every worker
  runs its fleet handlers on the same events in the same order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Final, final

from redis.asyncio import Redis

import eventbus.portfolio  # noqa: F401  # registers the wire names every worker shares
from eventbus import DomainEvent, EventBus
from eventbus.events import event_name
from eventbus_redis._reader import Reader
from eventbus_redis._settings import RedisBridgeSettings
from eventbus_redis._snapshots import check_names
from eventbus_redis._writer import Writer

__all__ = ["STATISTICS", "RedisBridge"]

_log = logging.getLogger("eventbus.redis")

#: The counters of `RedisBridge.statistics`, in the order they are reported.
STATISTICS: Final = (
    "sent",
    "received",
    "own",
    "buffered",
    "dropped",
    "reconnects",
    "duplicates",
    "malformed",
    "trimmed",
    "snapshots",
)


@final
class RedisBridge:
    """Sequences ``bus``'s events through one Redis stream; `start` and `aclose` on its loop.

    Args:
        bus: The local bus.
        client: A ``redis.asyncio.Redis`` that does not decode responses.
        settings: Limits, snapshots and the event classes to sequence.
        owns_client: Close ``client`` in `aclose`.
    """

    __slots__ = (
        "_bus",
        "_client",
        "_events",
        "_origin",
        "_owns_client",
        "_reader",
        "_settings",
        "_stats",
        "_tasks",
        "_writer",
        "append",
        "append_with_headers",
    )

    def __init__(
        self, bus: EventBus, client: Redis, settings: RedisBridgeSettings, *, owns_client: bool
    ) -> None:
        self._bus = bus
        self._client = client
        self._settings = settings
        self._events = settings.events
        self._owns_client = owns_client
        self._origin = uuid.uuid4().hex.encode()
        self._stats = dict.fromkeys(STATISTICS, 0)
        self._writer = Writer(client, settings, self._origin, self._stats)
        #: `eventbus.Sequencer.append`: queue an event for the stream; any
        #: thread, never blocks, never raises. The writer's own method, bound
        #: here so the publish hot path makes one call, not two.
        self.append: Final[Callable[[DomainEvent], None]] = self._writer.append
        #: `eventbus.HeaderSequencer.append_with_headers`: `append`, with the
        #: observers' headers stored in the entry (the well-formed ones: at
        #: most 8, names of ``A-Z a-z 0-9 _ . -``, printable ASCII values of
        #: at most 512 characters). Called by the bus only while observed.
        self.append_with_headers: Final[Callable[[DomainEvent, Mapping[str, str]], None]] = (
            self._writer.append_with_headers
        )
        self._reader: Reader | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def origin(self) -> str:
        """This worker's origin id, written into every entry it appends."""
        return self._origin.decode()

    def statistics(self) -> dict[str, int]:
        """The counters of `STATISTICS` (their meanings: docs/redis.md)."""
        return {**self._stats, "buffered": self._writer.buffered}

    # ------------------------------------------------------------ the Sequencer

    def sequences(self, event_type: type[DomainEvent]) -> bool:
        """Whether ``event_type`` goes through the stream: selected, and it has a wire name."""
        return issubclass(event_type, self._events) and event_name(event_type) is not None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Attach to the bus, start the tasks, and return once caught up (or timed out).

        Raises:
            ValueError: A projection's name cannot be a snapshot field.
        """
        check_names(self._bus.projections())
        reader = self._reader = Reader(
            self._bus, self._client, self._settings, self._origin, self._writer.own, self._stats
        )
        self._writer.bind()
        self._bus.set_sequencer(self)
        self._tasks = [
            asyncio.create_task(self._writer.run(), name="eventbus-redis-writer"),
            asyncio.create_task(reader.run(), name="eventbus-redis-reader"),
        ]
        timeout = self._settings.bootstrap_timeout
        started = time.monotonic()
        try:
            await asyncio.wait_for(reader.caught_up.wait(), timeout)
        except TimeoutError:
            _log.warning(
                "Redis bridge not caught up with stream %r after %.1f s (bootstrap_timeout): "
                "starting anyway; fleet handlers and projections catch up in the background",
                self._settings.stream,
                timeout,
            )
        else:
            _log.info(
                "Redis bridge caught up with stream %r in %.3f s",
                self._settings.stream,
                time.monotonic() - started,
            )

    async def aclose(self) -> None:
        """Detach, flush and read back what is pending (up to ``drain_timeout``), then close.

        Events published from here on run all their handlers at once, as
        without a sequencer. Those appended before are flushed, then the reader
        delivers them, so this worker's fleet handlers see them too.
        """
        if self._bus.sequencer is self:
            self._bus.set_sequencer(None)
        timeout = self._settings.drain_timeout
        deadline = time.monotonic() + timeout
        writer, reader = self._writer, self._reader
        try:
            await asyncio.wait_for(writer.drained(), timeout)
        except TimeoutError:
            _log.warning(
                "Redis bridge closed with %d event(s) not sent (Redis unreachable)",
                writer.buffered,
            )
        else:
            if writer.last_sent is not None and reader is not None:
                try:
                    remaining = max(deadline - time.monotonic(), 0.0)
                    await asyncio.wait_for(reader.reached(writer.last_sent), remaining)
                except TimeoutError:
                    _log.warning(
                        "Redis bridge closed before reading back its entries up to %s",
                        writer.last_sent.decode(),
                    )
        for task in reversed(self._tasks):
            await _cancel(task)
        self._tasks.clear()
        if self._owns_client:
            await self._client.aclose()


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end.

    Cancels again while it runs: on Python 3.11 ``asyncio.wait_for`` (which
    redis-py uses to send commands under a socket timeout) can swallow a
    cancellation that arrives just as the send completes.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        # Shutdown goes on (the other task, the client) whatever ended this one.
        _log.error("Redis bridge task %s had failed", task.get_name(), exc_info=task.exception())
