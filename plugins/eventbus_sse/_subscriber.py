"""One connected client of the broadcaster: a bounded queue with a waker.

The router puts frames with `Subscriber._offer`, which never waits: a full
queue returns ``False`` and the broadcaster drops the client. The transport
(the ASGI app, or any other) takes frames with `Subscriber.next_batch`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, final
from uuid import UUID

from eventbus_sse._frames import EntryKey, Frame

__all__ = ["Subscriber"]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@final
class Subscriber:
    """One connected client: its user, its type filter and its bounded queue.

    Obtained from `Broadcaster.connect`; the ASGI app drives it, and so can any
    other transport. Always hand it back with `Broadcaster.disconnect`.

    Attributes:
        user: The authenticated user this client receives events for.
        types: SSE event names the client asked for, or ``None`` for all.
        preamble: Frames to send before any live frame: the replay after the
            client's ``Last-Event-ID``, or a ``stream.reset`` frame.
        reason: Why the subscriber was closed (``"overflow"``, ``"shutdown"``,
            ``"disconnected"``), or ``None`` while it is open.
    """

    __slots__ = (
        "_after",
        "_ahead_of",
        "_done",
        "_frames",
        "_limit",
        "_waiter",
        "preamble",
        "reason",
        "types",
        "user",
    )

    def __init__(self, user: UUID, types: frozenset[str] | None, limit: int) -> None:
        self.user: Final = user
        self.types: Final = types
        self.preamble: list[bytes] = []
        self.reason: str | None = None
        self._limit = limit
        self._frames: deque[Frame] = deque()
        self._after = 0
        # (entry, id) of a position the client saw on a worker ahead of this one.
        self._ahead_of: tuple[EntryKey, str] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Subscriber user={self.user} queued={len(self._frames)} reason={self.reason}>"

    @property
    def queued(self) -> int:
        """Frames waiting to be sent to this client."""
        return len(self._frames)

    def _offer(self, frame: Frame) -> bool:
        """Queue ``frame`` without ever waiting; ``False`` means the queue is full."""
        frames = self._frames
        if len(frames) >= self._limit:
            return False
        frames.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def _close(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self._frames.clear()  # free the memory now, not when the stream task notices
        for fut in (self._waiter, self._done):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def closed_future(self) -> asyncio.Future[None]:
        """A future resolved once the broadcaster closes this subscriber.

        A plain future, not a task: cheap to race against others with
        `asyncio.wait`.
        """
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            if self.reason is not None:
                self._done.set_result(None)
        return self._done

    async def wait_closed(self) -> None:
        """Return once the broadcaster closed this subscriber (overflow, shutdown)."""
        await self.closed_future()

    async def next_batch(self, idle: float) -> list[Frame] | None:
        """Wait up to ``idle`` seconds for frames and take all queued ones.

        Returns:
            The frames, in order (empty if ``idle`` seconds passed first: time for a
            heartbeat), or ``None`` once the subscriber is closed.
        """
        if not self._frames and self.reason is None:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(idle, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self.reason is not None:
            return None
        frames = list(self._frames)
        self._frames.clear()
        if (self._after or self._ahead_of is not None) and frames:
            frames = self._skip_covered(frames)
        return frames

    def _skip_covered(self, frames: list[Frame]) -> list[Frame]:
        """Drop live frames the client has already: replayed, or seen on another worker.

        Seqs and entries only grow, so once a frame is past the replay (or
        past the client's position) every later one is too, and the check ends.
        """
        kept: list[Frame] = []
        for frame in frames:
            if frame.seq <= self._after:
                continue
            self._after = 0
            ahead = self._ahead_of
            if ahead is not None:
                entry = frame.entry
                if entry is not None:
                    if entry == ahead[0]:
                        # Within the client's entry, it saw the frames up to its
                        # own: they come in the same order on every worker.
                        if frame.id == ahead[1]:
                            self._ahead_of = None
                        continue
                    if entry < ahead[0]:
                        continue
                    self._ahead_of = None
            kept.append(frame)
        return kept
