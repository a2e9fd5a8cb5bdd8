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
its own included, to ``bus.deliver(event, id, local=origin is ours)``, one at a
time. It skips an entry whose per-origin sequence number it has seen (a
writer's retry after a lost reply repeats entries) and logs and skips
malformed ones. Between two entries it writes a snapshot when one is due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, final

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from eventbus import EventBus, codec
from eventbus.exceptions import DecodeError
from eventbus_redis._settings import RedisBridgeSettings
from eventbus_redis._snapshots import SnapshotStore, capture, restore
from eventbus_redis._stream import Backoff, StreamId, as_bytes, entries, stream_id

__all__ = ["Reader"]

_log = logging.getLogger("eventbus.redis")

#: Origins remembered for de-duplication, least recently seen evicted first:
#: every worker start is a new origin, and only recent ones can still repeat.
MAX_ORIGINS: Final = 4096


@final
class Reader:
    """Reads the stream for one bus, from its start position, for good.

    Args:
        bus: The bus to deliver to.
        client: A ``redis.asyncio.Redis`` that does not decode responses.
        settings: The bridge's settings.
        origin: This worker's origin id: its own entries are delivered as local.
        stats: The bridge's counters; the reader keeps ``received``, ``own``,
            ``duplicates``, ``malformed``, ``reconnects`` and ``snapshots``.
    """

    __slots__ = (
        "_bus",
        "_client",
        "_last_key",
        "_origin",
        "_origins",
        "_progress",
        "_projections",
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
        stats: dict[str, int],
    ) -> None:
        self._bus = bus
        self._client = client
        self._settings = settings
        self._origin = origin
        self._stats = stats
        self._snapshots = SnapshotStore(client, settings)
        self._projections = bus.projections()
        self._origins: dict[bytes, int] = {}  # origin -> last sequence number processed
        self._started = time.monotonic()
        self._target: StreamId | None = None
        self._last_key: StreamId = (0, 0)
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
        while self._last_key < target:
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
        elapsed = int((time.monotonic() - self._started) * 1000)
        # Entry ids are Redis's clock: the start position is that clock's
        # reading when this worker started, whenever it first reached Redis.
        start = b"%d-0" % max(0, seconds * 1000 + micros // 1000 - elapsed)
        tail, trimmed = await self._stream_info()
        first = start
        if self._projections:
            snapshot = await self._snapshots.at_or_before(start)
            if snapshot is not None:
                self._origins = restore(snapshot, self._projections)
                first = snapshot.position
                _log.info(
                    "Redis bridge restored the snapshot at %s; replaying from there",
                    first.decode(),
                )
            else:
                first = b"0-0"
                if trimmed:
                    _log.warning(
                        "Redis bridge found no snapshot and stream %r was trimmed already: "
                        "projections replay what is left and may be incomplete",
                        self._settings.stream,
                    )
        self.last_id = first
        self._last_key = self._snapshot_key = stream_id(first)
        self._snapshot_at = time.monotonic()
        if tail is None or stream_id(tail) <= self._last_key:
            self.caught_up.set()
        else:
            self._target = stream_id(tail)

    async def _stream_info(self) -> tuple[bytes | None, bool]:
        """The id of the stream's newest entry (``None``: empty), and whether it was trimmed."""
        try:
            info: Any = await self._client.xinfo_stream(self._settings.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None, False
            raise
        last = info.get("last-entry")
        tail = as_bytes(last[0]) if last else None
        added = info.get("entries-added")  # Redis 7+; older servers cannot tell
        return tail, added is not None and int(added) > int(info.get("length", 0))

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
            for entry_id, fields in entries(reply):
                try:
                    await self._deliver(entry_id, fields)
                except Exception:  # never let one entry stop the reader
                    stats["malformed"] += 1
                    _log.exception("Redis bridge skipped entry %r", entry_id)
                self._processed(entry_id)
                if self._snapshot_due():
                    await self._snapshot()
            self._progress.set()

    def _processed(self, entry_id: bytes) -> None:
        self.last_id = entry_id
        self._last_key = key = stream_id(entry_id)
        self._since += 1
        if self._target is not None and key >= self._target:
            self._target = None
            self.caught_up.set()

    async def _deliver(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        stats = self._stats
        try:
            if len(fields) != 1:
                raise DecodeError(f"expected one field '<origin>:<seq>', got {len(fields)}")
            ((header, payload),) = fields.items()
            origin, _, raw_seq = header.rpartition(b":")
            seq = int(raw_seq)
            event = codec.loads(payload)
        except (DecodeError, ValueError) as exc:
            stats["malformed"] += 1
            where = entry_id.decode(errors="replace")
            _log.warning(
                "Redis bridge skipped malformed entry %s: %s",
                where,
                exc,
                extra={"stream_id": where},
            )
            return
        origins = self._origins
        last = origins.pop(origin, None)
        if last is not None and seq <= last:
            origins[origin] = last
            stats["duplicates"] += 1
            return
        origins[origin] = seq  # re-inserted: the dict's order is least recently seen first
        if len(origins) > MAX_ORIGINS:
            del origins[next(iter(origins))]
        local = origin == self._origin
        position = entry_id.decode()
        try:
            await self._bus.deliver(event, position, local=local)
        except Exception:  # a strict bus raises its handlers' failures: keep reading
            _log.exception("fleet handlers failed on the event of entry %s", position)
        stats["received"] += 1
        if local:
            stats["own"] += 1

    # ------------------------------------------------------------- snapshots

    def _snapshot_due(self) -> bool:
        settings = self._settings
        if not self._projections or not self._since:
            return False
        every, interval = settings.snapshot_every, settings.snapshot_interval
        if every is not None and self._since >= every:
            return True
        return interval is not None and time.monotonic() - self._snapshot_at >= interval

    def _mark(self, key: StreamId) -> None:
        self._snapshot_key, self._since, self._snapshot_at = key, 0, time.monotonic()

    async def _snapshot(self) -> None:
        """Snapshot the projections at the last entry processed, unless another worker did."""
        position, key = self.last_id, self._last_key
        assert position is not None
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
            # On the loop, between two deliveries: the state is exact at position.
            fields = capture(self._projections, self._origins)
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
