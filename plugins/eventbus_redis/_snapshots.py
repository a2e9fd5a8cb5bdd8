"""Projection snapshots in ``<stream>:snapshots``: how a late joiner starts right.

A snapshot is one entry of a second stream. Its id is the *position* it was
taken at, the id of the last events-stream entry the worker had processed, so
the state it holds is exact there: restore it, then deliver the entries after
that id. Its fields are one per projection (``bus.projections()``), named by
the projection's ``name``, plus ``@origins``: the readers' sequence table
(`eventbus_redis._sequences`), so an entry that a retried append repeated
after the position is still recognised and one missing after it is found;
and ``@complete``: ``1`` if that table holds every origin since the stream's
beginning (then an origin not in it must start at 1), ``0`` if not.

Every worker may write one; ``XADD`` with an explicit id refuses an id at or
below the stream's newest, which settles concurrent writers for free (the
later position wins, an equal one is refused). ``MAXLEN`` (exact: snapshots are
few and large) keeps the newest ``snapshot_keep``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, final

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from eventbus import Projection
from eventbus_redis._logtext import failure
from eventbus_redis._settings import RedisBridgeSettings
from eventbus_redis._stream import as_bytes

__all__ = [
    "COMPLETE_FIELD",
    "ORIGINS_FIELD",
    "Snapshot",
    "SnapshotStore",
    "capture",
    "check_names",
    "restore",
]

_log = logging.getLogger("eventbus.redis")

#: The field holding the de-duplication table; projection names must not start with "@".
ORIGINS_FIELD: Final = b"@origins"
#: Whether that table knows every origin (b"1") or not (b"0"); absent: it does.
COMPLETE_FIELD: Final = b"@complete"

# The newest snapshot's id without sending its (large) fields to the client.
_NEWEST_LUA: Final = """
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #newest == 0 then return false end
return newest[1][1]
"""


@final
@dataclass(frozen=True, slots=True)
class Snapshot:
    """One snapshot: its position (an events-stream id) and its fields."""

    position: bytes
    fields: Mapping[bytes, bytes]


@final
class SnapshotStore:
    """Reads and writes ``<stream>:snapshots``.

    Args:
        client: A ``redis.asyncio.Redis`` that does not decode responses.
        settings: The bridge's settings (``snapshot_stream``, ``snapshot_keep``).
    """

    __slots__ = ("_client", "_keep", "_key", "_newest", "_use_script")

    def __init__(self, client: Redis, settings: RedisBridgeSettings) -> None:
        self._client = client
        self._key = settings.snapshot_stream
        self._keep = settings.snapshot_keep
        self._newest = client.register_script(_NEWEST_LUA)
        self._use_script = True

    async def at_or_before(self, position: bytes) -> Snapshot | None:
        """The newest snapshot taken at or before ``position``, if any.

        Raises:
            RedisError: As redis-py raises it; OSError.
        """
        reply: Any = await self._client.xrevrange(self._key, max=position, min="-", count=1)
        if not reply:
            return None
        entry_id, fields = reply[0]
        return Snapshot(as_bytes(entry_id), {as_bytes(k): as_bytes(v) for k, v in fields.items()})

    async def newest_position(self) -> bytes | None:
        """The position of the newest snapshot, or ``None`` (none, or unknown).

        ``None`` when the server refuses scripts too: the caller then writes
        anyway and Redis refuses a stale one.

        Raises:
            RedisError: As redis-py raises it; OSError.
        """
        if not self._use_script:
            return None
        try:
            newest: Any = await self._newest(keys=[self._key])
        except ResponseError as exc:
            if "script" not in str(exc).lower() and "eval" not in str(exc).lower():
                raise
            self._use_script = False
            return None
        return None if newest is None else as_bytes(newest)

    async def write(self, position: bytes, fields: Mapping[bytes, bytes]) -> bool:
        """Add a snapshot at ``position``; ``False`` if one at or after it exists.

        Raises:
            RedisError: Other than the refused id, as redis-py raises it; OSError.
        """
        entry: dict[Any, Any] = dict(fields)  # redis-py's FieldT is invariant
        try:
            await self._client.xadd(
                self._key, entry, id=position, maxlen=self._keep, approximate=False
            )
        except ResponseError as exc:
            if "equal or smaller" in str(exc):  # another worker got there first
                return False
            raise
        return True


def capture(
    projections: Sequence[Projection], origins: Mapping[bytes, int], complete: bool
) -> dict[bytes, bytes]:
    """The fields of a snapshot of ``projections`` and the sequence table.

    Raises:
        Exception: Whatever a projection's ``snapshot()`` raises.
    """
    fields = {p.name.encode(): p.snapshot() for p in projections}
    fields[ORIGINS_FIELD] = orjson.dumps({k.decode(): v for k, v in origins.items()})
    fields[COMPLETE_FIELD] = b"1" if complete else b"0"
    return fields


def restore(snapshot: Snapshot, projections: Sequence[Projection]) -> tuple[dict[bytes, int], bool]:
    """Restore every projection named in ``snapshot``; return its sequence table.

    A projection missing from the snapshot, or whose ``restore`` fails, keeps
    its state; that is logged as an error, since its state is then incomplete.

    Returns:
        The table (origin -> last sequence number), and whether it knows every
        origin: not if the snapshot says so, or has no table, or a malformed one.
    """
    where = snapshot.position.decode()
    for projection in projections:
        data = snapshot.fields.get(projection.name.encode())
        if data is None:
            _log.error(
                "Redis snapshot at %s has no state for projection %r: it starts empty",
                where,
                projection.name,
            )
            continue
        try:
            projection.restore(data)
        except Exception as exc:
            # Bounded: the error may quote the (untrusted) snapshot.
            _log.error(
                "projection %r could not restore the snapshot at %s: %s",
                projection.name,
                where,
                failure(exc),
            )
    raw = snapshot.fields.get(ORIGINS_FIELD)
    if raw is None:
        _log.warning("Redis snapshot at %s has no %s field", where, ORIGINS_FIELD)
        return {}, False
    try:
        table: Any = orjson.loads(raw)
        origins = {str(k).encode(): int(v) for k, v in table.items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        _log.warning("Redis snapshot at %s has a malformed %s field", where, ORIGINS_FIELD)
        return {}, False
    return origins, snapshot.fields.get(COMPLETE_FIELD) != b"0"


def check_names(projections: Sequence[Projection]) -> None:
    """Refuse projection names that cannot be snapshot fields.

    Raises:
        ValueError: A name is empty or starts with ``@`` (reserved for the bridge).
    """
    for projection in projections:
        if not projection.name or projection.name.startswith("@"):
            raise ValueError(
                f"projection name {projection.name!r} cannot be a Redis snapshot field "
                "(empty, or starting with '@', which the bridge reserves)"
            )
