"""Per-user ring buffers of recent frames, for ``Last-Event-ID`` resume.

Memory is bounded twice: ``size`` frames per user, and ``max_users`` buffers.
When a new user's buffer would pass ``max_users``, the buffer created longest
ago is dropped (its user's next resume gets a ``stream.reset``). Lookups scan a
user's buffer from the newest frame: resume is rare, publishing is not.

A client may come back with a position (``<stream id>`` or ``<stream id>.k``)
it got from another worker. Every worker routes the same frames in the same
order, so a buffered position replays what follows it, wherever it was issued.
A position this worker has not routed *yet* (it reads the stream a little
behind the other) replays nothing, and the live frames up to it are skipped as
they arrive. The buffers tell "not yet" from "no longer" with two stream
entries kept besides the frames: the newest entry routed for any user, and the
newest entry of any frame dropped (ring overflow, or a user's whole buffer).
A position is not routed yet when

- its entry is newer than every entry in the user's buffer (the user's frames
  are kept newest last, so the client's cannot have been dropped), or
- its entry is newer than every entry routed here for anyone (this worker has
  not reached it; the user may have no buffer at all, or have had one
  dropped: whatever was dropped is older than the client's position), or
- its entry is the one being routed now, no frame of it or after it was
  dropped, and the user's buffer holds nothing newer (its remaining frames
  come, in the order every worker shares).

Any other unknown position resets: its frame was dropped, or this worker
started after it (the first entry it routed is newer), or the worker has
routed no position yet and cannot tell.

**Order gaps.** When entries of the order were lost before this worker read
them (`eventbus.events.OrderGap`), every buffer is emptied and restarted with
the gap's ``stream.reset`` frame, whose local id resumes what follows it. Every
id from before the gap then resets (reason ``"gap"``): the local ids routed
before it, and any position up to the gap's (routed here, or lost), even one
this worker never saw. Positions after the gap resume as before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import final
from uuid import UUID

from eventbus_sse._frames import (
    RESET_EVENT,
    EntryKey,
    Frame,
    entry_key,
    id_epoch,
    reset_frame,
)

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

    __slots__ = (
        "_buffers",
        "_dropped",
        "_epoch",
        "_floor",
        "_gap_seq",
        "_max_users",
        "_newest",
        "_size",
    )

    def __init__(self, epoch: str, size: int, max_users: int) -> None:
        self._epoch = epoch
        self._size = size
        self._max_users = max_users
        self._buffers: dict[UUID, deque[Frame]] = {}
        # The newest stream entry routed (any user) and of any frame dropped.
        self._newest: EntryKey | None = None
        self._dropped: EntryKey | None = None
        # The last order gap: positions up to _floor and local seqs up to _gap_seq reset.
        self._floor: EntryKey | None = None
        self._gap_seq = 0

    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def append(self, user: UUID, frame: Frame) -> None:
        """Remember ``frame`` as ``user``'s newest."""
        entry = frame.entry
        if entry is not None and (self._newest is None or entry > self._newest):
            self._newest = entry
        buffer = self._buffers.get(user)
        if buffer is None:
            if len(self._buffers) >= self._max_users:
                oldest = self._buffers.pop(next(iter(self._buffers)))  # the oldest-created
                self._drop(_newest_position(oldest)[1])
            buffer = self._buffers[user] = deque(maxlen=self._size)
        if len(buffer) == self._size:  # full: the oldest goes (with size 0, this frame)
            self._drop((buffer[0] if buffer else frame).entry)
        buffer.append(frame)

    def _drop(self, entry: EntryKey | None) -> None:
        if entry is not None and (self._dropped is None or entry > self._dropped):
            self._dropped = entry

    def gap(self, marker: Frame, entry: EntryKey | None, users: Iterable[UUID]) -> None:
        """Forget every frame before an order gap; ``marker``, its reset, starts each buffer.

        Args:
            marker: The ``stream.reset`` frame sent to live clients (a local id).
            entry: The gap's own stream entry, if it came with a position.
            users: Users with connected clients: they hold the marker's id
                now, so each gets a buffer starting with it.
        """
        keys = [k for k in (entry, self._newest, self._floor) if k is not None]
        self._floor = max(keys) if keys else None
        self._gap_seq = marker.seq
        for buffer in self._buffers.values():
            buffer.clear()
            buffer.append(marker)
        for user in users:
            if user not in self._buffers:
                self.append(user, marker)

    def replay(self, user: UUID, last_id: str, types: frozenset[str] | None) -> Replay:
        """The frames of ``user`` after ``last_id``, or a reset if it cannot tell which.

        The reset names its reason (``"epoch"`` for another broadcaster's id,
        ``"gap"`` for an id from before an order gap, ``"stale"`` otherwise)
        and carries the newest buffered id, so the client's next reconnect
        resumes from there.
        """
        frames = list(self._buffers.get(user, ()))
        start = next((i for i in range(len(frames) - 1, -1, -1) if frames[i].id == last_id), None)
        ahead_of = None
        entry = entry_key(last_id) if start is None else None
        if entry is not None and (self._floor is None or entry > self._floor):
            start = self._behind(frames, entry)
            ahead_of = None if start is None else (entry, last_id)
        if start is None:
            newest = frames[-1] if frames else None
            return Replay(
                [reset_frame(newest.id if newest else None, self._reason(last_id, entry))],
                newest.seq if newest else 0,
                reset=True,
            )
        after = frames[start + 1 :]
        return Replay(
            [f.data for f in after if f.name != RESET_EVENT and (types is None or f.name in types)],
            after[-1].seq if after else 0,
            reset=False,
            ahead_of=ahead_of,
        )

    def _reason(self, last_id: str, entry: EntryKey | None) -> str:
        epoch = id_epoch(last_id)
        if epoch is not None and epoch != self._epoch:
            return "epoch"
        if entry is not None:
            return "gap" if self._floor is not None and entry <= self._floor else "stale"
        seq = int(last_id.rpartition("-")[2]) if epoch is not None else 0
        return "gap" if 0 < seq <= self._gap_seq else "stale"

    def _behind(self, frames: list[Frame], entry: EntryKey) -> int | None:
        """Where a client at a position of ``entry`` stands in a buffer that lacks it.

        Returns the index of the newest buffered position (``-1`` for none)
        when this worker has not routed the client's position yet, else
        ``None``: it may have routed and dropped it, or started after it. See
        the module's docstring for the three cases.
        """
        newest = self._newest
        if newest is None:  # no position routed yet: started after it, or behind it?
            return None
        index, key = _newest_position(frames)
        if key is not None and key < entry:
            return index
        if newest < entry:
            return index
        if (
            entry == newest
            and (key is None or key == entry)
            and (self._dropped is None or self._dropped < entry)
        ):
            return index
        return None


def _newest_position(frames: Sequence[Frame]) -> tuple[int, EntryKey | None]:
    """The index and entry of the newest position in ``frames``, or ``(-1, None)``."""
    for i in range(len(frames) - 1, -1, -1):
        key = frames[i].entry
        if key is not None:
            return i, key
    return -1, None
