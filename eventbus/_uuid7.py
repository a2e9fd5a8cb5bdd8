"""Time-ordered UUIDv7 generation (RFC 9562), for Pythons without ``uuid.uuid7``.

Layout of an id: 48 bits of Unix milliseconds, the version, 12 random bits
(``rand_a``) drawn once per process, the variant, then a 62-bit per-process
*counter* (``rand_b``; RFC 9562 §6.2, a counter in place of random bits):

* The counter starts at a random point and ``rand_a`` is random, both drawn
  from `os.urandom` once per process, and again in a child after `os.fork`
  (`os.register_at_fork`). Two processes collide only if, within the same
  millisecond, their 74 bits meet: with random starts, that does not happen.
* The counter only counts up, so the ids one thread makes strictly increase,
  however many per millisecond, and when the clock steps back (the
  millisecond then stays at the last one used).

No system call and no lock per id: one `time.time_ns`, one ``next()`` of an
`itertools.count` (atomic under the GIL, so no two ids share a count) and
integer arithmetic. Ids are unique and ordered, not secret: two ids from one
process tell how many ids it made between them.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID, SafeUUID

__all__ = ["derived_uuid7", "make_uuid", "uuid7"]

_VERSION: Final = 0x7 << 76
_VARIANT: Final = 0b10 << 62
#: Counters start below 2**61, leaving at least 2**61 ids of headroom in 62 bits.
_START_BITS: Final = 61
_COUNTER_END: Final = 1 << 62

# A UUID built without UUID.__init__ (which validates its argument in Python,
# ~0.6 us): the two slots are set through their descriptors, as __init__ would
# leave them.
_new = object.__new__
_set_int = UUID.__dict__["int"].__set__
_set_safe = UUID.__dict__["is_safe"].__set__
_UNKNOWN: Final = SafeUUID.unknown


def make_uuid(value: int) -> UUID:
    """``UUID(int=value)`` for a ``value`` known to be in ``[0, 2**128)``, without its checks."""
    uuid = _new(UUID)
    _set_int(uuid, value)
    _set_safe(uuid, _UNKNOWN)
    return uuid


_last_ms = 0
_counter = itertools.count()
_fixed = 0  # version, rand_a and variant: the bits an id shares with this process's others


def _seed() -> None:
    """Draw a fresh ``rand_a`` and counter start (at import, and in a forked child)."""
    global _counter, _fixed
    bits = int.from_bytes(os.urandom(10))
    _fixed = _VERSION | (bits >> 68) << 64 | _VARIANT  # the top 12 bits as rand_a
    _counter = itertools.count(bits & ((1 << _START_BITS) - 1))


_seed()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_seed)


def uuid7() -> UUID:
    """Return a new UUIDv7, greater than the ones this thread made before."""
    global _last_ms
    ms = time.time_ns() // 1_000_000
    count = next(_counter)
    if ms < _last_ms:
        ms = _last_ms  # the clock stepped back: keep the order
    else:
        _last_ms = ms
    if count >= _COUNTER_END:  # pragma: no cover  # 2**61 ids after a start: never in practice
        _seed()
        _last_ms = ms + 1  # the new count may be lower: order by the next millisecond
        return uuid7()
    uuid = _new(UUID)
    _set_int(uuid, ms << 80 | _fixed | count)
    _set_safe(uuid, _UNKNOWN)
    return uuid


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def derived_uuid7(cause_id: UUID, when: datetime, key: str) -> UUID:
    """A UUIDv7 that is a pure function of its arguments, for derived events.

    Its timestamp is ``when`` (to the millisecond) and its other 74 bits come
    from a BLAKE2b hash of ``cause_id`` and ``key``: every worker that derives
    the same event from the same cause builds the same id, with no shared state.
    """
    ms = (when - _EPOCH) // timedelta(milliseconds=1)
    digest = int.from_bytes(hashlib.blake2b(cause_id.bytes + key.encode(), digest_size=10).digest())
    rand_a = digest >> 68  # 12 bits
    rand_b = digest & 0x3FFF_FFFF_FFFF_FFFF  # 62 bits
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)
