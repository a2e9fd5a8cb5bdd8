"""Per-origin sequence numbers: which entries repeat, and which are missing.

Every entry's field is named ``<origin>:<seq>``: the appending worker's random
id and its own counter, 1, 2, 3... with no holes (`eventbus_redis._writer`).
A reader remembers the last number it processed per origin, so

* an entry whose number it has processed already is a **repeat** (a writer's
  retry after a lost reply appends a batch again): skipped;
* an entry whose number jumps past the next one shows that entries of that
  origin are **missing**: trimmed (``MAXLEN``) before this reader got to them,
  or deleted (``XDEL``), or refused by Redis for good after the writer
  numbered them. They lay between the last entry this reader processed and
  this one, since a reader reads every entry that is still there, in order.

An origin never seen before is a worker that started, or one whose entries
lie before where this reader started reading. Only a reader that knows every
origin from where it started can tell: it read the stream from its
beginning, or it restored a snapshot whose table (``@origins``) its writer
knew to be complete (``@complete``). Its new origins must start at 1, and a
higher first number is a gap too. A reader that starts at its worker's start
position (no projections) cannot, and counts an origin's gaps from the first
entry of it that it sees.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final, final

from eventbus.events import MAX_COUNT, OrderGap
from eventbus_redis._logtext import clip
from eventbus_redis._settings import RedisBridgeSettings
from eventbus_redis._stream import StreamId, stream_id

__all__ = ["MAX_ORIGINS", "MAX_SEQ", "Losses", "Sequences", "gap_position"]

_log = logging.getLogger("eventbus.redis")

#: Origins remembered, least recently seen evicted first: every worker start
#: is a new origin, and only recent ones can still repeat.
MAX_ORIGINS: Final = 4096
#: The largest sequence number an entry may carry (a signed 64-bit integer's).
MAX_SEQ: Final = 2**63 - 1
# The largest sequence part of a stream id (an unsigned 64-bit integer).
_MAX_ID_SEQ: Final = 2**64 - 1


@final
class Sequences:
    """The last sequence number processed per origin, for one reader.

    Attributes:
        complete: Whether every origin with entries from where the reader
            started is known, so an unknown origin's first number must be 1.
            Cleared once an origin is evicted (more than `MAX_ORIGINS`).
    """

    __slots__ = ("_last", "complete")

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}
        self.complete = False

    def reset(self, table: Mapping[bytes, int], complete: bool) -> None:
        """Start from ``table`` (origin -> last number processed), e.g. a snapshot's."""
        self._last = dict(table)
        self.complete = complete and len(self._last) < MAX_ORIGINS

    def table(self) -> dict[bytes, int]:
        """A copy of the table (origin -> last number processed), for a snapshot."""
        return dict(self._last)

    def advance(self, origin: bytes, seq: int) -> int | None:
        """Record that the entry ``seq`` of ``origin`` is processed.

        Returns:
            ``None`` if it is a repeat (not recorded), else how many entries
            of ``origin`` are missing right before it (usually 0).
        """
        last_seen = self._last
        last = last_seen.get(origin)
        if last is None:
            missing = seq - 1 if self.complete else 0
        elif seq <= last:
            return None
        else:
            missing = seq - last - 1
            del last_seen[origin]  # re-inserted below: least recently seen first
        last_seen[origin] = seq
        if len(last_seen) > MAX_ORIGINS:
            del last_seen[next(iter(last_seen))]
            # The evicted origin would look new if it came back.
            self.complete = False
        return missing if missing > 0 else 0


@final
class Losses:
    """Counts the entries a reader lost (``trimmed``), warning once per streak.

    A streak starts at a gap and ends when the reader is back at the tail: a
    reply without a gap and shorter than ``read_count`` (everything there
    was), or an empty one. Then an info line tells the streak's total.

    Args:
        settings: The bridge's settings (stream name, ``maxlen``, ``read_count``).
        stats: The bridge's counters; this keeps ``trimmed``.
    """

    __slots__ = ("_settings", "_stats", "streak")

    def __init__(self, settings: RedisBridgeSettings, stats: dict[str, int]) -> None:
        self._settings = settings
        self._stats = stats
        #: Entries lost since the streak's warning (0: no streak).
        self.streak = 0

    def lost(self, origin: bytes, missing: int, entry_id: bytes) -> OrderGap:
        """Count ``missing`` entries of ``origin`` lost before ``entry_id``; the gap to deliver."""
        self._stats["trimmed"] += missing
        name = origin.decode(errors="replace") or "?"
        if not self.streak:
            settings = self._settings
            _log.warning(
                "Redis bridge lost %d entries of origin %s before entry %s: removed from "
                "stream %r before this worker read them (trimmed by maxlen=%d past a slow "
                "reader, or deleted). Fleet handlers get an OrderGap; further losses are "
                "counted in statistics()['trimmed'] until this reader catches up",
                missing,
                clip(name),
                entry_id.decode(errors="replace"),
                settings.stream,
                settings.maxlen,
            )
        self.streak += missing
        return OrderGap(origin=name, missing=min(missing, MAX_COUNT))

    def replied(self, count: int, gaps: int) -> None:
        """After a reply of ``count`` entries with ``gaps`` gaps: end a streak at the tail."""
        if self.streak and not gaps and count < self._settings.read_count:
            _log.info(
                "Redis bridge reader caught up with stream %r; %d entries were lost in all "
                "since the last warning",
                self._settings.stream,
                self.streak,
            )
            self.streak = 0


def gap_position(entry: StreamId, last: bytes | None) -> str:
    """The fleet position of an `eventbus.events.OrderGap` found at ``entry``.

    The stream id just below ``entry``: the missing entries lay between the
    last entry processed (``last``) and ``entry``, so no entry this reader
    processes has that id, and it orders between the two. When that id is
    ``last`` itself (another origin's gap, noticed only at its next entry),
    ``<last>.0``: derived positions count from ``.1``, so no other event has
    it either.
    """
    ms, seq = entry
    below = (ms, seq - 1) if seq else (ms - 1, _MAX_ID_SEQ)
    if last is None or stream_id(last) < below:
        return f"{below[0]}-{below[1]}"
    return f"{last.decode()}.0"
