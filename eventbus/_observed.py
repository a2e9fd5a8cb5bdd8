"""Dispatch observers, and whether anybody observes, kept out of the publish hot paths.

Two kinds of observers watch dispatch:

* receivers of the timing signals of `eventbus.signals` (``event_published``,
  ``handler_completed``), in any process-wide number;
* `DispatchObserver` objects registered with one bus
  (`eventbus.EventBus.add_observer`): called when a publish or a delivery
  starts and ends and around every handler call, in the context the handler
  runs in, so an observer can make its own state current (a tracing span)
  while the handler runs.

Instead of testing for them on every publish, a bus caches no plans while
anybody observes (`observed`): every publish then misses the plan cache and
takes the careful path (module ``_dispatch``), which calls the observers.
Adding or removing an observer, or connecting or disconnecting a signal
receiver, drops the plans of every bus, so the next publish looks again.
While nobody observes, observers cost nothing: no check on the hot paths.

A weakly connected receiver that is garbage-collected leaves without a
signal; `observed` then turns false by itself and plans are cached again
from the next compile on.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, final, runtime_checkable

from eventbus import signals
from eventbus._subscription import Subscription

if TYPE_CHECKING:
    from eventbus._bus import EventBus
    from eventbus.events import DomainEvent

__all__ = [
    "DispatchObserver",
    "FleetEntry",
    "HeaderSequencer",
    "Observation",
    "observed",
    "watch",
]

_log = logging.getLogger("eventbus")

_TIMED: Final = (signals.event_published, signals.handler_completed)
_BUSES: Final[weakref.WeakSet[EventBus]] = weakref.WeakSet()
#: Buses that have at least one `DispatchObserver`.
_OBSERVING: Final[weakref.WeakSet[EventBus]] = weakref.WeakSet()


@final
@dataclass(frozen=True, slots=True)
class FleetEntry:
    """An entry of the fleet's order being delivered (`eventbus.EventBus.deliver`).

    Attributes:
        position: The entry's position (a stream id).
        local: Whether this worker appended it.
        headers: What the observers put in the entry's headers when it was
            appended (`DispatchObserver.inject`), as the sequencer handed them
            back; empty if none.
    """

    position: str
    local: bool
    headers: Mapping[str, str]


class DispatchObserver:
    """Watches one bus's dispatch: subclass it and override what you need.

    Register an instance with `eventbus.EventBus.add_observer`. Every method
    is called on the thread (and in the context: task, ``contextvars``) of the
    dispatch it reports, synchronously; ``*_started`` returns a token that the
    matching ``*_ended`` gets back, in the same context. An observer may so set
    a ``ContextVar`` in ``*_started`` and reset it in ``*_ended``: whatever the
    handler does in between (publish, log) sees it.

    While a bus has an observer every publish takes the careful dispatch path
    (a few hundred nanoseconds more per publish, plus the observer's own
    cost); with none, observers cost nothing. An observer that raises is
    logged on logger ``eventbus`` and removed from the bus: a broken
    observer never breaks dispatch.

    A handler subscribed with ``concurrent=True`` runs as its own task: its
    ``handler_started`` and ``handler_ended`` run inside that task.
    """

    def publish_started(
        self, bus: EventBus, event: DomainEvent, entry: FleetEntry | None
    ) -> object:
        """An event's dispatch starts, before its first handler.

        ``entry`` is set when the event is an entry of the fleet's order being
        delivered (its fleet handlers run now), ``None`` for a publish (or an
        event derived in the fleet). Returns a token for `publish_ended`.
        """
        return None

    def publish_ended(
        self, bus: EventBus, event: DomainEvent, token: object, error: BaseException | None
    ) -> None:
        """The dispatch ended: ``error`` is what escapes it (not handler failures).

        Handler failures are reported to `handler_ended`; ``error`` is set only
        when the dispatch itself raises (`eventbus.EventCycleError`,
        cancellation).
        """

    def handler_started(
        self, bus: EventBus, event: DomainEvent, subscription: Subscription[Any]
    ) -> object:
        """``subscription``'s handler is about to be called with ``event``."""
        return None

    def handler_ended(
        self,
        bus: EventBus,
        event: DomainEvent,
        subscription: Subscription[Any],
        token: object,
        error: BaseException | None,
    ) -> None:
        """The handler returned (``error`` ``None``) or raised ``error``.

        A handler that raises an `Exception` has been reported already (logged,
        ``handler_failed``) when this is called; a timed-out one raised a
        `TimeoutError`.
        """

    def inject(self, bus: EventBus, event: DomainEvent, headers: dict[str, str]) -> None:
        """Add headers to the fleet entry ``event`` becomes (such as ``traceparent``).

        Called while ``event`` is appended, in its publish's context, when the
        bus's sequencer carries headers (`HeaderSequencer`). They come back in
        `FleetEntry.headers` on every worker that delivers the entry.
        """


@runtime_checkable
class HeaderSequencer(Protocol):
    """A `eventbus.Sequencer` that carries observers' headers in its entries.

    While its bus has an observer, the bus calls `append_with_headers` instead
    of ``append``, with the headers the observers injected (possibly empty).
    The sequencer stores them in the entry and passes them back to
    ``bus.deliver(..., headers=...)``. The same rules as ``append`` apply: it
    must be thread-safe, never block and never raise.
    """

    def append_with_headers(self, event: DomainEvent, headers: Mapping[str, str]) -> None:
        """Take ``event`` into the order, with ``headers`` in its entry."""
        ...


Started = list[tuple[DispatchObserver, object]]

_NO_HEADERS: Final[Mapping[str, str]] = {}


@final
class Observation:
    """The `DispatchObserver` objects of one bus, as the careful paths call them.

    ``observers`` is an immutable tuple replaced on every change, so the
    careful paths read it without a lock and a truth test says whether to call.
    """

    __slots__ = ("_bus", "_carries", "_lock", "observers")

    def __init__(self, bus: EventBus) -> None:
        self._bus: Final = bus  # the bus holds this; the cycle is the bus's own
        self._lock: Final = threading.Lock()
        self._carries: dict[type, bool] = {}
        self.observers: tuple[DispatchObserver, ...] = ()

    def add(self, observer: DispatchObserver) -> None:
        """Register ``observer`` (no-op if it is registered already)."""
        if not isinstance(observer, DispatchObserver):
            raise TypeError(f"an observer must be a DispatchObserver, got {observer!r}")
        with self._lock:
            if observer in self.observers:
                return
            self.observers = (*self.observers, observer)
        self._changed()

    def remove(self, observer: DispatchObserver) -> bool:
        """Unregister ``observer``; whether it was registered."""
        with self._lock:
            if observer not in self.observers:
                return False
            self.observers = tuple(o for o in self.observers if o is not observer)
        self._changed()
        return True

    def _changed(self) -> None:
        bus = self._bus
        if self.observers:
            _OBSERVING.add(bus)
        else:
            _OBSERVING.discard(bus)
        _forget_all()

    def _broken(self, observer: DispatchObserver, method: str) -> None:
        _log.exception("observer %r raised in %s and was removed", observer, method)
        self.remove(observer)

    # ------------------------------------------------------------------ calls

    def publish_started(self, event: DomainEvent, entry: FleetEntry | None = None) -> Started:
        """Call every observer's ``publish_started``; the tokens, for `publish_ended`."""
        bus = self._bus
        started: Started = []
        for observer in self.observers:
            try:
                started.append((observer, observer.publish_started(bus, event, entry)))
            except Exception:
                self._broken(observer, "publish_started")
        return started

    def publish_ended(
        self, event: DomainEvent, started: Started, error: BaseException | None
    ) -> None:
        """Call ``publish_ended`` of the observers that started, last first."""
        bus = self._bus
        for observer, token in reversed(started):
            try:
                observer.publish_ended(bus, event, token, error)
            except Exception:
                self._broken(observer, "publish_ended")

    def handler_started(self, event: DomainEvent, owner: object) -> Started | None:
        """Call every ``handler_started`` for a plan step (``None`` for a sequencer's)."""
        if not isinstance(owner, Subscription):
            return None
        bus = self._bus
        started: Started = []
        for observer in self.observers:
            try:
                started.append((observer, observer.handler_started(bus, event, owner)))
            except Exception:
                self._broken(observer, "handler_started")
        return started

    def handler_ended(
        self,
        event: DomainEvent,
        owner: object,
        started: Started | None,
        error: BaseException | None,
    ) -> None:
        """Call ``handler_ended`` of the observers that started, last first."""
        if started is None or not isinstance(owner, Subscription):
            return
        bus = self._bus
        for observer, token in reversed(started):
            try:
                observer.handler_ended(bus, event, owner, token, error)
            except Exception:
                self._broken(observer, "handler_ended")

    def append(self, sequencer: object, call: Any, event: DomainEvent) -> None:
        """Run a sequencer's append step: with the observers' headers if it carries them."""
        kind = type(sequencer)
        carries = self._carries.get(kind)
        if carries is None:
            carries = self._carries[kind] = isinstance(sequencer, HeaderSequencer)
        if not carries:
            call(event)
            return
        bus = self._bus
        headers: dict[str, str] = {}
        for observer in self.observers:
            try:
                observer.inject(bus, event, headers)
            except Exception:
                self._broken(observer, "inject")
        cast("HeaderSequencer", sequencer).append_with_headers(event, headers)

    @staticmethod
    def entry(position: str, local: bool, headers: Mapping[str, str] | None) -> FleetEntry:
        """The `FleetEntry` observers see for a delivery."""
        return FleetEntry(position, local, _NO_HEADERS if headers is None else headers)


# ---------------------------------------------------------------------- caching


def observed() -> bool:
    """Whether anybody observes dispatch: a timing signal receiver, or an observer."""
    return bool(_OBSERVING) or any(signal.receivers for signal in _TIMED)


def watch(bus: EventBus) -> None:
    """Drop ``bus``'s plans whenever anybody starts or stops observing."""
    _BUSES.add(bus)


def _forget_all() -> None:
    for bus in list(_BUSES):
        bus._registry.forget_plans()


def _changed(_signal: object, **_: Any) -> None:
    _forget_all()


for _signal in _TIMED:
    _signal.receiver_connected.connect(_changed, weak=False)
    _signal.receiver_disconnected.connect(_changed, weak=False)
