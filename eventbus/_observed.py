"""Whether anybody observes dispatch, kept out of the publish hot paths.

Timing handlers for `eventbus.signals` costs a clock read per handler, so the
bus does it only while a receiver is connected to ``event_published`` or
``handler_completed``. Instead of testing that on every publish, a bus caches
no plans while it holds (`observed`): every publish then misses the plan
cache and takes the careful, instrumented path. Connecting or disconnecting
a receiver (blinker's ``receiver_connected`` / ``receiver_disconnected``)
drops the plans of every bus, so the next publish looks again.

A weakly connected receiver that is garbage-collected leaves without a
signal; `observed` then turns false by itself and plans are cached again
from the next compile on.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Final

from eventbus import signals

if TYPE_CHECKING:
    from eventbus._bus import EventBus

__all__ = ["observed", "watch"]

_TIMED: Final = (signals.event_published, signals.handler_completed)
_BUSES: Final[weakref.WeakSet[EventBus]] = weakref.WeakSet()


def observed() -> bool:
    """Whether a receiver is connected to a signal that times dispatch."""
    return any(signal.receivers for signal in _TIMED)


def watch(bus: EventBus) -> None:
    """Drop ``bus``'s plans whenever a timing signal gains or loses a receiver."""
    _BUSES.add(bus)


def _changed(_signal: object, **_: Any) -> None:
    for bus in list(_BUSES):
        bus._forget_plans()


for _signal in _TIMED:
    _signal.receiver_connected.connect(_changed, weak=False)
    _signal.receiver_disconnected.connect(_changed, weak=False)
