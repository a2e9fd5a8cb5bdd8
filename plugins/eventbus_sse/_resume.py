"""Per-user ring buffers of recent frames, for ``Last-Event-ID`` resume.

Memory is bounded twice: ``size`` frames per user, and ``max_users`` buffers.
When a new user's buffer would pass ``max_users``, the buffer created longest
ago is dropped (its user's next resume gets a ``stream.reset``). Lookups scan a
user's buffer from the newest frame: resume is rare, publishing is not.

A client may come back with a position (``<stream id>`` or ``<stream id>.k``)
it got from another worker. Every worker routes the same frames in the same
order, so a buffered position replays what follows it, wherever it was issued.
A position this worker has not routed *yet* (its entry is newer than every
entry in the user's buffer: this worker reads the stream a little behind the
other) replays nothing, and the live frames up to it are skipped as they
arrive. Any other unknown position resets: its frame was evicted, or this
worker started after it.
"""

from __future__ import annotations

from collections import deque
from typing import final
from uuid import UUID

from eventbus_sse._frames import EntryKey, Frame, entry_key, id_epoch, reset_frame

__all__ = ["Replay", "ResumeBuffers"]


@final
class Replay:
    """What a resuming client is sent before live frames.

    Attributes:
        frames: Encoded frames: the buffered ones after the client's id (type
            filter applied), or one ``stream.reset`` frame.
        after: Live frames with a ``seq`` up to this one are already covered.
        reset: Whether ``frames`` is a ``stream.reset``.
        ahead_of: The client's position (its entry, its id) when this worker
            has not routed it yet: live frames up to it are covered too (it
            saw them on another worker).
    """

    __slots__ = ("after", "ahead_of", "frames", "reset")

    def __init__(
        self,
        frames: list[bytes],
        after: int,
        reset: bool,
        ahead_of: tuple[EntryKey, str] | None = None,
    ) -> None:
        self.frames = frames
        self.after = after
        self.reset = reset
        self.ahead_of = ahead_of


@final
class ResumeBuffers:
    """The recent frames of each user, newest last.

    Args:
        epoch: The owning broadcaster's epoch (ids of other epochs are foreign).
        size: Frames kept per user.
        max_users: Users with a buffer, at most.
    """

    __slots__ = ("_buffers", "_epoch", "_max_users", "_size")

    def __init__(self, epoch: str, size: int, max_users: int) -> None:
        self._epoch = epoch
        self._size = size
        self._max_users = max_users
        self._buffers: dict[UUID, deque[Frame]] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def append(self, user: UUID, frame: Frame) -> None:
        """Remember ``frame`` as ``user``'s newest."""
        buffer = self._buffers.get(user)
        if buffer is None:
            if len(self._buffers) >= self._max_users:
                del self._buffers[next(iter(self._buffers))]  # the oldest-created buffer
            buffer = self._buffers[user] = deque(maxlen=self._size)
        buffer.append(frame)

    def replay(self, user: UUID, last_id: str, types: frozenset[str] | None) -> Replay:
        """The frames of ``user`` after ``last_id``, or a reset if it cannot tell which.

        The reset names its reason (``"epoch"`` for another broadcaster's id,
        ``"stale"`` otherwise) and carries the newest buffered id, so the
        client's next reconnect resumes from there.
        """
        frames = list(self._buffers.get(user, ()))
        start = next((i for i in range(len(frames) - 1, -1, -1) if frames[i].id == last_id), None)
        ahead_of = None
        entry = entry_key(last_id) if start is None else None
        if entry is not None:
            start = _behind(frames, entry)
            ahead_of = None if start is None else (entry, last_id)
        if start is None:
            epoch = id_epoch(last_id)
            reason = "epoch" if epoch is not None and epoch != self._epoch else "stale"
            newest = frames[-1] if frames else None
            return Replay(
                [reset_frame(newest.id if newest else None, reason)],
                newest.seq if newest else 0,
                reset=True,
            )
        after = frames[start + 1 :]
        return Replay(
            [f.data for f in after if types is None or f.name in types],
            after[-1].seq if after else 0,
            reset=False,
            ahead_of=ahead_of,
        )


def _behind(frames: list[Frame], entry: EntryKey) -> int | None:
    """Where a client at a position of ``entry`` stands in a buffer that lacks it.

    Returns the index of the newest buffered position when every buffered
    position belongs to an older entry (this worker has not delivered
    ``entry`` yet), else ``None``: the buffer has no position, or it should
    have held the client's (evicted, or this worker started after it).
    """
    for i in range(len(frames) - 1, -1, -1):
        key = entry_key(frames[i].id)
        if key is not None:
            return i if key < entry else None
    return None
