"""SSE wire framing and event ids.

One event becomes one complete frame, built once and shared by every client:

    id: <sse id>\\n
    event: <wire name>\\n
    data: <eventbus.codec JSON>\\n
    \\n

The codec's JSON never contains a raw newline (orjson escapes them inside
strings), so one ``data:`` line always suffices.

**Ids.** A broadcaster assigns ``<epoch>-<seq>``: ``epoch`` is a random token
drawn when the broadcaster is built (it starts with a letter, so it can never
look like a Redis stream id) and ``seq`` counts up from 1. An id from another
epoch (a previous process, another worker) is recognised as foreign. An
origin that already gives its events a totally ordered id, such as a Redis
stream id ``1718000000000-0``, may supply it instead; see
`eventbus_sse.Broadcaster.id_scope`. Derived events dispatched under such an id
get ``<id>.1``, ``<id>.2``, ... in dispatch order.
"""

from __future__ import annotations

import re
import secrets
from typing import Final, final

__all__ = [
    "HEARTBEAT",
    "Frame",
    "build_frame",
    "check_base_id",
    "id_epoch",
    "new_epoch",
    "reset_frame",
    "retry_frame",
]

#: A comment line: ignored by `EventSource`, but it keeps proxies and the TCP
#: connection from idling out, and lets the server notice a dead peer.
HEARTBEAT: Final = b": heartbeat\n\n"

#: What an externally supplied id may contain: the Redis stream id alphabet and
#: a few separators. Never CR, LF or NUL (they would break the frame), never
#: ``.`` (reserved for the derived-event suffix).
_BASE_ID: Final = re.compile(r"[A-Za-z0-9_:\-]{1,128}")
_LOCAL_ID: Final = re.compile(r"(e[0-9a-f]{11})-[0-9]+")


@final
class Frame:
    """One encoded SSE frame, shared by every client queue it is put on.

    Attributes:
        seq: Broadcaster-wide position, strictly increasing in routing order.
            Used to de-duplicate replayed frames against live ones.
        id: The SSE ``id:`` value.
        name: The SSE ``event:`` value (the event's wire name).
        data: The complete frame bytes, terminated by a blank line.
    """

    __slots__ = ("data", "id", "name", "seq")

    def __init__(self, seq: int, id: str, name: str, data: bytes) -> None:
        self.seq = seq
        self.id = id
        self.name = name
        self.data = data

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, id={self.id!r}, name={self.name!r})"


def new_epoch() -> str:
    """Return a fresh epoch token: a letter then 11 lowercase hex digits."""
    return "e" + secrets.token_hex(6)[:11]


def id_epoch(sse_id: str) -> str | None:
    """Return the epoch of a broadcaster-assigned id, or ``None`` for any other id."""
    match = _LOCAL_ID.fullmatch(sse_id)
    return match.group(1) if match else None


def check_base_id(base_id: object) -> str:
    """Validate an externally supplied SSE id and return it.

    Raises:
        ValueError: ``base_id`` is not 1-128 characters of ``[A-Za-z0-9_:-]``.
    """
    if not isinstance(base_id, str) or _BASE_ID.fullmatch(base_id) is None:
        raise ValueError(
            f"base_id must be 1-128 characters of [A-Za-z0-9_:-] (e.g. a Redis stream id "
            f"'1718000000000-0'), got {base_id!r}"
        )
    return base_id


def build_frame(sse_id: str, name: str, payload: bytes) -> bytes:
    """Return the complete frame bytes for one event."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (sse_id.encode(), name.encode(), payload)


def retry_frame(retry_ms: int) -> bytes:
    """Return the ``retry:`` frame every stream starts with."""
    return b"retry: %d\n\n" % retry_ms


def reset_frame(last_id: str | None, reason: str) -> bytes:
    """Return a ``stream.reset`` frame: the client must refetch its state.

    Its ``id:`` is the newest buffered id of the user (so the client's next
    reconnect resumes from here), or empty, which tells the browser to forget
    the stale id it holds.
    """
    return b'id: %s\nevent: stream.reset\ndata: {"reason":"%s"}\n\n' % (
        (last_id or "").encode(),
        reason.encode(),
    )
