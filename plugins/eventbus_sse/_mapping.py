"""Which events are streamed, under which SSE event name, to which user.

The three portfolio events are mapped out of the box (wire name, ``user_id``).
Third parties add their own classes with
`eventbus_sse.Broadcaster.register_mapping`. An event whose class (or a base
class) has no mapping is not streamed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar, final
from uuid import UUID

from eventbus import DomainEvent
from eventbus.events import event_name
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)
from eventbus_sse._frames import RESET_EVENT

__all__ = ["EventMapping", "MappingTable", "UserOf"]

E = TypeVar("E", bound=DomainEvent)

#: Returns the user an event belongs to.
UserOf = Callable[[Any], UUID]


def _user_id(event: Any) -> UUID:
    user: UUID = event.user_id
    return user


@final
class EventMapping:
    """How one event class is streamed: its SSE event name and its user."""

    __slots__ = ("name", "user")

    def __init__(self, name: str, user: UserOf) -> None:
        self.name: Final = name
        self.user: Final = user


_PORTFOLIO: Final = (AccountBalanceUpdated, AccountHoldingsUpdated, PortfolioNetWorthRecalculated)


@final
class MappingTable:
    """Class → `EventMapping`, resolved along the MRO once per class and cached.

    Lookups take no lock: the cache is a plain dict read by the routing path,
    replaced wholesale when a mapping is registered.

    Args:
        wire_names: Whether mapped classes need a wire name (the encoder is
            `eventbus.codec.dumps`, which writes it).
    """

    __slots__ = ("_cache", "_explicit", "_lock", "_wire_names")

    def __init__(self, *, wire_names: bool = True) -> None:
        self._wire_names = wire_names
        self._lock = threading.Lock()
        self._explicit: dict[type[DomainEvent], EventMapping] = {}
        self._cache: dict[type, EventMapping | None] = {}
        for cls in _PORTFOLIO:
            self.register(cls, user=_user_id)

    def register(
        self,
        event_cls: type[E],
        *,
        name: str | None = None,
        user: Callable[[E], UUID],
    ) -> None:
        """Map ``event_cls`` (and subclasses); see `Broadcaster.register_mapping`."""
        if not (isinstance(event_cls, type) and issubclass(event_cls, DomainEvent)):
            raise TypeError(f"event_cls must be a DomainEvent subclass, got {event_cls!r}")
        if not callable(user):
            raise TypeError(f"user must be a callable returning a UUID, got {user!r}")
        if self._wire_names and event_name(event_cls) is None:
            raise ValueError(
                f"event_cls {event_cls.__qualname__} has no wire name, which eventbus.codec "
                "needs: decorate it with @eventbus.event_type(...), or pass encoder= to Broadcaster"
            )
        resolved = name if name is not None else event_name(event_cls)
        if resolved is None:
            raise ValueError(
                f"name is required: {event_cls.__qualname__} has no wire name "
                "(decorate it with @eventbus.event_type or pass name=...)"
            )
        if not resolved or not resolved.isprintable() or any(c in resolved for c in " ,:"):
            raise ValueError(
                f"name must be a non-empty token without spaces, commas or colons, got {resolved!r}"
            )
        if resolved == RESET_EVENT:
            raise ValueError(f"name {RESET_EVENT!r} is reserved for the stream's resets")
        with self._lock:
            self._explicit[event_cls] = EventMapping(resolved, user)
            self._cache = {}

    def resolve(self, cls: type) -> EventMapping | None:
        """Return the mapping for events of exactly ``cls``, or ``None``."""
        try:
            return self._cache[cls]
        except KeyError:
            pass
        with self._lock:
            found = next((self._explicit[k] for k in cls.__mro__ if k in self._explicit), None)
            cache = dict(self._cache)
            cache[cls] = found
            self._cache = cache
        return found

    def names(self) -> frozenset[str]:
        """Every SSE event name a client may filter on."""
        with self._lock:
            return frozenset(m.name for m in self._explicit.values())
