"""The fleet: one order for every worker, and the interfaces that feed it.

Several workers (processes, machines) share one ordered log, such as a Redis
Stream. A `Sequencer` (the Redis bridge is one) appends the events published
here and reads the log back, its own entries included, handing each entry to
`eventbus.EventBus.deliver` in log order. Handlers are of two kinds:

* **local** (the default): run where the event was published, at once;
* **fleet** (``subscribe(..., fleet=True)``): run on every worker, the
  publishing one included, when the entry is delivered, so every worker sees
  the fleet's events in one order.

Events published while a fleet handler runs are *derived in the fleet*: every
worker derives them, so they are never appended. They get the position
``<entry position>.k`` (k counts from 1 in the order their dispatch starts;
only events that have fleet handlers take one, so a worker's own local
subscriptions never shift the numbers), run their fleet handlers everywhere
and their local handlers on the worker that appended the entry only (so a
local handler runs once per fleet). A sync publish there of a type with async
handlers is deferred: its position is taken at once and the delivery awaits
it right after the step that published it.
Events a local handler publishes are local again: appended, entries of their
own.

Without a sequencer there is no difference: every handler runs at publish
time, in priority order. One process is its own fleet.

A `Projection` is state that fleet handlers build (net worth per user). The
sequencer snapshots it between deliveries and restores it in a worker that
joins late, so that worker is right from its first event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, final, runtime_checkable

if TYPE_CHECKING:
    from eventbus._context import Node
    from eventbus.events import DomainEvent

__all__ = ["Delivery", "Place", "Projection", "Projections", "Sequencer"]


@runtime_checkable
class Sequencer(Protocol):
    """Puts the events published here into the fleet's one order.

    Attach one with `eventbus.EventBus.set_sequencer`. Its reader calls
    `eventbus.EventBus.deliver` for every entry of the order, its own included,
    one at a time.
    """

    def sequences(self, event_type: type[DomainEvent]) -> bool:
        """Whether events of ``event_type`` go into the order.

        Asked once per type, when its plan is compiled. A type that is not
        sequenced is dispatched entirely at publish time, as without a sequencer.
        """
        ...

    def append(self, event: DomainEvent) -> None:
        """Take ``event`` (published here, in local context) into the order.

        Called first in the event's dispatch, from whatever thread published
        it: it must be thread-safe, never block, and never raise.
        """
        ...


@runtime_checkable
class Projection(Protocol):
    """State built by fleet handlers, which a joining worker restores.

    Attributes:
        name: A stable key for the state, such as ``"networth"``.
    """

    name: str

    def snapshot(self) -> bytes:
        """The whole state as bytes, exact at the position of the last delivery.

        Called between two deliveries, possibly in a worker thread (the Redis
        bridge uses one so the loop keeps serving): it must not touch the
        event loop, and must be safe while other threads read the state.
        No delivery runs until it returns.
        """
        ...

    def restore(self, data: bytes) -> None:
        """Replace the state with a `snapshot`; called before any delivery."""
        ...


@final
class Projections:
    """A bus's registered projections, by name."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, Projection] = {}

    def register(self, projection: Projection) -> None:
        """Add ``projection``.

        Raises:
            TypeError: It does not have ``name``, ``snapshot`` and ``restore``.
            ValueError: Another projection has its name.
        """
        if not isinstance(projection, Projection) or not isinstance(projection.name, str):
            raise TypeError(
                f"a projection needs a str 'name', 'snapshot()' and 'restore(data)', "
                f"got {projection!r}"
            )
        if projection.name in self._items:
            raise ValueError(f"a projection named {projection.name!r} is registered already")
        self._items[projection.name] = projection

    def unregister(self, projection: Projection) -> None:
        """Remove ``projection`` if it is registered."""
        if self._items.get(projection.name) is projection:
            del self._items[projection.name]

    def all(self) -> tuple[Projection, ...]:
        """Every projection, in registration order."""
        return tuple(self._items.values())


@final
class Delivery:
    """One entry of the fleet's order being delivered here.

    Attributes:
        base: The entry's position (a stream id).
        local: Whether this worker appended the entry.
        pending: Derived publishes that must be awaited (they have async
            handlers but were published from sync code), in publish order,
            each with its place (``None`` without fleet handlers) and its
            parent node.
        closed: The delivery is over: nothing awaits ``pending`` any more
            (a task a fleet handler started may outlive it).
    """

    __slots__ = ("_derived", "base", "closed", "local", "pending")

    def __init__(self, base: str, local: bool) -> None:
        self.base: Final = base
        self.local: Final = local
        self._derived = 0
        self.pending: list[tuple[DomainEvent, Place | None, Node | None]] = []
        self.closed = False

    def next_place(self) -> Place:
        """The place of the next derived event: ``<base>.k``, k from 1."""
        self._derived += 1
        return Place(self, f"{self.base}.{self._derived}")


@final
class Place:
    """Where an event being delivered sits in the fleet's order.

    The ``info`` of the dispatch node (module ``_context``) while a fleet
    handler runs.
    """

    __slots__ = ("delivery", "position")

    def __init__(self, delivery: Delivery, position: str) -> None:
        self.delivery: Final = delivery
        self.position: Final = position

    def __repr__(self) -> str:
        return f"<Place {self.position}>"
