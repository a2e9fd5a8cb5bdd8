"""The bridge's inbound half: bootstrap, then every entry to ``bus.deliver``, in order.

Bootstrap (once, retried with backoff until Redis answers):

1. The *start position* is Redis's clock at the moment this worker started
   (``TIME`` minus the time elapsed since, so a reader that first connects
   after an outage still starts there, not at the tail: nothing published
   while the worker ran is skipped).
2. Without projections (``bus.projections()``) the reader reads from there.
3. With projections it restores the newest snapshot at or before the start
   position (`eventbus_redis._snapshots`) and reads from the snapshot's
   position; with none, from the stream's beginning, warning if the stream was
   trimmed already (the state may then be incomplete).
4. ``caught_up`` is set once it has processed the stream's tail as of then.

Then it ``XREAD BLOCK``s from the last id it processed and hands every entry,
its own included, to ``bus.deliver(event, id, local=origin is ours,
headers=...)``, one at a time, with the observer headers the entry carries
(`eventbus_redis._headers`). Per-origin sequence numbers (`eventbus_redis._sequences`) tell it which
entries repeat (a writer's retry after a lost reply): skipped; and which are
missing (trimmed before it read them): counted as ``trimmed``, warned about
once per streak, and delivered as an `eventbus.events.OrderGap` right before
the entry that showed the gap. It logs and skips malformed entries, showing a
bounded preview of them (`eventbus_redis._logtext`). Between two entries it
writes a snapshot when one is due; the projections' ``snapshot()`` runs in a
worker thread meanwhile, so deliveries pause but the loop does not.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, final

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from eventbus import DomainEvent, EventBus, codec
from eventbus.events import OrderGap
from eventbus.exceptions import DecodeError
from eventbus_redis._headers import read
from eventbus_redis._logtext import clip, failure, preview
from eventbus_redis._sequences import MAX_SEQ, Losses, Sequences, gap_position
from eventbus_redis._settings import RedisBridgeSettings
from eventbus_redis._snapshots import SnapshotStore, capture, restore
from eventbus_redis._stream import Backoff, StreamId, as_bytes, entries, stream_id
from eventbus_redis._writer import Kept

__all__ = ["Reader"]

_log = logging.getLogger("eventbus.redis")

#: The largest sequence part of a stream id: ``<ms>-<this>`` is the last id of a millisecond.
_LAST_SEQ: Final = 2**64 - 1

#: An entry as the reader hands it on: its event (``None``: malformed), whether
#: it is this worker's own, the gap it showed, if any, and its headers, if any.
_Entry = tuple[DomainEvent | None, bool, OrderGap | None, Mapping[str, str] | None]


@final
class Reader:
    """Reads the stream for one bus, from its start position, for good.

    Args:
        bus: The bus to deliver to.
        client: A ``redis.asyncio.Redis`` that does not decode responses.
        settings: The bridge's settings.
        origin: This worker's origin id: its own entries are delivered as local.
        own: The writer's ``own(seq)``: the event behind an own entry and its
            headers, if it still has them (saves decoding it).
        stats: The bridge's counters; the reader keeps ``received``, ``own``,
            ``duplicates``, ``malformed``, ``trimmed``, ``reconnects`` and
            ``snapshots``.
    """

    __slots__ = (
        "_bus",
        "_client",
        "_losses",
        "_origin",
        "_own",
        "_progress",
        "_projections",
        "_sequences",
        "_settings",
        "_since",
        "_snapshot_at",
        "_snapshot_key",
        "_snapshots",
        "_started",
        "_stats",
        "_target",
        "caught_up",
        "last_id",
    )

    def __init__(
        self,
        bus: EventBus,
        client: Redis,
        settings: RedisBridgeSettings,
        origin: bytes,
        own: Callable[[int], Kept | None],
        stats: dict[str, int],
    ) -> None:
        self._bus = bus
        self._client = client
        self._settings = settings
        self._origin = origin
        self._own = own
        self._stats = stats
        self._snapshots = SnapshotStore(client, settings)
        self._projections = bus.projections()
        self._sequences = Sequences()
        self._losses = Losses(settings, stats)
        self._started = time.monotonic()
        self._target: StreamId | None = None
        self._since = 0  # entries since the newest snapshot this reader knows of
        self._snapshot_at = time.monotonic()
        self._snapshot_key: StreamId = (0, 0)
        self._progress = asyncio.Event()
        #: Set once the entries up to the tail as of bootstrap are delivered.
        self.caught_up = asyncio.Event()
        #: The id of the last entry processed (the next ``XREAD`` starts after it).
        self.last_id: bytes | None = None

    async def run(self) -> None:
        """Bootstrap (retrying until Redis answers), then read until cancelled."""
        await self._bootstrap()
        await self._read()

    async def reached(self, position: bytes) -> None:
        """Return once the entry at ``position`` (or a later one) has been processed."""
        target = stream_id(position)
        while self.last_id is None or stream_id(self.last_id) < target:
            self._progress.clear()
            await self._progress.wait()

    # ------------------------------------------------------------- bootstrap

    async def _bootstrap(self) -> None:
        backoff = Backoff(
            self._settings.backoff_initial,
            self._settings.backoff_max,
            "Redis bridge cannot bootstrap (%s); retrying, startup may time out",
        )
        while True:
            try:
                await self._bootstrap_once()
            except (RedisError, OSError) as exc:
                await backoff.wait(exc)
                continue
            if backoff.succeeded():
                self._stats["reconnects"] += 1
            return

    async def _bootstrap_once(self) -> None:
        seconds, micros = await self._client.time()
        # Entry ids are Redis's clock: the start position is that clock's
        # reading when this worker started, whenever it first reached Redis.
        # Rounded down (the elapsed time up, and TIME was read before its reply
        # came), then given as the last id of the millisecond before: XREAD is
        # exclusive, and an entry appended as the worker started may carry
        # exactly ``<first ms>-0``.
        elapsed = math.ceil((time.monotonic() - self._started) * 1000)
        first_ms = seconds * 1000 + micros // 1000 - elapsed
        start = b"%d-%d" % (first_ms - 1, _LAST_SEQ) if first_ms > 0 else b"0-0"
        tail, gone = await self._stream_info()
        first = start
        # Without projections it reads from its start: origins that wrote
        # before it are new to it, wherever their numbers are.
        self._sequences.reset({}, complete=False)
        if self._projections:
            snapshot = await self._snapshots.at_or_before(start)
            if snapshot is not None:
                self._sequences.reset(*restore(snapshot, self._projections))
                first = snapshot.position
                _log.info(
                    "Redis bridge restored the snapshot at %s; replaying from there",
                    first.decode(),
                )
            else:
                self._sequences.reset({}, complete=True)  # every origin from its first
                first = b"0-0"
            if gone > stream_id(first):
                # Entries the state needs may be gone (MAXLEN trimming, or XDEL).
                _log.warning(
                    "Redis bridge replays stream %r from %s, but entries up to %d-%d may "
                    "have been removed (trimmed or deleted): the projections may be "
                    "incomplete (keep snapshots more often than the stream is trimmed)",
                    self._settings.stream,
                    "its beginning (no snapshot)" if snapshot is None else first.decode(),
                    *gone,
                )
        self.last_id = first
        self._snapshot_key = stream_id(first)
        self._snapshot_at = time.monotonic()
        if tail is None or stream_id(tail) <= self._snapshot_key:
            self.caught_up.set()
        else:
            self._target = stream_id(tail)

    async def _stream_info(self) -> tuple[bytes | None, StreamId]:
        """The id of the stream's newest entry (``None``: none), and how far entries are gone.

        The second value is the newest id that may have been removed
        (``(0, 0)``: none): ``XDEL`` records it (Redis 7), and trimming, seen as
        more entries added than are left, removes everything before the first
        entry. Older servers cannot tell, and none is assumed.
        """
        try:
            info: Any = await self._client.xinfo_stream(self._settings.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None, (0, 0)
            raise
        first, last = info.get("first-entry"), info.get("last-entry")
        deleted = info.get("max-deleted-entry-id")
        gone = (0, 0) if deleted is None else stream_id(as_bytes(deleted))
        added = info.get("entries-added")
        if first and added is not None and int(added) > int(info.get("length", 0)):
            gone = max(gone, stream_id(as_bytes(first[0])))
        return (as_bytes(last[0]) if last else None), gone

    # ------------------------------------------------------------- reading

    async def _read(self) -> None:
        settings, stats = self._settings, self._stats
        backoff = Backoff(
            settings.backoff_initial,
            settings.backoff_max,
            "Redis bridge cannot read the stream (%s); retrying",
        )
        assert self.last_id is not None  # set by the bootstrap
        while True:
            try:
                reply: Any = await self._client.xread(
                    {settings.stream: self.last_id},
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
                _log.warning("Redis bridge reconnected; resuming after %s", self.last_id)
            await self._process(reply)
            self._progress.set()

    async def _process(self, reply: Any) -> None:
        """Deliver the entries of one ``XREAD`` reply, in order (the hot path)."""
        stats, deliver, snapshots = self._stats, self._bus.deliver, bool(self._projections)
        entry_id = None
        count = gaps = 0
        for entry_id, fields in entries(reply):
            count += 1
            try:
                decoded = self._decode(entry_id, fields)
                if decoded is not None:
                    event, local, gap, headers = decoded
                    if gap is not None:
                        gaps += 1
                        await self._deliver_gap(gap, entry_id)
                    if event is not None:
                        position = entry_id.decode()
                        try:
                            await deliver(event, position, local=local, headers=headers)
                        except Exception:  # a strict bus raises its handlers' failures
                            _log.exception(
                                "fleet handlers failed on the event of entry %s", position
                            )
                        stats["received"] += 1
                        if local:
                            stats["own"] += 1
            except Exception as exc:  # never let one entry stop the reader
                stats["malformed"] += 1
                _log.error("Redis bridge skipped entry %r: %s", entry_id, failure(exc))
            self.last_id = entry_id
            if snapshots:
                self._since += 1
                if self._snapshot_due():
                    await self._snapshot()
        self._losses.replied(count, gaps)
        # Caught up once the tail as of bootstrap is processed: checked per
        # reply, not per entry, to keep id parsing off the hot path.
        target = self._target
        if target is not None and entry_id is not None and stream_id(entry_id) >= target:
            self._target = None
            self.caught_up.set()

    def _decode(self, entry_id: bytes, fields: dict[bytes, bytes]) -> _Entry | None:
        """What to deliver for the entry; ``None``: nothing (a repeat or a bad header).

        Skips (and counts) repeats of an origin's sequence numbers and
        malformed entries. An entry with a good header counts as processed
        even if its event cannot be decoded, so it shows no gap after it.
        Fields after the first are the entry's headers (`eventbus_redis._headers`).
        """
        try:
            if len(fields) == 1:
                ((header, payload),) = fields.items()
            elif fields:
                header, payload = next(iter(fields.items()))
            else:
                raise DecodeError("expected a field '<origin>:<seq>', got none")
            origin, _, raw_seq = header.rpartition(b":")
            seq = int(raw_seq)
            if not 0 < seq <= MAX_SEQ:
                raise DecodeError(f"sequence number {seq} is not in 1..{MAX_SEQ}")
        except (DecodeError, ValueError) as exc:
            self._malformed(entry_id, fields, exc)
            return None
        missing = self._sequences.advance(origin, seq)
        if missing is None:
            self._stats["duplicates"] += 1
            return None
        gap = self._losses.lost(origin, missing, entry_id) if missing else None
        local = origin == self._origin
        if local:
            kept = self._own(seq)
            if kept is not None:
                return kept[1], True, gap, kept[2]
        headers = None if len(fields) == 1 else read(itertools.islice(fields.items(), 1, None))
        try:
            return codec.loads(payload), local, gap, headers
        except (DecodeError, ValueError) as exc:
            self._malformed(entry_id, fields, exc)
            return None, False, gap, None

    def _malformed(self, entry_id: bytes, fields: dict[bytes, bytes], exc: Exception) -> None:
        self._stats["malformed"] += 1
        where = entry_id.decode(errors="replace")
        # Bounded: the entry (and an error quoting it) may be megabytes.
        _log.warning(
            "Redis bridge skipped malformed entry %s: %s; the entry: %s",
            where,
            clip(str(exc)),
            preview(fields),
            extra={"stream_id": where},
        )

    # ------------------------------------------------------------- gaps

    async def _deliver_gap(self, gap: OrderGap, entry_id: bytes) -> None:
        """Deliver ``gap`` to the fleet handlers, just before the entry that showed it."""
        position = gap_position(stream_id(entry_id), self.last_id)
        try:
            await self._bus.deliver(gap, position, local=False)
        except Exception:  # a strict bus raises its handlers' failures
            _log.exception("fleet handlers failed on the order gap at %s", position)

    # ------------------------------------------------------------- snapshots

    def _snapshot_due(self) -> bool:
        settings = self._settings
        every, interval = settings.snapshot_every, settings.snapshot_interval
        if every is not None and self._since >= every:
            return True
        return interval is not None and time.monotonic() - self._snapshot_at >= interval

    def _mark(self, key: StreamId) -> None:
        self._snapshot_key, self._since, self._snapshot_at = key, 0, time.monotonic()

    async def _snapshot(self) -> None:
        """Snapshot the projections at the last entry processed, unless another worker did."""
        position = self.last_id
        assert position is not None
        key = stream_id(position)
        try:
            newest = await self._snapshots.newest_position()
        except (RedisError, OSError) as exc:
            _log.debug("Redis bridge skipped a snapshot: %s", exc)
            self._mark(self._snapshot_key)
            return
        if newest is not None and stream_id(newest) > self._snapshot_key:
            # Another worker wrote one since ours: count from it, so the fleet
            # writes about one per snapshot_every entries, not one per worker.
            self._mark(stream_id(newest))
            return
        self._mark(key)
        try:
            # Between two deliveries, in a worker thread: this task awaits it,
            # so no delivery runs and the state is exact at position, while
            # the loop goes on (SSE heartbeats, requests). Projections change
            # only in deliveries (fleet handlers).
            sequences = self._sequences
            fields = await asyncio.to_thread(
                capture, self._projections, sequences.table(), sequences.complete
            )
        except Exception:
            _log.exception("Redis bridge could not snapshot the projections")
            return
        # Awaited, not a background task: the next delivery waits one round
        # trip, but every due snapshot is written, exactly at its position.
        try:
            if await self._snapshots.write(position, fields):
                self._stats["snapshots"] += 1
        except (RedisError, OSError) as exc:
            _log.warning("Redis bridge could not write the snapshot at %s: %s", position, exc)
