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
from contextlib import contextmanager
from typing import TYPE_CHECKING

from eventbus._bus import EventBus
from eventbus._priority import Priority
from eventbus.events import DomainEvent

__all__ = ["CAPTURE_PRIORITY", "capture_events"]

#: Capturing runs before every ordinary handler, so an outer event is recorded
#: before the events its handlers publish (depth-first dispatch order).
CAPTURE_PRIORITY = Priority.FIRST


@contextmanager
def capture_events(bus: EventBus, *types: type[DomainEvent]) -> Iterator[list[DomainEvent]]:
    """Record events published on ``bus`` while the block runs.

    Args:
        bus: The bus to watch.
        *types: Only record instances of these types (default: every `DomainEvent`).

    Yields:
        The list events are appended to, in dispatch order.
    """
    captured: list[DomainEvent] = []
    wanted = types or (DomainEvent,)

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
