"""Time-ordered UUIDv7 generation (RFC 9562), for Pythons without ``uuid.uuid7``.

Ids made in one process are strictly increasing: within one millisecond a
12-bit counter in ``rand_a`` orders them (RFC 9562 §6.2, method 1).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

__all__ = ["derived_uuid7", "uuid7"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> UUID:
    """Return a new, monotonically increasing UUIDv7."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2)) & 0x3FF  # leave headroom to count up
        else:
            _counter += 1
            if _counter > 0xFFF:
                # Counter exhausted: borrow the next millisecond rather than repeat.
                _last_ms += 1
                _counter = 0
        ms, seq = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8)) & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)


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
