"""The broadcaster: routes each event, encoded once, to its user's clients.

Routing is one dict lookup (user → tuple of subscribers, module ``_clients``),
so the cost of an event depends on its own user's clients, not on how many are
connected in total. Each client has a bounded queue filled with ``put_nowait``
semantics only: when it is full, that client is disconnected and counted, and
it resumes later through ``Last-Event-ID``. The publisher never waits. Each
user also has a ring buffer of recent frames for resume (module ``_resume``).

**Ids from positions.** Given a position source (`Broadcaster.bind_positions`;
the plugin binds `eventbus.EventBus.current_position`), a frame routed while
the source answers gets that position as its id: the stream id of the entry
being delivered, ``<stream id>.k`` for the events derived from it. Every worker
delivers the same entries in the same order, so the same frame has the same id
and the same bytes on each. Without a position (no sequencer, or a standalone
broadcaster) a frame gets a local ``<epoch>-<seq>`` id. See docs/sse.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Literal, TypeVar, final
from uuid import UUID

from eventbus import DomainEvent, codec
from eventbus.events import OrderGap
from eventbus_sse._auth import MAX_HEADER_BYTES
from eventbus_sse._clients import DEFAULT_PER_USER, Clients
from eventbus_sse._frames import (
    RESET_EVENT,
    EntryKey,
    Frame,
    Positions,
    PositionSource,
    build_frame,
    new_epoch,
    reset_frame,
)
from eventbus_sse._mapping import MappingTable
from eventbus_sse._resume import ResumeBuffers
from eventbus_sse._shutdown import DEFAULT_SIGNALS, ShutdownSignals
from eventbus_sse._subscriber import Subscriber

if TYPE_CHECKING:
    from eventbus_sse._app import Authenticate, SSEApp

__all__ = ["Broadcaster", "Encoder", "PositionSource"]

_log = logging.getLogger("eventbus.sse")

E = TypeVar("E", bound=DomainEvent)

#: The counters of `Broadcaster.statistics`, in its order.
_COUNTERS: Final = [
    "events_encoded",
    "frames_routed",
    "frames_sent",
    "frames_replayed",
    "dropped_clients",
    "resets_sent",
    "heartbeats_sent",
    "order_gaps",
]

#: Turns an event into the ``data:`` payload bytes. The default is `eventbus.codec.dumps`.
Encoder = Callable[[DomainEvent], bytes]


@final
class Broadcaster:
    """Streams mapped events to per-user subscribers, with replay buffers.

    Args:
        buffer_size: Frames kept per user for ``Last-Event-ID`` resume.
        buffered_users: Users with a resume buffer, at most; past it, the
            buffer created longest ago is dropped.
        queue_size: Frames a client may have pending before it is disconnected.
        encoder: Encodes an event's ``data:`` payload, once per event. A public
            hook: wrap `eventbus.codec.dumps` to observe or count encodes.
        max_clients_per_user: Streams one user may have open at once (32), or
            ``None`` for no cap; past it `connect` raises `ClientLimitError`
            (the app answers 429).
        max_clients: Streams in all, or ``None``; past it, a 503. The default,
            ``"auto"``, is the process's descriptor limit less an eighth of it
            (at least 64 kept back), read now; see docs/sse.md.
        shutdown_signals: Signals on which the streams end at once, cleanly,
            while the server they are served by stops (SIGINT and SIGTERM);
            ``()`` for none. Watched from the first stream served on the main
            thread, and only where a server handles the signal (see
            docs/sse.md).

    Raises:
        ValueError: ``buffer_size`` is negative, or ``buffered_users`` or
            ``queue_size`` is below 1, or a cap is not an int >= 1 or ``None``,
            or a shutdown signal is not one this platform has.
        TypeError: A shutdown signal is not an int.
    """

    __slots__ = (
        "__weakref__",
        "_buffers",
        "_clients",
        "_closed",
        "_encode",
        "_epoch",
        "_loop",
        "_loop_thread",
        "_mappings",
        "_positions",
        "_queue_size",
        "_routes",
        "_seq",
        "_signals",
        "_stats",
    )

    def __init__(
        self,
        *,
        buffer_size: int = 64,
        buffered_users: int = 100_000,
        queue_size: int = 256,
        encoder: Encoder = codec.dumps,
        max_clients_per_user: int | None = DEFAULT_PER_USER,
        max_clients: int | Literal["auto"] | None = "auto",
        shutdown_signals: Iterable[int] = DEFAULT_SIGNALS,
    ) -> None:
        if not isinstance(buffer_size, int) or buffer_size < 0:
            raise ValueError(f"buffer_size must be an int >= 0, got {buffer_size!r}")
        if not isinstance(buffered_users, int) or buffered_users < 1:
            raise ValueError(f"buffered_users must be an int >= 1, got {buffered_users!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an int >= 1, got {queue_size!r}")
        self._clients = Clients(max_clients_per_user, max_clients)
        self._queue_size = queue_size
        self._encode = encoder
        self._epoch = new_epoch()
        self._buffers = ResumeBuffers(self._epoch, buffer_size, buffered_users)
        self._mappings = MappingTable(wire_names=encoder is codec.dumps)
        self._routes = self._clients.routes  # the same dict: one lookup per event
        self._seq = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._positions = Positions()
        self._stats = dict.fromkeys(_COUNTERS, 0)  # touched on the loop thread only
        ref = weakref.ref(self)  # the signal handlers must not keep the broadcaster alive

        def end_streams() -> None:
            if (broadcaster := ref()) is not None:
                broadcaster._end_streams()

        self._signals = ShutdownSignals(shutdown_signals, end_streams)

    def __repr__(self) -> str:
        return f"<Broadcaster epoch={self._epoch} clients={len(self._clients)}>"

    # ------------------------------------------------------------------ config

    @property
    def epoch(self) -> str:
        """The token in every id this broadcaster assigns; new per instance."""
        return self._epoch

    @property
    def max_clients(self) -> int | None:
        """The cap on streams in all (``None``: none)."""
        return self._clients.total

    @property
    def max_clients_per_user(self) -> int | None:
        """The cap on one user's streams (``None``: none)."""
        return self._clients.per_user

    def check_capacity(self, user: UUID | None = None) -> None:
        """Refuse a new client now if a cap is reached (the global one, or ``user``'s).

        Raises:
            ClientLimitError: A cap is reached; the refusal is counted.
        """
        self._clients.admit(user)

    @property
    def closed(self) -> bool:
        """Whether `aclose` was called, or a shutdown signal came; then new clients are refused."""
        return self._closed

    def register_mapping(
        self,
        event_cls: type[E],
        *,
        name: str | None = None,
        user: Callable[[E], UUID],
    ) -> None:
        """Stream ``event_cls`` (and subclasses) under ``name`` to ``user(event)``.

        Args:
            event_cls: A `DomainEvent` subclass.
            name: The SSE event name; defaults to the class's wire name.
            user: Returns the UUID of the user the event belongs to.

        Raises:
            TypeError: ``event_cls`` is not a DomainEvent subclass, or ``user``
                is not callable.
            ValueError: The default codec cannot encode ``event_cls`` (it has no
                wire name), or ``name`` is missing or not a plain token.
        """
        self._mappings.register(event_cls, name=name, user=user)

    def event_names(self) -> frozenset[str]:
        """Every SSE event name that can be streamed (valid ``types=`` values)."""
        return self._mappings.names()

    def asgi_app(
        self,
        *,
        authenticate: Authenticate,
        heartbeat: float = 15.0,
        retry_ms: int = 3000,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> SSEApp:
        """Build the plain ASGI app that serves this broadcaster's streams.

        Args:
            authenticate: ``async (scope) -> UUID | None``; required, there is
                no allow-all default. ``None`` means 401.
            heartbeat: Seconds between heartbeat comments on an idle stream.
            retry_ms: The reconnect delay sent to clients in the first frame.
            max_header_bytes: Headers plus query string above this get a 431
                before anything reads them.
        """
        from eventbus_sse._app import SSEApp

        return SSEApp(
            self,
            authenticate=authenticate,
            heartbeat=heartbeat,
            retry_ms=retry_ms,
            max_header_bytes=max_header_bytes,
        )

    # ---------------------------------------------------------------- publish

    def bind_positions(self, source: PositionSource) -> None:
        """Take frame ids from ``source``, the position of the event being handled.

        The ``sse`` plugin binds its bus's `eventbus.EventBus.current_position`
        when it is registered. A broadcaster serves one bus: binding a second,
        different source is refused.

        Raises:
            TypeError: ``source`` is not callable.
            RuntimeError: Another source is bound already.
        """
        self._positions.bind(source)

    def handle(self, event: DomainEvent) -> None:
        """The bus handler: encode ``event`` once and route it; safe from any thread.

        Called from a thread other than the broadcaster's loop, the routing is
        handed to the loop with ``call_soon_threadsafe``, which keeps order.
        An `eventbus.events.OrderGap` is never streamed as a frame: every
        client gets a ``stream.reset`` instead (see `_gap`).
        """
        if isinstance(event, OrderGap):
            self._on_loop(self._gap, self._positions.current(OrderGap)[1])
            return
        mapping = self._mappings.resolve(type(event))
        if mapping is None:
            return
        user = mapping.user(event)
        payload = self._encode(event)
        sse_id, entry = self._positions.current(type(event))
        self._on_loop(self._route, mapping.name, user, payload, sse_id, entry)

    def _on_loop(self, call: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            call(*args)
            return
        try:
            loop.call_soon_threadsafe(call, *args)
        except RuntimeError:  # the loop is closed: nobody can be listening on it
            call(*args)

    def _route(
        self, name: str, user: UUID, payload: bytes, sse_id: str | None, entry: EntryKey | None
    ) -> None:
        stats = self._stats
        stats["events_encoded"] += 1
        seq = self._seq = self._seq + 1
        if sse_id is None:
            sse_id = f"{self._epoch}-{seq}"
        frame = Frame(seq, sse_id, name, build_frame(sse_id, name, payload), entry)
        self._buffers.append(user, frame)
        for sub in self._routes.get(user, ()):
            if sub.types is None or name in sub.types:
                if sub._offer(frame):
                    stats["frames_routed"] += 1
                else:
                    stats["dropped_clients"] += 1
                    _log.warning("SSE client of user %s is too slow: disconnected", user)
                    self._clients.unroute(sub, "overflow")

    def _gap(self, entry: EntryKey | None) -> None:
        """Entries of the order were lost: reset every client, and every resume from before.

        Each connected client gets a ``stream.reset`` (reason ``"gap"``), in
        order with its frames, whatever its ``types``: its stream has holes.
        The resume buffers start anew from the reset, whose local id resumes
        what follows; any id from before the gap resets (`ResumeBuffers.gap`).
        """
        seq = self._seq = self._seq + 1
        gap_id = f"{self._epoch}-{seq}"
        marker = Frame(seq, gap_id, RESET_EVENT, reset_frame(gap_id, "gap"))
        self._buffers.gap(marker, entry, self._routes)
        sent, full = self._clients.offer_all(marker)
        stats = self._stats
        stats["order_gaps"] += 1
        stats["resets_sent"] += sent
        for sub in full:
            stats["dropped_clients"] += 1
            self._clients.unroute(sub, "overflow")
        _log.warning("order gap: %d SSE client(s) sent stream.reset to refetch", sent)

    # ---------------------------------------------------------------- clients

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Route on ``loop`` (default: the running loop) from now on.

        Call it from the loop's own thread: events handled in any other thread
        are handed to the loop with ``call_soon_threadsafe``.
        """
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def connect(
        self,
        user: UUID,
        *,
        types: Iterable[str] | None = None,
        last_event_id: str | None = None,
    ) -> Subscriber:
        """Subscribe a client of ``user``; call on the loop that serves it.

        The first call on a running loop binds the broadcaster to that loop
        (see `bind_loop`), unless the plugin's startup did already.

        Subscribes first, then fills `Subscriber.preamble` with the replay of
        ``user``'s buffered frames after ``last_event_id`` (or a
        ``stream.reset`` frame when that id is unknown: too old, or from
        another epoch), then de-duplicates live frames against the replay. A
        position issued by another worker resumes too: from the buffer when
        this worker has routed it, or, when this worker reads the stream
        behind it and has not routed it yet, with nothing replayed and the
        live frames up to it skipped (whether or not the user has a buffer).

        Raises:
            RuntimeError: The broadcaster is closed.
            ClientLimitError: ``user`` has ``max_clients_per_user`` streams open,
                or the broadcaster ``max_clients``; nothing was subscribed.
        """
        if self._closed:
            raise RuntimeError("the SSE broadcaster is closed")
        self._clients.admit(user)
        if self._loop is None or self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # no running loop: stay unbound
                self.bind_loop()
        sub = Subscriber(user, None if types is None else frozenset(types), self._queue_size)
        self._clients.add(sub)
        if last_event_id:
            self._replay(sub, last_event_id)
        return sub

    def _replay(self, sub: Subscriber, last_event_id: str) -> None:
        replay = self._buffers.replay(sub.user, last_event_id, sub.types)
        sub.preamble = replay.frames
        sub._after = replay.after
        sub._ahead_of = replay.ahead_of
        if replay.reset:
            self._stats["resets_sent"] += 1
        else:
            self._stats["frames_replayed"] += len(replay.frames)

    def disconnect(self, sub: Subscriber) -> None:
        """Forget ``sub`` and free its queue; idempotent."""
        self._clients.remove(sub)

    def _count_sent(self, frames: int, heartbeats: int = 0) -> None:
        self._stats["frames_sent"] += frames
        self._stats["heartbeats_sent"] += heartbeats

    # ---------------------------------------------------------------- lifecycle

    def _serving(self) -> None:
        """A server streams from the broadcaster on the running loop (the app, per stream).

        The first call on the main thread's loop chains onto the handlers a
        server installed for ``shutdown_signals`` (module ``_shutdown``): the
        signal that stops the server first ends every stream, cleanly.
        `aclose` puts the handlers back.
        """
        self._signals.install(asyncio.get_running_loop())

    def _end_streams(self) -> None:
        """A shutdown signal arrived: refuse new clients, end every stream now."""
        if self._closed:
            return
        self._closed = True
        ended = self._clients.end_all()
        _log.info("shutdown signal: %d SSE stream(s) ended", ended)

    async def aclose(self, grace: float = 5.0) -> None:
        """End every stream cleanly and refuse new clients.

        Waits up to ``grace`` seconds for the streams to send their last
        bytes and disconnect.
        """
        self._closed = True
        self._signals.uninstall()
        await self._clients.close_all(grace)

    def statistics(self) -> dict[str, int]:
        """Counters and gauges, in the manner of trio's ``statistics()``.

        Returns:
            ``clients`` (connected now), ``users`` (with a connected client),
            ``queued`` (frames waiting in client queues), ``buffered`` (frames
            in the resume buffers), ``dropped_clients`` (disconnected for being
            too slow), ``frames_sent`` (frames handed to clients, replays
            included), ``frames_routed`` (frames put on client queues),
            ``frames_replayed``, ``events_encoded``, ``resets_sent``,
            ``heartbeats_sent``, ``order_gaps`` (`eventbus.events.OrderGap`
            events handled), and the clients refused at the caps:
            ``refused_per_user`` (429) and ``refused_global`` (503).
        """
        return {
            "clients": len(self._clients),
            "users": len(self._routes),
            "queued": sum(s.queued for s in self._clients.subs),
            "buffered": len(self._buffers),
            **self._stats,
            "refused_per_user": self._clients.refused_user,
            "refused_global": self._clients.refused_global,
        }
