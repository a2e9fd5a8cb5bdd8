"""The running bridge: a bounded outbox, one writer task and one reader task.

Outbound, the bus handler only appends the event to a bounded deque and wakes
the writer (thread-safely); the writer encodes whatever is pending and appends
it in one round trip (`eventbus_redis._stream.Appender`). While Redis is
unreachable the deque keeps the newest ``buffer_size`` events, dropping (and
counting) the oldest, and the writer retries with backoff.

Inbound, the reader ``XREAD BLOCK``s from the last id it saw and re-publishes
every foreign entry on the local bus, one at a time, in stream order.

An entry has one field: its name is ``<origin id>:<sequence number>`` (the
writer's random id and its own counter), its value the `eventbus.codec` bytes.
One field keeps the reply small to parse. A reader skips its own entries (no
echo) and any entry of an origin at or below the last sequence number it
delivered, which a writer's retry after a lost reply could append twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections import deque
from typing import Any, Final, final

from redis.asyncio import Redis
from redis.exceptions import RedisError

import eventbus.portfolio  # noqa: F401  # registers the wire names every worker shares
from eventbus import DomainEvent, EventBus, Subscription, codec
from eventbus.events import event_name
from eventbus.exceptions import DecodeError
from eventbus_redis._settings import RedisBridgeSettings
from eventbus_redis._sse import SSEIds, SSEOrder
from eventbus_redis._stream import OUTAGE, Appender, Backoff, entries, is_transient

__all__ = ["RedisBridge"]

_log = logging.getLogger("eventbus.redis")


_SKIP, _ROOTS, _ALWAYS = 0, 1, 2
#: The bridge's handlers run first (FIRST) and last (-FIRST) of all.
FIRST: Final = 2**62


@final
class RedisBridge:
    """Bridges ``bus`` to one Redis stream; `start` and `aclose` on the bus's loop.

    Args:
        bus: The local bus.
        client: A ``redis.asyncio.Redis`` with ``decode_responses=False``.
        settings: Limits and the event classes to bridge.
        owns_client: Close ``client`` in `aclose`.
        sse: The SSE broadcaster, to give bridged events stream ids as SSE ids.
    """

    __slots__ = (
        "_appender",
        "_bus",
        "_client",
        "_idle",
        "_inbound",
        "_inflight",
        "_last_id",
        "_loop",
        "_loop_thread",
        "_modes",
        "_origin",
        "_outbox",
        "_owns_client",
        "_reader",
        "_seen",
        "_seq",
        "_settings",
        "_sse",
        "_sse_ids",
        "_stats",
        "_subscriptions",
        "_unlogged_drops",
        "_wake",
        "_wake_pending",
        "_writer",
    )

    def __init__(
        self,
        bus: EventBus,
        client: Redis,
        settings: RedisBridgeSettings,
        *,
        owns_client: bool,
        sse: SSEIds | None = None,
    ) -> None:
        self._bus = bus
        self._client = client
        self._appender = Appender(client, settings)
        self._settings = settings
        self._owns_client = owns_client
        self._sse_ids = sse
        self._sse = (
            None
            if sse is None
            else SSEOrder(sse, bus.event_chain, settings.sse_hold_timeout, settings.buffer_size)
        )
        self._origin = uuid.uuid4().hex.encode()
        # (event, its held SSE frames or None); appended from any thread.
        self._outbox: deque[tuple[DomainEvent, object | None]] = deque(maxlen=settings.buffer_size)
        self._inflight: list[tuple[bytes, bytes]] = []  # (field name, payload)
        self._seq = 0
        self._seen: dict[bytes, int] = {}
        self._modes: dict[type, int] = {}
        self._inbound: DomainEvent | None = None
        self._last_id: bytes | None = None
        self._unlogged_drops = 0
        self._wake_pending = False
        self._subscriptions: list[Subscription[DomainEvent]] = []
        self._stats = dict.fromkeys(
            ("sent", "received", "dropped", "reconnects", "echoes", "duplicates", "malformed"), 0
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def origin(self) -> str:
        """This bridge's origin id, written into every entry it appends."""
        return self._origin.decode()

    def statistics(self) -> dict[str, int]:
        """Counters: sent, received, buffered, dropped, reconnects, echoes, duplicates, malformed."""
        return {**self._stats, "buffered": len(self._outbox) + len(self._inflight)}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Subscribe the outbound handler and start the writer and reader tasks."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # Switch the bus's context tracking on now, not at the first event: the
        # root rule and the SSE holds need exact chains from the very first one
        # (a thread or task a handler starts sees its parent only if tracking
        # was on when that dispatch began).
        self._bus.event_chain()
        try:
            self._last_id = await self._stream_tail()
        except OUTAGE as exc:  # local publishing must work without Redis
            _log.warning("Redis is unreachable at startup (%s); buffering until it is back", exc)
        # Highest priority: a root event is queued before its handlers publish
        # anything that is forwarded too, so the stream keeps causal order.
        events = dict.fromkeys(self._settings.events)
        # A class under another selected class is covered already: subscribing
        # it too would queue its events twice.
        for cls in [c for c in events if not any(c is not o and issubclass(c, o) for o in events)]:
            self._subscriptions.append(self._bus.subscribe(cls, self._on_event, priority=FIRST))
            if self._sse is not None:
                # Lowest priority: the held SSE frames are complete when it runs.
                sub = self._bus.subscribe(cls, self._dispatched, priority=-FIRST)
                self._subscriptions.append(sub)
        self._writer = asyncio.create_task(self._write_loop(), name="eventbus-redis-writer")
        self._reader = asyncio.create_task(self._read_loop(), name="eventbus-redis-reader")

    async def aclose(self) -> None:
        """Stop forwarding, flush what is pending (up to ``drain_timeout``), then close."""
        for sub in self._subscriptions:
            sub.cancel()
        self._subscriptions.clear()
        if self._writer is not None and not self._writer.done():
            self._wake.set()
            try:
                await asyncio.wait_for(self._drained(), self._settings.drain_timeout)
            except TimeoutError:
                _log.warning(
                    "Redis bridge closed with %d event(s) not sent (Redis unreachable)",
                    self.statistics()["buffered"],
                )
        for task in (self._reader, self._writer):
            if task is not None:
                await _cancel(task)
        if self._owns_client:
            await self._client.aclose()

    async def _drained(self) -> None:
        while self._outbox or self._inflight:
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    # ------------------------------------------------------------- outbound

    def _mode(self, cls: type[DomainEvent]) -> int:
        if event_name(cls) is None:
            mode = _SKIP
        elif issubclass(cls, self._settings.forward_always):
            mode = _ALWAYS
        else:
            mode = _ROOTS
        self._modes[cls] = mode
        return mode

    def _on_event(self, event: DomainEvent) -> None:
        """The bus handler: queue ``event`` if it is to be forwarded; never blocks."""
        mode = self._modes.get(type(event))
        if mode is None:
            mode = self._mode(type(event))
        if mode == _SKIP or event is self._inbound:
            return
        chain = self._bus.event_chain()
        # A root event is alone in its dispatch chain. Whatever the chain, an
        # event caused by a remote event is that process's to forward, not ours.
        if (mode == _ROOTS and len(chain) > 1) or (chain and chain[0] is self._inbound):
            return
        outbox = self._outbox
        if len(outbox) == outbox.maxlen:
            self._stats["dropped"] += 1
            if not self._unlogged_drops:
                _log.warning(
                    "Redis bridge buffer full (%d events): dropping the oldest until Redis is back",
                    outbox.maxlen,
                )
            self._unlogged_drops += 1
            with contextlib.suppress(IndexError):  # the writer took it meanwhile
                _, dropped = outbox.popleft()
                on_loop = threading.get_ident() == self._loop_thread
                if dropped is not None and self._sse is not None and on_loop:
                    self._sse.release_held(dropped)  # elsewhere its timeout does
        # This process's SSE clients get a root event (and what its handlers
        # derive) once its stream id is known, under the ids every other
        # worker gives it, in stream order (module eventbus_sse._holds).
        held = self._sse.hold(event) if self._sse is not None and len(chain) == 1 else None
        outbox.append((event, held))
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        elif not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):  # loop closed: nothing to wake
                self._loop.call_soon_threadsafe(self._wake_from_thread)

    def _dispatched(self, event: DomainEvent) -> None:
        """The bus's last handler: the held SSE frames of ``event`` are complete."""
        if self._sse is not None:
            self._sse.finish(event)

    def _wake_from_thread(self) -> None:
        self._wake_pending = False
        self._wake.set()

    def _take_batch(self) -> None:
        outbox, batch = self._outbox, self._inflight
        for _ in range(min(self._settings.batch_size, len(outbox))):
            event, held = outbox.popleft()
            try:
                payload = codec.dumps(event)
            except Exception as exc:  # EventBusError, or orjson's TypeError (a 65-bit int)
                self._stats["dropped"] += 1
                _log.error("Redis bridge cannot encode %r: %s", event, exc)
                if held is not None and self._sse is not None:
                    self._sse.release_held(held)
                continue
            self._seq += 1
            batch.append((b"%s:%d" % (self._origin, self._seq), payload))
            if held is not None and self._sse is not None:
                self._sse.appended(self._seq, held)

    async def _write_loop(self) -> None:
        settings, stats = self._settings, self._stats
        backoff = Backoff(
            settings.backoff_initial,
            settings.backoff_max,
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
                await self._appender.append(self._inflight)
            except (RedisError, OSError) as exc:
                if is_transient(exc):
                    await backoff.wait(exc)
                    continue
                self._drop_inflight(exc)  # e.g. the key holds another type
            except Exception as exc:  # a bug must not stop the writer for good
                _log.exception("Redis bridge writer failed")
                self._drop_inflight(exc)
            else:
                stats["sent"] += len(self._inflight)
            self._inflight.clear()
            backoff.succeeded()
            if self._unlogged_drops:
                _log.warning(
                    "Redis bridge is sending again; %d event(s) were dropped", self._unlogged_drops
                )
                self._unlogged_drops = 0

    def _drop_inflight(self, exc: Exception) -> None:
        self._stats["dropped"] += len(self._inflight)
        _log.error("Redis bridge dropped %d event(s): %s", len(self._inflight), exc)
        if self._sse is not None:
            for seq in range(self._seq - len(self._inflight) + 1, self._seq + 1):
                self._sse.release(seq)

    # -------------------------------------------------------------- inbound

    async def _stream_tail(self) -> bytes:
        """The id of the newest entry, so a new reader starts after it."""
        newest: Any = await self._client.xrevrange(self._settings.stream, count=1)
        return bytes(newest[0][0]) if newest else b"0-0"

    async def _read_loop(self) -> None:
        settings, stats = self._settings, self._stats
        backoff = Backoff(
            settings.backoff_initial,
            settings.backoff_max,
            "Redis bridge cannot read the stream (%s); retrying",
        )
        while True:
            try:
                if self._last_id is None:
                    self._last_id = await self._stream_tail()
                reply: Any = await self._client.xread(
                    {settings.stream: self._last_id},
                    count=settings.read_count,
                    block=settings.block_ms,
                )
            except (RedisError, OSError) as exc:
                # An outage, or a reply error (WRONGTYPE, NOPERM, MASTERDOWN):
                # keep trying with backoff; the reader must never die.
                await backoff.wait(exc)
                continue
            if backoff.succeeded():
                stats["reconnects"] += 1
                _log.warning("Redis bridge reconnected; resuming after %s", self._last_id)
            for entry_id, fields in entries(reply):
                self._last_id = entry_id
                try:
                    await self._deliver(entry_id, fields)
                except Exception:  # never let one entry stop the reader
                    self._stats["malformed"] += 1
                    _log.exception("Redis bridge skipped entry %r", entry_id)

    async def _deliver(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            if len(fields) != 1:
                raise DecodeError(f"expected one field '<origin>:<seq>', got {len(fields)}")
            ((header, payload),) = fields.items()
            origin, _, raw_seq = header.rpartition(b":")
            seq = int(raw_seq)
            if origin == self._origin:
                self._stats["echoes"] += 1
                echo = True
            else:
                echo = False
                event = codec.loads(payload)
        except (DecodeError, ValueError) as exc:
            self._stats["malformed"] += 1
            _log.warning(
                "Redis bridge skipped malformed entry %s: %s",
                entry_id.decode(errors="replace"),
                exc,
                extra={"stream_id": entry_id.decode(errors="replace")},
            )
            return
        if echo:
            if self._sse is not None:
                self._sse.echoed(seq, entry_id.decode())
            return
        last = self._seen.get(origin)
        if last is not None and seq <= last:
            self._stats["duplicates"] += 1
            return
        self._seen[origin] = seq
        self._inbound = event
        try:
            if self._sse_ids is None:
                await self._bus.publish(event)
            else:
                with self._sse_ids.id_scope(entry_id.decode()):
                    await self._bus.publish(event)
        except Exception:  # a strict bus raises its handlers' failures: keep reading
            _log.exception("handlers failed on remote event from entry %s", entry_id.decode())
        finally:
            self._inbound = None
        self._stats["received"] += 1


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
