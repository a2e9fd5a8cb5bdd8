"""What the bridge uses of the SSE broadcaster, found by duck typing.

Plugins import only eventbus's public API, so the bridge never imports
``eventbus_sse``: it looks for a ``broadcaster`` on the plugin named ``sse``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

from eventbus import DomainEvent, EventBus

__all__ = ["SSEIds", "sse_ids"]

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
