"""`Priority`: the named ordering bands handlers and plugins rely on.

Handlers run highest priority first. Plugins that must run before or after
ordinary handlers pick a band by name instead of hard-coding each other's
numbers (the model is pluggy's ``tryfirst``/``trylast``). Any int is still a
valid priority: bands are points on the same scale, so ``Priority.ROUTE + 1``
runs just before the SSE broadcaster.
"""

from __future__ import annotations

import enum
from typing import final

__all__ = ["Priority"]


@final
class Priority(enum.IntEnum):
    """Named handler priorities, highest first.

    Attributes:
        FIRST: Before everything: recorders such as `eventbus.testing.capture_events`.
        OBSERVE: Observers that must see an event before anything reacts to it:
            the logging plugin.
        ROUTE: Routing to clients: the SSE broadcaster. Above ordinary handlers,
            so a client gets an event before the events its handlers derive
            (dispatch is depth first).
        DEFAULT: Ordinary handlers (``subscribe``'s default).
        LAST: After everything: bookkeeping that wants the final state.
    """

    FIRST = 2**62
    OBSERVE = 1_000_000
    ROUTE = 500_000
    DEFAULT = 0
    LAST = -(2**62)
