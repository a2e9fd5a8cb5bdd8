"""Helpers for testing code that publishes or handles events.

`capture_events` records what a bus publishes, in dispatch order (the model is
structlog's ``capture_logs``):

    with capture_events(bus, AccountBalanceUpdated) as events:
        sync_account(bus)
    assert [type(e) for e in events] == [AccountBalanceUpdated]

Installed with eventbus, a pytest plugin (entry point ``pytest11``) provides:

* ``event_bus``: a fresh `EventBus` with ``raise_errors=True``, so a failing
  handler fails the test;
* ``captured_events``: the list every event published on ``event_bus`` is
  appended to.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, overload

from eventbus._bus import EventBus
from eventbus._priority import Priority
from eventbus.events import DomainEvent

__all__ = ["CAPTURE_PRIORITY", "capture_events"]

E = TypeVar("E", bound=DomainEvent)

#: Capturing runs before every ordinary handler, so an outer event is recorded
#: before the events its handlers publish (depth-first dispatch order).
CAPTURE_PRIORITY = Priority.FIRST


@overload
def capture_events(bus: EventBus) -> AbstractContextManager[list[DomainEvent]]: ...


@overload
def capture_events(bus: EventBus, event_type: type[E], /) -> AbstractContextManager[list[E]]: ...


@overload
def capture_events(
    bus: EventBus, *types: type[DomainEvent]
) -> AbstractContextManager[list[DomainEvent]]: ...


def capture_events(bus: EventBus, *types: type[DomainEvent]) -> AbstractContextManager[list[Any]]:
    """Record events published on ``bus`` while the block runs.

    Typed: ``capture_events(bus, AccountBalanceUpdated)`` yields a
    ``list[AccountBalanceUpdated]``; with no type or several, a
    ``list[DomainEvent]``.

    Args:
        bus: The bus to watch.
        *types: Only record instances of these types (default: every `DomainEvent`).

    Yields:
        The list events are appended to, in dispatch order (a local handler at
        `Priority.FIRST`: with a sequencer, it sees what local handlers see).
    """
    return _capture(bus, types or (DomainEvent,))


@contextmanager
def _capture(bus: EventBus, wanted: tuple[type[DomainEvent], ...]) -> Iterator[list[Any]]:
    captured: list[Any] = []

    def record(event: DomainEvent) -> None:
        if isinstance(event, wanted):
            captured.append(event)

    with bus.subscribe(DomainEvent, record, priority=CAPTURE_PRIORITY):
        yield captured


if TYPE_CHECKING:
    pytest = None
else:
    try:
        import pytest
    except ImportError:  # pragma: no cover - the fixtures need pytest, capture_events does not
        pytest = None

if pytest is not None:

    @pytest.fixture(name="event_bus")
    def _event_bus_fixture() -> EventBus:
        """A fresh bus that raises handler failures (``raise_errors=True``)."""
        return EventBus(raise_errors=True)

    @pytest.fixture(name="captured_events")
    def _captured_events_fixture(event_bus: EventBus) -> Iterator[list[DomainEvent]]:
        """Every event published on ``event_bus`` during the test, in order."""
        with capture_events(event_bus) as events:
            yield events
