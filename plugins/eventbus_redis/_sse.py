"""What the bridge uses of the SSE broadcaster, found by duck typing.

Plugins import only eventbus's public API, so the bridge never imports
``eventbus_sse``: it looks for a ``broadcaster`` on the plugin named ``sse``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast, final

from eventbus import DomainEvent, EventBus

__all__ = ["SSEIds", "SSEOrder", "sse_ids"]

_log = logging.getLogger("eventbus.redis")

_METHODS = ("id_scope", "hold", "finish", "settle", "release")


class SSEIds(Protocol):
    """What the bridge uses of the SSE broadcaster (found by duck typing).

    ``id_scope`` wraps the re-publication of a remote event, so its frames get
    the stream id as their SSE id. For the events this process forwards,
    ``hold`` keeps their frames, ``finish`` marks the end of their dispatch,
    and ``settle`` (or ``release``, at once) streams them once the entry is
    read back. See ``eventbus_sse._holds``.
    """

    def id_scope(self, base_id: str) -> AbstractContextManager[object]: ...

    def hold(
        self,
        root: DomainEvent,
        *,
        chain: Callable[[], Sequence[DomainEvent]],
        timeout: float,
    ) -> object | None: ...

    def finish(self, root: DomainEvent) -> None: ...

    def settle(self, held: Any, base_id: str | None) -> None: ...

    def release(self, held: Any, base_id: str | None) -> None: ...


def sse_ids(bus: EventBus) -> SSEIds | None:
    """The SSE broadcaster, if the ``sse`` plugin is loaded.

    Found by duck typing: plugins import only eventbus's public API.
    """
    broadcaster = getattr(bus.get_plugin("sse"), "broadcaster", None)
    if all(callable(getattr(broadcaster, name, None)) for name in _METHODS):
        return cast("SSEIds", broadcaster)
    return None


@final
class SSEOrder:
    """The bridge's side of the SSE holds: which held frames wait for which entry.

    Calls into the broadcaster are guarded: it is found by duck typing, and a
    failure there must never stop forwarding or reading.

    Args:
        sse: The broadcaster.
        chain: The bus's ``event_chain``.
        timeout: ``sse_hold_timeout``.
        limit: The most entries to wait for (``buffer_size``); past it, the
            oldest is released with local ids (a reader far behind).
    """

    __slots__ = ("_awaiting", "_chain", "_limit", "_sse", "_timeout")

    def __init__(
        self,
        sse: SSEIds,
        chain: Callable[[], Sequence[DomainEvent]],
        timeout: float,
        limit: int,
    ) -> None:
        self._sse, self._chain, self._timeout, self._limit = sse, chain, timeout, limit
        self._awaiting: dict[int, object] = {}  # sequence number -> held frames

    def hold(self, event: DomainEvent) -> object | None:
        """Hold the frames of root ``event`` (it is being forwarded); thread-safe."""
        try:
            return self._sse.hold(event, chain=self._chain, timeout=self._timeout)
        except Exception:
            _log.exception("SSE hold failed; %r streams with a local id", event)
            return None

    def finish(self, event: DomainEvent) -> None:
        """``event``'s dispatch is over (the bridge's last handler); thread-safe."""
        try:
            self._sse.finish(event)
        except Exception:
            _log.exception("SSE finish failed for %r", event)

    def appended(self, seq: int, held: object) -> None:
        """Entry ``seq`` carries the event of ``held``; its id comes when read back."""
        awaiting = self._awaiting
        awaiting[seq] = held
        if len(awaiting) > self._limit:
            self.release(next(iter(awaiting)))

    def release(self, seq: int) -> None:
        """Entry ``seq`` will not come back (dropped): local ids for its frames."""
        held = self._awaiting.pop(seq, None)
        if held is not None:
            self.release_held(held)

    def release_held(self, held: object) -> None:
        """Stream ``held``'s frames now, with local ids (an event never appended)."""
        try:
            self._sse.release(held, None)
        except Exception:
            _log.exception("SSE release failed")

    def echoed(self, seq: int, base_id: str) -> None:
        """Our entry ``seq`` came back as ``base_id``: give its held frames the id.

        Entries come back in sequence order, so one still awaiting below
        ``seq`` never will (its append was lost, or it was trimmed): local ids.
        The broadcaster streams the frames once the event's dispatch is over,
        keeping later entries' frames behind them; the reader never waits.
        """
        awaiting = self._awaiting
        if not awaiting:
            return
        while awaiting and (first := next(iter(awaiting))) < seq:
            self.release(first)
        held = awaiting.pop(seq, None)
        if held is not None:
            try:
                self._sse.settle(held, base_id)
            except Exception:
                _log.exception("SSE settle failed for entry %s", base_id)
