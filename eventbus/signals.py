"""Instrumentation signals (blinker).

Connect a receiver to observe the bus without touching the dispatch path:

    from eventbus import signals

    @signals.handler_failed.connect
    def report(bus, *, event, handler, exception, **kw):
        sentry_sdk.capture_exception(exception)

Every signal is sent with the `EventBus` as sender. Keyword arguments:

* `event_published`: ``event``, ``handlers`` (how many ran), ``elapsed_ns``
  (the whole dispatch). Sent after the last handler returned.
* `handler_completed`: ``event``, ``handler``, ``elapsed_ns``. Sent after each
  handler that returned normally.
* `handler_failed`: ``event``, ``handler``, ``exception``. Sent for each handler
  that raised an `Exception` (not timed).

``with signals.handler_completed.muted():`` silences a signal for the block
(blinker's own switch, shared by every thread), for example in a test that
must not see its own noise.

Instrumentation costs nothing while no receiver is connected: the bus checks
the receiver dicts (a truth test) before measuring anything. A receiver that
raises is logged on logger ``eventbus`` and disconnected, so a broken observer
can never break dispatch (the trio model).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from blinker import NamedSignal, Signal

__all__ = ["event_published", "handler_completed", "handler_failed"]

event_published: Final = NamedSignal(
    "eventbus.event_published", doc="An event was dispatched to all its handlers."
)
handler_completed: Final = NamedSignal(
    "eventbus.handler_completed", doc="A handler returned normally."
)
handler_failed: Final = NamedSignal("eventbus.handler_failed", doc="A handler raised.")

_log = logging.getLogger("eventbus")


def _send(signal: Signal, sender: object, **kwargs: Any) -> None:
    """Send ``signal``, isolating (logging and disconnecting) a receiver that raises.

    Honours blinker's ``signal.muted()``: a muted signal reaches nobody.
    """
    if signal.is_muted:
        return
    for receiver in list(signal.receivers_for(sender)):
        try:
            receiver(sender, **kwargs)
        except Exception:
            _log.exception(
                "receiver %r of signal %r raised and was disconnected",
                receiver,
                getattr(signal, "name", signal),
            )
            signal.disconnect(receiver)
