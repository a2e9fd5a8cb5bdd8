"""SSE wire framing and event ids.

One event becomes one complete frame, built once and shared by every client:

    id: <sse id>\\n
    event: <wire name>\\n
    data: <eventbus.codec JSON>\\n
    \\n

The codec's JSON never contains a raw newline (orjson escapes them inside
strings), so one ``data:`` line always suffices.

**Ids.** An event routed while the bus gives it a position (a fleet handler
running inside `eventbus.EventBus.deliver`, see `eventbus.EventBus.current_position`)
takes that position as its id: the stream id ``1718000000000-0`` of the entry,
``1718000000000-0.1``, ``.2``, ... for the events derived from it. Every worker
reading the same stream gives the same event the same id, so a client can
resume on any of them. Otherwise a broadcaster assigns ``<epoch>-<seq>``:
``epoch`` is a random token drawn when the broadcaster is built (it starts with
a letter, so it never looks like a position) and ``seq`` counts up from 1. An
id from another epoch (a previous process, another worker) is recognised as
foreign.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Final, final

__all__ = [
    "HEARTBEAT",
    "RESET_EVENT",
    "EntryKey",
    "Frame",
    "PositionSource",
    "Positions",
    "build_frame",
    "entry_key",
    "id_epoch",
    "is_position",
    "new_epoch",
    "reset_frame",
    "retry_frame",
]

#: A comment line: ignored by `EventSource`, but it keeps proxies and the TCP
#: connection from idling out, and lets the server notice a dead peer.
HEARTBEAT: Final = b": heartbeat\n\n"

#: The SSE event name of a reset: the client must refetch its state.
RESET_EVENT: Final = "stream.reset"

#: A position: a stream id ``<ms>-<seq>``, then ``.<k>`` for a derived event.
#: Nothing else reaches a frame's ``id:`` line from a position: never CR, LF or
#: NUL, which would break the frame.
_POSITION: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})(?:\.[0-9]{1,9})?")
_LOCAL_ID: Final = re.compile(r"(e[0-9a-f]{11})-[0-9]+")

#: A stream entry in comparable form: (milliseconds, sequence).
EntryKey = tuple[int, int]

#: Returns the position of the event being dispatched, or ``None`` when it has
#: none. `eventbus.EventBus.current_position` is one.
PositionSource = Callable[[], str | None]

_log = logging.getLogger("eventbus.sse")


@final
class Frame:
    """One encoded SSE frame, shared by every client queue it is put on.

    Attributes:
        seq: Broadcaster-wide position, strictly increasing in routing order.
            Used to de-duplicate replayed frames against live ones.
        id: The SSE ``id:`` value.
        name: The SSE ``event:`` value (the event's wire name).
        data: The complete frame bytes, terminated by a blank line.
        entry: The stream entry of a position id (see `entry_key`), ``None``
            for a local id.
    """

    __slots__ = ("data", "entry", "id", "name", "seq")

    def __init__(
        self, seq: int, id: str, name: str, data: bytes, entry: EntryKey | None = None
    ) -> None:
        self.seq = seq
        self.id = id
        self.name = name
        self.data = data
        self.entry = entry

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, id={self.id!r}, name={self.name!r})"


@final
class Positions:
    """Where a broadcaster's frame ids come from: one bound `PositionSource`, checked."""

    __slots__ = ("_source",)

    def __init__(self) -> None:
        self._source: PositionSource | None = None

    def bind(self, source: PositionSource) -> None:
        """See `eventbus_sse.Broadcaster.bind_positions`."""
        if not callable(source):
            raise TypeError(f"source must be a callable returning str | None, got {source!r}")
        if self._source is not None and self._source != source:
            raise RuntimeError(
                f"this Broadcaster takes its ids from {self._source!r} already; "
                "give each bus its own Broadcaster"
            )
        self._source = source

    def current(self, what: type) -> tuple[str | None, EntryKey | None]:
        """The id and entry of the event (of class ``what``) being handled, or ``(None, None)``.

        A position that is not a stream id is logged and never used: it would
        go on the ``id:`` line, where a CR or LF would break the frame.
        """
        source = self._source
        sse_id = source() if source is not None else None
        if sse_id is None:
            return None, None
        entry = entry_key(sse_id)
        if entry is None:
            _log.error(
                "position %r is not a stream id: a %s gets a local SSE id",
                sse_id,
                what.__qualname__,
            )
            return None, None
        return sse_id, entry


def new_epoch() -> str:
    """Return a fresh epoch token: a letter then 11 lowercase hex digits."""
    return "e" + secrets.token_hex(6)[:11]


def id_epoch(sse_id: str) -> str | None:
    """Return the epoch of a broadcaster-assigned id, or ``None`` for any other id."""
    match = _LOCAL_ID.fullmatch(sse_id)
    return match.group(1) if match else None


def is_position(sse_id: str) -> bool:
    """Whether ``sse_id`` is a well-formed position: ``<ms>-<seq>`` or ``<ms>-<seq>.<k>``."""
    return _POSITION.fullmatch(sse_id) is not None


def entry_key(sse_id: str) -> EntryKey | None:
    """Return the stream entry a position id belongs to, or ``None`` for any other id.

    ``"1718000000000-0"`` and its derived ``"1718000000000-0.2"`` both belong
    to ``(1718000000000, 0)``; entries compare in stream order. The frames of
    one entry are routed in the same order on every worker (its dispatch
    order), so the order within an entry is the buffer's, never ``k``'s.
    """
    match = _POSITION.fullmatch(sse_id)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


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
    return b'id: %s\nevent: %s\ndata: {"reason":"%s"}\n\n' % (
        (last_id or "").encode(),
        RESET_EVENT.encode(),
        reason.encode(),
    )
