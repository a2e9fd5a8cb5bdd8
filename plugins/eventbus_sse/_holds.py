"""Frames held back until their event's id at the origin is known.

Why: a worker that publishes an event the Redis bridge forwards learns the
event's stream id only when it reads its own entry back. Streaming the event at
once would give that worker's clients a local id, which no other worker knows,
so they could not resume anywhere else; and it would put the event before
entries that precede it in the stream. Instead the bridge holds the event:

1. `Holds.hold` (from the bridge's handler, which runs first): the frames of
   the event, and of the events its handlers derive from it, are kept in order.
2. `Holds.finish` (from the bridge's last handler): the event's dispatch is
   over, so no more frames will join the group.
3. `Holds.settle` (from the bridge's reader, when the entry comes back): the
   group gets the stream id. Once its dispatch is over its frames are routed
   as ``id``, ``id.1``, ... exactly as every other worker routes them.

Stream order without stalling the reader: a settled group whose dispatch is
still running waits in an ordered queue, and the frames of later stream
entries (routed under `Broadcaster.id_scope`) queue behind it. The bus keeps
delivering; only those SSE frames wait.

A group not settled within its timeout (Redis unreachable, the event dropped)
is routed with local ids. A frame belongs to the group of its dispatch chain's
root (`eventbus.EventBus.event_chain`); frames arriving after the group was
routed get local ids. Nothing here runs while no event is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, final
from uuid import UUID

from eventbus_sse._frames import check_base_id

if TYPE_CHECKING:
    from eventbus import DomainEvent

__all__ = ["Held", "HoldMethods", "Holds", "IdScope"]

_log = logging.getLogger("eventbus.sse")

#: A frame waiting for its id: (SSE event name, user, encoded payload).
Pending = tuple[str, UUID, bytes]
#: Routes one frame (name, user, payload, SSE id or None for a local id).
Route = Callable[[str, UUID, bytes, "str | None"], None]


@final
class IdScope:
    """Ids derived from an externally supplied base id: ``base``, ``base.1``, ..."""

    __slots__ = ("base", "count")

    def __init__(self, base: str) -> None:
        self.base = base
        self.count = 0

    def next_id(self) -> str:
        """The next id: the base itself first, then suffixed ones."""
        count = self.count
        self.count = count + 1
        return self.base if count == 0 else f"{self.base}.{count}"


@final
class Held:
    """The frames of one held event's dispatch; opaque to the holder."""

    __slots__ = ("base_id", "deadline", "dispatched", "frames", "queued", "root", "routed")

    def __init__(self, root: DomainEvent, deadline: float) -> None:
        self.root = root  # kept alive, so its id() is not reused while registered
        self.deadline = deadline
        self.frames: list[Pending] = []
        self.base_id: str | None = None
        self.dispatched = False
        self.queued = False  # settled, waiting in the order queue for its dispatch
        self.routed = False


#: A frame waiting in the order queue behind a settled group: (name, user, payload, id).
Queued = tuple[str, UUID, bytes, "str | None"]


@final
class Holds:
    """The held groups of one broadcaster, and the queue that keeps stream order.

    One timer at a time (the sweep) routes groups whose deadline passed.

    Args:
        route: Routes a frame; called on the broadcaster's loop thread.
    """

    __slots__ = (
        "_chain",
        "_deadlines",
        "_lock",
        "_order",
        "_route",
        "_timer",
        "groups",
        "queue",
    )

    def __init__(self, route: Route) -> None:
        self._route = route
        self._chain: Callable[[], Sequence[DomainEvent]] | None = None
        #: id(root) -> group; empty unless something is held (the hot path tests it).
        self.groups: dict[int, Held] = {}
        self._deadlines: list[tuple[float, int, Held]] = []  # a heap
        self._order = itertools.count()
        #: Settled groups still dispatching, and the frames behind them; loop thread only.
        self.queue: deque[Held | Queued] = deque()
        # The sweep timer: its loop, handle and due time; None when none is armed.
        self._timer: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle, float] | None = None
        # Guards groups against the loop thread racing handlers on other threads.
        self._lock: Final = threading.Lock()

    def hold(
        self, root: DomainEvent, chain: Callable[[], Sequence[DomainEvent]], timeout: float
    ) -> Held | None:
        """Register ``root``'s group; thread-safe. The caller arms the sweep (`arm`).

        Returns ``None`` when ``root`` is held already (the same object
        published again while its first dispatch is held).
        """
        self._chain = chain
        held = Held(root, time.monotonic() + timeout)
        with self._lock:
            if id(root) in self.groups:
                return None
            self.groups[id(root)] = held
            heapq.heappush(self._deadlines, (held.deadline, next(self._order), held))
        return held

    def armed(self, loop: asyncio.AbstractEventLoop, held: Held) -> bool:
        """Whether a sweep on ``loop`` will run by ``held``'s deadline.

        A timer on a closed loop (the broadcaster was rebound) never fires.
        """
        timer = self._timer
        return (
            timer is not None
            and timer[0] is loop
            and not loop.is_closed()
            and timer[2] <= held.deadline
        )

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time the sweep for the earliest deadline, on ``loop``; on the loop thread."""
        with self._lock:
            due = self._deadlines[0][0] if self._deadlines else None
        timer = self._timer
        if timer is not None:
            if due is not None and timer[0] is loop and not loop.is_closed() and timer[2] <= due:
                return  # armed early enough already
            timer[1].cancel()
            self._timer = None
        if due is not None:
            handle = loop.call_later(max(due - time.monotonic(), 0.0), self._sweep, loop)
            self._timer = (loop, handle, due)

    def drop(self, held: Held) -> None:
        """Forget ``held`` without routing anything (the holder could not arm a sweep)."""
        with self._lock:
            held.routed = True
            if self.groups.get(id(held.root)) is held:
                del self.groups[id(held.root)]

    def claim(self, name: str, user: UUID, payload: bytes) -> bool:
        """Take a frame into its dispatch root's group; ``False`` if it has none."""
        chain = self._chain() if self._chain is not None else ()
        held = self.groups.get(id(chain[0])) if chain else None
        if held is None or held.root is not chain[0]:
            return False
        with self._lock:
            if held.routed or held.dispatched:
                # Its dispatch is over: a task it started, or the same event
                # object published again. Neither is this group's.
                return False
            held.frames.append((name, user, payload))
            return True

    def defer(self, frame: Queued) -> bool:
        """Queue a frame behind a settled group still dispatching; on the loop thread.

        Returns:
            Whether it was queued (``False``: nothing is waiting, route it now).
        """
        if not self.queue:
            return False
        self.queue.append(frame)
        return True

    def finish(self, root: DomainEvent, loop: asyncio.AbstractEventLoop | None) -> None:
        """``root``'s dispatch is over; thread-safe. Advances the order queue."""
        held = self.groups.get(id(root))
        if held is None or held.root is not root:
            return
        with self._lock:
            held.dispatched = True
            queued = held.queued
        if queued and loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens
                loop.call_soon_threadsafe(self.flush)

    def settle(self, held: Held, base_id: str | None) -> None:
        """Give ``held`` its id; route it once its dispatch is over. On the loop thread.

        Raises:
            ValueError: ``base_id`` is not a valid id.
        """
        if base_id is not None:
            check_base_id(base_id)
        with self._lock:
            if held.routed:
                return
            held.base_id = base_id
            now = held.dispatched and not self.queue
            held.queued = not now
        if now:
            self.route(held)
        else:
            self.queue.append(held)

    def flush(self) -> None:
        """Route the order queue up to the first group still dispatching; on the loop."""
        queue = self.queue
        while queue:
            head = queue[0]
            if isinstance(head, Held):
                if not (head.routed or head.dispatched):
                    return
                queue.popleft()
                self.route(head)
            else:
                queue.popleft()
                self._safe_route(*head)

    def route(self, held: Held) -> None:
        """Route ``held``'s frames now (ids from its base id, else local); idempotent."""
        with self._lock:
            if held.routed:
                return
            held.routed = True
            frames, held.frames = held.frames, []
            if self.groups.get(id(held.root)) is held:
                del self.groups[id(held.root)]
        scope = IdScope(held.base_id) if held.base_id is not None else None
        for name, user, payload in frames:
            self._safe_route(name, user, payload, scope.next_id() if scope else None)
        if held.queued and self.queue and self.queue[0] is held:
            self.flush()  # what waited behind it may go now

    def route_all(self) -> None:
        """Route every group and queued frame now, with what ids are known (shutdown)."""
        with self._lock:
            pending = list(self.groups.values())
        for held in pending:
            self.route(held)
        self._flush_through(None)

    def _safe_route(self, name: str, user: UUID, payload: bytes, sse_id: str | None) -> None:
        try:
            self._route(name, user, payload, sse_id)
        except Exception:  # routing runs in a timer or the bridge's reader
            _log.exception("SSE broadcaster failed to route a held %s frame", name)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = time.monotonic()
        due: list[Held] = []
        with self._lock:
            heap = self._deadlines
            while heap and (heap[0][2].routed or heap[0][0] <= now):
                due.append(heapq.heappop(heap)[2])
        for held in due:
            if held.queued and not held.routed:
                self._flush_through(held)  # in stream order, with what waits before it
            else:
                self.route(held)  # a no-op for groups routed already
        self.flush()  # routed groups no longer block the queue
        self.arm(loop)

    def _flush_through(self, target: Held | None) -> None:
        """Route the queue in order, dispatching or not, through ``target`` (None: all)."""
        queue = self.queue
        while queue:
            head = queue.popleft()
            if isinstance(head, Held):
                self.route(head)
                if head is target:
                    return
            else:
                self._safe_route(*head)


class HoldMethods:
    """`Broadcaster`'s hold API (kept here with the mechanism it drives)."""

    __slots__ = ()  # the state lives in Broadcaster's slots
    _closed: bool
    _held_groups: dict[int, Held]
    _holds: Holds
    _loop: asyncio.AbstractEventLoop | None
    _loop_thread: int

    def hold(
        self,
        root: DomainEvent,
        *,
        chain: Callable[[], Sequence[DomainEvent]],
        timeout: float,
    ) -> Held | None:
        """Hold the frames of ``root`` and its derived events (module ``_holds``).

        For an origin that assigns ids after the event is published here: the
        Redis bridge holds each event it forwards, calls `finish` when its
        dispatch ends and `settle` when it reads the entry back. Thread-safe;
        call it from a handler that runs before this broadcaster's. Frames
        derived later by tasks the handlers start (``concurrent=True``
        handlers included) are not held: they get local ids.

        Args:
            root: The event being dispatched (a root event).
            chain: The bus's ``event_chain``: a frame is ``root``'s when its
                chain starts with ``root``.
            timeout: Seconds after which the frames go out anyway, with local
                ids unless the id is known by then.

        Returns:
            The handle for `settle` and `release`, or ``None`` (nothing is held)
            when the broadcaster is closed or not bound to a loop, or ``root``
            is held already.
        """
        loop = self._loop
        if loop is None or loop.is_closed() or self._closed:
            return None
        held = self._holds.hold(root, chain, timeout)
        if held is None:
            return None
        if threading.get_ident() == self._loop_thread:
            self._holds.arm(loop)
        elif not self._holds.armed(loop, held):
            try:
                loop.call_soon_threadsafe(self._holds.arm, loop)
            except RuntimeError:  # closed meanwhile: nobody is listening
                self._holds.drop(held)
                return None
        return held

    def finish(self, root: DomainEvent) -> None:
        """Mark the dispatch of held ``root`` as over (a no-op for others); thread-safe."""
        if self._held_groups:
            self._holds.finish(root, self._loop)

    def settle(self, held: Held, base_id: str | None) -> None:
        """Give ``held`` its id; its frames stream once its dispatch is over.

        Until then, frames of later stream entries (under `id_scope`) wait
        behind it, so clients see stream order. Call on the broadcaster's loop.

        Raises:
            ValueError: ``base_id`` is not a valid id (see `check_base_id`).
        """
        self._holds.settle(held, base_id)

    def release(self, held: Held, base_id: str | None) -> None:
        """Stream ``held``'s frames now, with ids from ``base_id`` (``None``: local ids).

        Idempotent; call on the broadcaster's loop thread.

        Raises:
            ValueError: ``base_id`` is not a valid id (see `check_base_id`).
        """
        if not held.routed:
            held.base_id = None if base_id is None else check_base_id(base_id)
        self._holds.route(held)
