"""The hook specifications eventbus plugins implement (pluggy project ``"eventbus"``).

A plugin is any object (module, class instance) with functions marked
``@eventbus.hookimpl`` and named like the specs below. Every hook is called
once per bus, never per event: per-event work belongs in the handlers a plugin
subscribes in `eventbus_register`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from eventbus._bus import EventBus

__all__ = ["eventbus_register", "eventbus_shutdown", "eventbus_startup", "hookimpl", "hookspec"]

hookspec: pluggy.HookspecMarker = pluggy.HookspecMarker("eventbus")
hookimpl: pluggy.HookimplMarker = pluggy.HookimplMarker("eventbus")


@hookspec
def eventbus_register(bus: EventBus) -> None:
    """Called once when the plugin is registered with ``bus``.

    Subscribe handlers here. If this raises, every subscription made during the
    call is cancelled and the plugin is unregistered (registration is atomic).
    """


@hookspec
def eventbus_startup(bus: EventBus) -> Awaitable[None] | None:
    """Called by ``bus.start()`` / ``async with bus``, in registration order.

    May be ``async def``; the bus awaits it. Open connections here.
    """


@hookspec
def eventbus_shutdown(bus: EventBus) -> Awaitable[None] | None:
    """Called by ``bus.aclose()`` / leaving ``async with bus``, in reverse order.

    May be ``async def``; the bus awaits it. Drain and close resources here.
    Failures are logged and do not stop the other plugins' shutdown.
    """
