"""The bridge's outbound half: a bounded outbox and the task that appends it.

`Writer.append` is what the bus calls (through `RedisBridge.append`) first in
the local dispatch of every sequenced event: it only puts the event in a
bounded deque and wakes the writer task, thread-safely, so publishing never
waits for Redis. The task encodes whatever is pending and appends it in one
round trip (`eventbus_redis._stream.Appender`). While Redis is unreachable the
deque keeps the newest ``buffer_size`` events, dropping (and counting) the
oldest, and the task retries with backoff, so the entries reach the stream in
publishing order once Redis is back.

An entry has one field: its name is ``<origin id>:<sequence number>`` (the
writer's random id and its own counter), its value the `eventbus.codec` bytes.
One field keeps the reply small to parse; the sequence number lets readers
skip the entries a retried append repeats (`eventbus_redis._reader`). An event
appended with observer headers (`Writer.append_with_headers`, while the bus
is observed) gets one more field per header after it
(`eventbus_redis._headers`).

The writer also remembers the events it appended, with their headers, until
its own reader gets them back (`Writer.own`): decoding is most of a reader's
cost per entry, and the publishing worker already holds an equal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from threading import get_ident
from typing import final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from eventbus import DomainEvent, codec
from eventbus_redis._headers import clean, fields
from eventbus_redis._settings import RedisBridgeSettings
from eventbus_redis._stream import Appender, Backoff, is_transient

__all__ = ["Headed", "Kept", "Writer"]

_log = logging.getLogger("eventbus.redis")

#: An event the writer appended, as `Writer.own` gives it back: its sequence
#: number, the event, and its headers (``None``: none).
Kept = tuple[int, DomainEvent, Mapping[str, str] | None]


@final
class Headed:
    """An event queued with the observers' headers (already `clean`)."""

    __slots__ = ("event", "headers")

    def __init__(self, event: DomainEvent, headers: dict[str, str]) -> None:
        self.event = event
        self.headers = headers

    def __repr__(self) -> str:
        return f"{self.event!r} with headers {sorted(self.headers)}"


@final
class Writer:
    """Appends this worker's events to the stream, in publishing order.

    Args:
        client: A ``redis.asyncio.Redis`` that does not decode responses.
        settings: The bridge's settings.
        origin: This worker's origin id (the prefix of every field name).
        stats: The bridge's counters; the writer keeps ``sent`` and ``dropped``.
    """

    __slots__ = (
        "_appender",
        "_awaiting",
        "_idle",
        "_inflight",
        "_inflight_headed",
        "_limit",
        "_loop",
        "_loop_thread",
        "_origin",
        "_outbox",
        "_seq",
        "_settings",
        "_stats",
        "_unlogged_drops",
        "_wake",
        "_wake_pending",
        "last_sent",
    )

    def __init__(
        self, client: Redis, settings: RedisBridgeSettings, origin: bytes, stats: dict[str, int]
    ) -> None:
        self._appender = Appender(client, settings)
        self._settings = settings
        self._origin = origin
        self._stats = stats
        # Appended from any thread; deque.append and popleft are atomic.
        self._outbox: deque[DomainEvent | Headed] = deque(maxlen=settings.buffer_size)
        self._limit = settings.buffer_size
        # Each entry's fields, flat: (field name, payload, then header name,
        # value...); whether any entry of the batch has headers.
        self._inflight: list[tuple[bytes, ...]] = []
        self._inflight_headed = False
        # (sequence number, event, headers) taken for the stream, not yet read
        # back, in order. Bounded: past it, the reader decodes like any other worker.
        self._awaiting: deque[Kept] = deque(maxlen=settings.buffer_size)
        self._seq = 0
        self._unlogged_drops = 0
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        #: The stream id of the last entry this writer appended, if any.
        self.last_sent: bytes | None = None

    @property
    def buffered(self) -> int:
        """Events not yet confirmed by Redis (queued or in the batch being sent)."""
        return len(self._outbox) + len(self._inflight)

    def bind(self) -> None:
        """Remember the running loop: `append` wakes the task on it from any thread."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = get_ident()

    # ------------------------------------------------------------- any thread

    def append(self, event: DomainEvent | Headed) -> None:
        """Queue ``event`` (maybe `Headed`) for the stream; never blocks, never raises."""
        try:
            outbox = self._outbox
            if len(outbox) == self._limit:
                self._overflow()
            outbox.append(event)
            if get_ident() == self._loop_thread:
                self._wake.set()
            elif not self._wake_pending and self._loop is not None:
                # One wake-up in flight is enough: the task takes everything queued.
                self._wake_pending = True
                with contextlib.suppress(RuntimeError):  # loop closed: nothing to wake
                    self._loop.call_soon_threadsafe(self._wake_from_thread)
        except Exception:  # the publisher's dispatch must go on whatever happens here
            _log.exception("Redis bridge could not queue %r", event)

    def append_with_headers(self, event: DomainEvent, headers: Mapping[str, str]) -> None:
        """Queue ``event`` with the well-formed ones of ``headers``; never blocks, never raises.

        `eventbus.HeaderSequencer.append_with_headers`: the bus calls it instead
        of `append` while it has an observer. Without (well-formed) headers the
        entry is the plain one-field entry.
        """
        kept = clean(headers) if headers else None
        self.append(Headed(event, kept) if kept else event)

    def _overflow(self) -> None:
        self._stats["dropped"] += 1
        if not self._unlogged_drops:
            _log.warning(
                "Redis bridge buffer full (%d events): dropping the oldest until Redis is back",
                self._outbox.maxlen,
            )
        self._unlogged_drops += 1
        with contextlib.suppress(IndexError):  # the writer took it meanwhile
            self._outbox.popleft()

    def _wake_from_thread(self) -> None:
        self._wake_pending = False
        self._wake.set()

    def own(self, seq: int) -> Kept | None:
        """The event this writer appended as ``seq``, with its headers, once, if remembered.

        The reader asks in stream order, where sequence numbers ascend (it
        skips repeats first), so everything before ``seq`` is forgotten.
        """
        awaiting = self._awaiting
        while awaiting:
            kept = awaiting.popleft()
            if kept[0] == seq:
                return kept
            if kept[0] > seq:
                awaiting.appendleft(kept)
                return None
        return None

    # ---------------------------------------------------------------- the task

    async def drained(self) -> None:
        """Return once nothing is queued or in flight (Redis confirmed it all)."""
        while self._outbox or self._inflight:
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    def _take_batch(self) -> None:
        outbox, batch, awaiting = self._outbox, self._inflight, self._awaiting
        event: DomainEvent
        headers: dict[str, str] | None
        for _ in range(min(self._settings.batch_size, len(outbox))):
            try:
                item = outbox.popleft()
            except IndexError:  # a publishing thread's overflow took the oldest meanwhile
                break
            if type(item) is Headed:
                event, headers = item.event, item.headers
            else:
                event, headers = item, None
            try:
                payload = codec.dumps(event)
            except Exception as exc:  # EventBusError, or orjson's TypeError (a 65-bit int)
                self._stats["dropped"] += 1
                _log.error("Redis bridge cannot encode %r: %s", event, exc)
                continue
            self._seq += 1
            name = b"%s:%d" % (self._origin, self._seq)
            if headers is None:
                batch.append((name, payload))
            else:
                batch.append((name, payload, *fields(headers)))
                self._inflight_headed = True
            awaiting.append((self._seq, event, headers))

    async def run(self) -> None:
        """Append batches until cancelled; retry transient errors with backoff."""
        backoff = Backoff(
            self._settings.backoff_initial,
            self._settings.backoff_max,
            "Redis bridge cannot append (%s); retrying until it can",
        )
        while True:
            if not self._inflight:
                if not self._outbox:
                    self._wake.clear()
                    self._idle.set()
                    await self._wake.wait()
                    continue
                self._take_batch()
                if not self._inflight:
                    continue
            try:
                self.last_sent = await self._appender.append(self._inflight, self._inflight_headed)
            except (RedisError, OSError) as exc:
                if is_transient(exc):
                    await backoff.wait(exc)
                    continue  # the same batch again: readers skip what it repeats
                self._drop_inflight(exc)  # e.g. the key holds another type
            except Exception as exc:  # a bug must not stop the writer for good
                _log.exception("Redis bridge writer failed")
                self._drop_inflight(exc)
            else:
                self._stats["sent"] += len(self._inflight)
            self._inflight.clear()
            self._inflight_headed = False
            backoff.succeeded()
            if self._unlogged_drops:
                _log.warning(
                    "Redis bridge is sending again; %d event(s) were dropped", self._unlogged_drops
                )
                self._unlogged_drops = 0

    def _drop_inflight(self, exc: Exception) -> None:
        self._stats["dropped"] += len(self._inflight)
        _log.error("Redis bridge dropped %d event(s): %s", len(self._inflight), exc)
