"""Sample events for the core tests: small test-only types and valid portfolio events.

The test-only types are plain `DomainEvent` subclasses without a wire name, so
they never touch the process-wide registry the codec tests inspect. Also a
`RecordingSequencer`, the smallest `eventbus.Sequencer` there is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from uuid import uuid4

from eventbus import DomainEvent
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Ping(DomainEvent):
    """A test event carrying a number (used for depth and order assertions)."""

    n: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class SubPing(Ping):
    """A subclass of `Ping`, for MRO dispatch."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Pong(DomainEvent):
    """An unrelated test event."""

    n: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Zap(DomainEvent):
    """A third unrelated test event."""

    n: int = 0


class RecordingSequencer:
    """A `eventbus.Sequencer` that records what it is handed (no stream behind it).

    Args:
        *types: The types it sequences (with their subclasses); default: every event.
    """

    def __init__(self, *types: type[DomainEvent]) -> None:
        self.types = types or (DomainEvent,)
        self.appended: list[DomainEvent] = []

    def sequences(self, event_type: type[DomainEvent]) -> bool:
        """Whether ``event_type`` is one of ``types`` (or a subclass)."""
        return issubclass(event_type, self.types)

    def append(self, event: DomainEvent) -> None:
        """Record ``event``."""
        self.appended.append(event)


def numbers(events: Iterable[DomainEvent]) -> tuple[int, ...]:
    """The ``n`` of each `Ping` / `Pong` / `Zap` in ``events`` (for compact chain assertions)."""
    return tuple(e.n for e in events if isinstance(e, Ping | Pong | Zap))


def balance(**overrides: object) -> AccountBalanceUpdated:
    """A valid `AccountBalanceUpdated`; keyword arguments override fields."""
    fields: dict[str, object] = {
        "user_id": uuid4(),
        "account_id": uuid4(),
        "previous_balance": Decimal("100.00"),
        "new_balance": Decimal("150.25"),
        "delta": Decimal("50.25"),
        "currency": "USD",
    }
    fields.update(overrides)
    return AccountBalanceUpdated(**fields)  # type: ignore[arg-type]


def holdings(**overrides: object) -> AccountHoldingsUpdated:
    """A valid `AccountHoldingsUpdated`; keyword arguments override fields."""
    fields: dict[str, object] = {
        "user_id": uuid4(),
        "account_id": uuid4(),
        "holdings_count": 12,
        "created_count": 2,
        "updated_count": 3,
        "deactivated_count": 1,
    }
    fields.update(overrides)
    return AccountHoldingsUpdated(**fields)  # type: ignore[arg-type]


def networth(**overrides: object) -> PortfolioNetWorthRecalculated:
    """A valid `PortfolioNetWorthRecalculated`; keyword arguments override fields."""
    fields: dict[str, object] = {
        "user_id": uuid4(),
        "previous_net_worth": Decimal("1000"),
        "new_net_worth": Decimal("900.5"),
        "delta": Decimal("-99.5"),
        "currency": "EUR",
        "account_count": 3,
    }
    fields.update(overrides)
    return PortfolioNetWorthRecalculated(**fields)  # type: ignore[arg-type]
