"""Time-ordered UUIDv7 generation (RFC 9562), for Pythons without ``uuid.uuid7``.

Ids made in one process are strictly increasing: within one millisecond a
12-bit counter in ``rand_a`` orders them (RFC 9562 §6.2, method 1).
"""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID

__all__ = ["uuid7"]

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
