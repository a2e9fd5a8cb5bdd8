"""The ``sse`` entry point: wires a `Broadcaster` to the bus.

Loading the plugin streams nothing by itself: it subscribes the broadcaster's
sync handler on `DomainEvent` (so it works under ``publish_sync``, ``publish``
and ``publish_threadsafe`` alike), and the app serving the streams is built
and mounted by you:

    bus = EventBus()
    bus.load_entry_points()
    sse = bus.get_plugin(SSEPlugin)
    app = sse.broadcaster.asgi_app(authenticate=my_authenticate)

The handler is a *fleet* handler: with a sequencer attached (the Redis bridge)
every worker routes every event from the stream, in stream order, under the
event's position; without one it runs at publish time, as any handler.
"""

from __future__ import annotations

from typing import final

from eventbus import DomainEvent, EventBus, Priority, Subscription, hookimpl
from eventbus_sse._broadcaster import Broadcaster

__all__ = ["SSEPlugin"]


@final
class SSEPlugin:
    """Streams the bus's mapped events through `broadcaster`.

    Args:
        broadcaster: The broadcaster to feed; a default one if omitted. It
            serves this one bus: it takes its ids from the bus's positions.

    Attributes:
        broadcaster: Build the ASGI app from it (`Broadcaster.asgi_app`).
    """

    __slots__ = ("_subscription", "broadcaster")

    def __init__(self, broadcaster: Broadcaster | None = None) -> None:
        self.broadcaster: Broadcaster = broadcaster if broadcaster is not None else Broadcaster()
        self._subscription: Subscription[DomainEvent] | None = None

    def __repr__(self) -> str:
        return f"SSEPlugin({self.broadcaster!r})"

    @hookimpl
    def eventbus_register(self, bus: EventBus) -> None:
        """Subscribe the broadcaster on every `DomainEvent`, as a fleet handler."""
        # Priority.ROUTE, above ordinary handlers: dispatch is depth-first, so a
        # handler that derives an event (net worth from a balance) would
        # otherwise get its effect onto the stream before the cause.
        self._subscription = bus.subscribe(
            DomainEvent, self.broadcaster.handle, priority=Priority.ROUTE, fleet=True
        )
        # Last: if it refuses (the broadcaster serves another bus), registration
        # is atomic and the subscription goes too.
        self.broadcaster.bind_positions(bus.current_position)

    @hookimpl
    def eventbus_startup(self, bus: EventBus) -> None:
        """Route on the bus's loop: events from other threads are handed to it."""
        self.broadcaster.bind_loop()

    @hookimpl
    async def eventbus_shutdown(self, bus: EventBus) -> None:
        """End every open stream cleanly."""
        await self.broadcaster.aclose()
