"""The bridge's Redis side: appending batches, reading replies, judging errors.

Kept apart from the bridge's event handling so each is one concept: what the
bridge sends and receives (`eventbus_redis._bridge`), and how Redis is spoken
to (here).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any, Final, final

from redis.asyncio import Redis
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from eventbus_redis._settings import RedisBridgeSettings

__all__ = [
    "OUTAGE",
    "Appender",
    "Backoff",
    "Fields",
    "StreamId",
    "as_bytes",
    "entries",
    "is_transient",
    "stream_id",
]

_log = logging.getLogger("eventbus.redis")

#: Errors that mean "Redis is unreachable right now": retry, never give up.
OUTAGE: Final = (RedisConnectionError, RedisTimeoutError, OSError)
# Replies that mean "not now" (a failover, memory pressure, a busy script):
# the writer retries them like an outage instead of dropping the batch.
_TRANSIENT: Final = (ReadOnlyError, OutOfMemoryError, TryAgainError, ClusterDownError)
# Anywhere in the text: redis-py wraps pipeline errors ("Command # 1 ... caused
# error: ('BUSY ..."), and Redis 6 wraps a script's ("ERR Error running script
# ... -OOM ...").
_TRANSIENT_CODES: Final = re.compile(r"\b(BUSY|LOADING|READONLY|OOM|TRYAGAIN|MASTERDOWN)\b")

# ARGV = maxlen, then (field, payload) pairs; one entry per pair, in order.
# A script runs isolated (no other client's entries interleave) but is not a
# transaction: an error midway keeps the entries before it, and a reply lost
# with the connection means a retry appends the batch again (readers skip
# sequence numbers they have seen). It returns the last entry's id: shutdown
# waits until the reader has delivered it.
_APPEND_LUA: Final = """
local id
for i = 2, #ARGV, 2 do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[i], ARGV[i + 1])
end
return id
"""
# The same for a batch in which some entries carry header fields: ARGV =
# maxlen, then per entry its number of (field, value) pairs and the pairs.
_APPEND_FIELDS_LUA: Final = """
local id
local i = 2
while i <= #ARGV do
  local last = i + 2 * tonumber(ARGV[i])
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i + 1, last))
  i = last + 1
end
return id
"""

#: A stream entry id as ``(milliseconds, sequence)``: ordered like the stream.
StreamId = tuple[int, int]
#: An entry's fields, flat: ``(name, value, name, value...)``; the event's first.
Fields = tuple[bytes, ...]


def as_bytes(value: object) -> bytes:
    """A reply item as bytes, whether the client decodes responses or not."""
    return value if isinstance(value, bytes) else str(value).encode()


def stream_id(raw: bytes | str) -> StreamId:
    """Parse ``b"1718000000000-3"`` into ``(1718000000000, 3)``.

    Raises:
        ValueError: Not a complete stream id.
    """
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


@final
class Appender:
    """Appends a batch of entries (their `Fields`) to the stream in one round trip.

    One small Lua script runs ``XADD ... MAXLEN ~ N`` per entry on the server:
    the client packs one command and parses one reply per batch (a pipeline's
    per-command cost is what limits it; see docs/redis.md). A server that
    refuses scripts (ACLs, managed Redis) gets ``MULTI``/``EXEC`` instead,
    which likewise refuses a batch whole, so a retry never re-appends part of
    one out of order.
    """

    __slots__ = ("_client", "_fields_script", "_script", "_settings", "_use_script")

    def __init__(self, client: Redis, settings: RedisBridgeSettings) -> None:
        self._client = client
        self._settings = settings
        # EVALSHA, loading the script again if the server lost it (a restart).
        self._script = client.register_script(_APPEND_LUA)
        self._fields_script = client.register_script(_APPEND_FIELDS_LUA)
        self._use_script = True

    async def append(self, batch: list[Fields], headed: bool = False) -> bytes:
        """Append ``batch`` (not empty) in order; return the last entry's stream id.

        ``headed``: some entries have more than one field (observer headers);
        otherwise each is one ``(field, payload)`` pair.

        Raises:
            RedisError: As redis-py raises it (see `is_transient`); OSError.
        """
        settings = self._settings
        if self._use_script:
            args: list[bytes | int] = [settings.maxlen]
            script = self._script
            if headed:
                script = self._fields_script
                for entry in batch:
                    args.append(len(entry) // 2)
                    args += entry
            else:
                for entry in batch:
                    args += entry
            try:
                return as_bytes(await script(keys=[settings.stream], args=args))
            except RedisError as exc:
                if not _scripts_refused(exc):
                    raise
                _log.warning("Redis refuses scripts (%s); appending with MULTI/EXEC", exc)
                self._use_script = False
        pipe = self._client.pipeline(transaction=True)
        for entry in batch:
            pairs: dict[FieldT, EncodableT] = dict(zip(entry[::2], entry[1::2], strict=True))
            pipe.xadd(settings.stream, pairs, maxlen=settings.maxlen, approximate=True)
        ids: list[Any] = await pipe.execute()
        return as_bytes(ids[-1])


@final
class Backoff:
    """Capped exponential backoff between retries, warning once per streak of failures.

    Args:
        initial: The first delay, in seconds.
        maximum: The cap; each failure doubles the delay up to it.
        warning: Logged (with the error) at the first failure of a streak.
    """

    __slots__ = ("_delay", "_initial", "_maximum", "_warning", "failing")

    def __init__(self, initial: float, maximum: float, warning: str) -> None:
        self._initial = self._delay = initial
        self._maximum = maximum
        self._warning = warning
        self.failing = False

    async def wait(self, exc: BaseException) -> None:
        """After a failure: warn if it starts a streak, then sleep the current delay."""
        if not self.failing:
            self.failing = True
            _log.warning(self._warning, exc)
        await asyncio.sleep(self._delay)  # backoff, not synchronisation
        self._delay = min(self._delay * 2, self._maximum)

    def succeeded(self) -> bool:
        """Start over after a success; returns whether a streak of failures ended."""
        ended, self.failing, self._delay = self.failing, False, self._initial
        return ended


def is_transient(exc: BaseException) -> bool:
    """Whether an error means "not now" (retry) rather than "never" (drop)."""
    if isinstance(exc, (*OUTAGE, *_TRANSIENT)):
        return True
    return isinstance(exc, RedisError) and _TRANSIENT_CODES.search(str(exc)) is not None


def _scripts_refused(exc: RedisError) -> bool:
    """Whether the server refuses ``EVALSHA``/``EVAL`` (ACLs, or scripting disabled).

    Not any NOPERM: a user denied the stream's key is refused XADD too.
    """
    text = str(exc).lower()
    return "'evalsha'" in text or "'eval'" in text or "unknown command" in text


def entries(reply: Any) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    """The (stream id, fields) entries of an ``XREAD`` reply, under RESP2 or RESP3.

    RESP2 gives ``[[stream, [entry, ...]], ...]``; redis-py's RESP3 reply is
    ``{stream: [[entry, ...]]}``, one list deeper.
    """
    if not reply:
        return
    if isinstance(reply, dict):
        for batches in reply.values():
            for batch in batches:
                yield from batch
    else:
        for _stream, stream_entries in reply:
            yield from stream_entries
