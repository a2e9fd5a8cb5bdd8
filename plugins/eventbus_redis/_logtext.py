"""What a log line shows of untrusted data: a bounded preview, never the whole.

A stream entry is whatever someone appended: a hand-written ``XADD`` or a
hostile one may be megabytes, and an error about it may quote it whole (an
unknown type name, unexpected field names). Logged as is, one entry would
write a log record of that size. These helpers cut every such text to
`LIMIT` characters and say how long it was.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Mapping
from typing import Final

__all__ = ["LIMIT", "clip", "failure", "preview"]

#: The most characters of untrusted text a log record shows.
LIMIT: Final = 200


def clip(text: str, limit: int = LIMIT) -> str:
    """``text`` if it is at most ``limit`` characters, else its start and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def preview(fields: Mapping[bytes, bytes], limit: int = LIMIT) -> str:
    """An entry's fields as ``name=value`` pairs, each cut to ``limit`` bytes (with its length).

    At most three fields are shown, then how many there were.
    """
    shown = []
    for name, value in itertools.islice(fields.items(), 3):
        shown.append(f"{_bytes(name, limit)}={_bytes(value, limit)}")
    more = len(fields) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more field(s)" if more > 0 else "")


def failure(exc: BaseException, limit: int = LIMIT) -> str:
    """The traceback of ``exc`` with its message cut to ``limit`` characters.

    For a log record of an unexpected error: the frames say where it failed,
    and the message, which may quote the entry, stays bounded.
    """
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return (
        f"Traceback (most recent call last):\n{frames}{type(exc).__name__}: {clip(str(exc), limit)}"
    )


def _bytes(data: bytes, limit: int) -> str:
    text = repr(data[:limit])
    return text if len(data) <= limit else f"{text}... ({len(data):,} bytes)"
