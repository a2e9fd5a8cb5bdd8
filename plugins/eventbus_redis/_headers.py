"""Observer headers in stream entries: what is kept, how it is stored, how it is read.

While its bus has an observer (a tracing plugin), the bus hands the bridge
each event with the headers the observers injected
(`eventbus.HeaderSequencer.append_with_headers`), such as a W3C
``traceparent`` and ``tracestate``. They travel in the event's stream entry as
extra fields after the event's own ``<origin>:<seq>`` field, one per header,
named ``h:<name>``::

    XADD eventbus:events * <origin>:<seq> <event JSON> h:traceparent 00-4bf9...-01

An entry without headers keeps the single field, and readers accept both
shapes. Headers come from code, but an entry is whatever someone appended,
so both ends keep only well-formed ones and drop the rest, silently:

* at most `MAX_HEADERS` per entry (the first ones, in order);
* a name of 1 to `MAX_NAME` characters out of ``A-Z a-z 0-9 _ . -``;
* a value of at most `MAX_VALUE` printable ASCII characters (W3C trace
  context asks propagators to carry 512 characters of ``tracestate``).

A reader ignores any further field it does not understand (neither the first
nor ``h:<name>``): the header fields are the format's extension point.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["MAX_HEADERS", "MAX_NAME", "MAX_VALUE", "PREFIX", "clean", "fields", "read"]

#: The prefix of a header field's name.
PREFIX: Final = b"h:"
#: The most headers an entry carries; further ones are dropped.
MAX_HEADERS: Final = 8
#: The longest header name kept (characters, without the prefix).
MAX_NAME: Final = 64
#: The longest header value kept (characters).
MAX_VALUE: Final = 512

# Lengths are checked before these run.
_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]+")
_VALUE: Final = re.compile(r"[\x20-\x7e]*")
_NAME_BYTES: Final = re.compile(rb"h:[A-Za-z0-9_.\-]+")
_VALUE_BYTES: Final = re.compile(rb"[\x20-\x7e]*")
# Extra fields a reader looks at: enough for MAX_HEADERS and some it ignores.
_SCANNED: Final = 4 * MAX_HEADERS


def clean(headers: Mapping[str, str]) -> dict[str, str]:
    """The well-formed headers of ``headers`` (module docstring), as a new dict.

    Never raises: whatever ``headers`` holds (an observer's mistake), the
    worst outcome is an empty dict.
    """
    kept: dict[str, str] = {}
    try:
        for name, value in headers.items():
            if (
                isinstance(name, str)
                and isinstance(value, str)
                and len(name) <= MAX_NAME
                and len(value) <= MAX_VALUE
                and _NAME.fullmatch(name)
                and _VALUE.fullmatch(value)
            ):
                kept[name] = value
                if len(kept) == MAX_HEADERS:
                    break
    except Exception:  # a Mapping that fails to iterate: keep what was read
        pass
    return kept


def fields(headers: Mapping[str, str]) -> tuple[bytes, ...]:
    """Flat ``(b"h:<name>", b"<value>", ...)`` of headers `clean` kept."""
    flat: list[bytes] = []
    for name, value in headers.items():
        flat += (PREFIX + name.encode("ascii"), value.encode("ascii"))
    return tuple(flat)


def read(extra: Iterable[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """The headers among an entry's fields after the first; ``None``: none.

    Looks at a bounded number of fields, and keeps at most `MAX_HEADERS`
    well-formed ones; never raises on what it reads.
    """
    headers: dict[str, str] | None = None
    for name, value in itertools.islice(extra, _SCANNED):
        if not (
            isinstance(name, bytes)
            and isinstance(value, bytes)
            and len(name) <= MAX_NAME + len(PREFIX)
            and len(value) <= MAX_VALUE
            and _NAME_BYTES.fullmatch(name)
            and _VALUE_BYTES.fullmatch(value)
        ):
            continue
        if headers is None:
            headers = {}
        headers[name[len(PREFIX) :].decode("ascii")] = value.decode("ascii")
        if len(headers) == MAX_HEADERS:
            break
    return headers
