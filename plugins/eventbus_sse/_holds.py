"""Frames held back until their event's id at the origin is known.

Why: a worker that publishes an event the Redis bridge forwards learns the
event's stream id only when it reads its own entry back. Streaming the event at
once would give that worker's clients a local id, which no other worker knows,
so they could not resume anywhere else. Instead the bridge `Holds.hold`s the
event: the frames of the event, and of the events its handlers derive from it,
are kept in order until the bridge `Holds.release`s them with the stream id.
They then get ``id``, ``id.1``, ... exactly as on every other worker, and in
stream order. Released without an id (Redis unreachable past the timeout, or
the event dropped), they stream with local ids, as events did before.

A frame belongs to the group of its dispatch chain's root
(`eventbus.EventBus.event_chain`). Nothing here runs while no event is held.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, final
from uuid import UUID

from eventbus_sse._frames import check_base_id

if TYPE_CHECKING:
    from eventbus import DomainEvent

__all__ = ["Held", "Holds", "IdScope"]

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

    __slots__ = ("deadline", "frames", "released", "root", "scope")

    def __init__(self, root: DomainEvent, deadline: float) -> None:
        self.root = root  # kept alive, so its id() is not reused while registered
        self.deadline = deadline
        self.frames: list[Pending] = []
        self.released = False
        self.scope: IdScope | None = None


@final
class Holds:
    """The held groups of one broadcaster.

    One timer at a time (the sweep) expires groups whose id did not come in
    time, and forgets released groups a timeout after their release: until
    then a frame derived late (a handler still running on another thread, or
    awaiting, when the id came back) still gets the group's next id. With
    nothing held or recently released, `claim` is never called (`__bool__`).

    Args:
        route: Routes a frame; called on the broadcaster's loop thread.
        schedule: Calls ``callback`` after ``delay`` seconds on the
            broadcaster's loop; called on the loop thread.
    """

    __slots__ = (
        "_chain",
        "_groups",
        "_lock",
        "_pending",
        "_released",
        "_route",
        "_schedule",
        "_sweeping",
        "_timeout",
    )

    def __init__(
        self, route: Route, schedule: Callable[[float, Callable[[], object]], object]
    ) -> None:
        self._route = route
        self._schedule = schedule
        self._chain: Callable[[], Sequence[DomainEvent]] | None = None
        self._groups: dict[int, Held] = {}
        self._pending: deque[Held] = deque()  # by deadline: timeouts are equal
        self._released: deque[tuple[float, Held]] = deque()  # (forget at, group)
        self._sweeping = False
        self._timeout = 1.0
        # Guards a group's frames against a release on the loop thread racing
        # a handler on another thread; taken only while some event is held.
        self._lock: Final = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._groups)

    def hold(
        self, root: DomainEvent, chain: Callable[[], Sequence[DomainEvent]], timeout: float
    ) -> tuple[Held, bool]:
        """Register ``root``'s group; thread-safe.

        Returns:
            The group, and whether the caller must start the sweep: call
            `sweep` on the loop (once) when true.
        """
        self._chain, self._timeout = chain, timeout
        held = Held(root, time.monotonic() + timeout)
        with self._lock:
            self._groups[id(root)] = held
            self._pending.append(held)
            start, self._sweeping = not self._sweeping, True
        return held, start

    def claim(self, name: str, user: UUID, payload: bytes) -> tuple[bool, str | None]:
        """Take a frame into its held group, if it has one.

        Returns:
            ``(True, None)`` when the frame was held; else ``(False, id)``, with
            the id to route it under (a released group's next id, or ``None``).
        """
        chain = self._chain() if self._chain is not None else ()
        held = self._groups.get(id(chain[0])) if chain else None
        if held is None or held.root is not chain[0]:
            return False, None
        with self._lock:
            if not held.released:
                held.frames.append((name, user, payload))
                return True, None
            return False, held.scope.next_id() if held.scope is not None else None

    def release(self, held: Held, base_id: str | None) -> None:
        """Route ``held``'s frames, with ids from ``base_id`` (or local ones); idempotent.

        Call on the broadcaster's loop thread.

        Raises:
            ValueError: ``base_id`` is not a valid id.
        """
        scope = IdScope(check_base_id(base_id)) if base_id is not None else None
        with self._lock:
            if held.released:
                return
            held.released, held.scope = True, scope
            frames, held.frames = held.frames, []
            ids = [scope.next_id() if scope is not None else None for _ in frames]
            self._released.append((time.monotonic() + self._timeout, held))
        for (name, user, payload), sse_id in zip(frames, ids, strict=True):
            self._route(name, user, payload, sse_id)

    def sweep(self) -> None:
        """Expire overdue groups, forget old released ones, and time the next sweep."""
        now = time.monotonic()
        pending, released, groups = self._pending, self._released, self._groups
        while pending and (pending[0].released or pending[0].deadline <= now):
            self.release(pending.popleft(), None)  # a no-op for released ones
        with self._lock:
            while released and released[0][0] <= now:
                held = released.popleft()[1]
                if groups.get(id(held.root)) is held:
                    del groups[id(held.root)]
            due = [
                d
                for d in (
                    pending[0].deadline if pending else None,
                    released[0][0] if released else None,
                )
                if d is not None
            ]
            self._sweeping = bool(due)
        if due:
            self._schedule(max(min(due) - now, 0.0), self.sweep)
