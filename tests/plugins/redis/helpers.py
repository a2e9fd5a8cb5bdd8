"""Helpers for the Redis bridge tests: events, a recording worker, a test projection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID, uuid4

import orjson

from eventbus import DomainEvent, EventBus
from eventbus.portfolio import AccountBalanceUpdated, AccountHoldingsUpdated
from eventbus_redis import RedisBridgePlugin
from tests.support import wait_until_async

STREAM = "eventbus:events"
SNAPSHOTS = "eventbus:events:snapshots"


def holdings(count: int = 0, user: UUID | None = None) -> AccountHoldingsUpdated:
    """A holdings update whose ``holdings_count`` numbers it."""
    return AccountHoldingsUpdated(
        user_id=user or uuid4(),
        account_id=uuid4(),
        holdings_count=count,
        created_count=count,
        updated_count=0,
        deactivated_count=0,
    )


def numbered(count: int, start: int = 0) -> list[AccountHoldingsUpdated]:
    """``count`` holdings updates numbered from ``start``."""
    return [holdings(i) for i in range(start, start + count)]


def balance(user: UUID, new: str, previous: str = "0") -> AccountBalanceUpdated:
    """A USD balance update for ``user``."""
    return AccountBalanceUpdated.from_change(
        user_id=user,
        account_id=uuid4(),
        previous_balance=Decimal(previous),
        new_balance=Decimal(new),
        currency="USD",
    )


class History:
    """A projection: the ids of every event its fleet handler saw, in order.

    Its state is order-sensitive, so two workers agree only if they saw the
    same events in the same order; a snapshot is the whole list.
    """

    def __init__(self, name: str = "history") -> None:
        self.name = name
        self.ids: list[str] = []
        self.restored: int | None = None  # length of the restored state

    def on_event(self, event: DomainEvent) -> None:
        """The fleet handler."""
        self.ids.append(str(event.event_id))

    def snapshot(self) -> bytes:
        """The ids, as JSON."""
        return orjson.dumps(self.ids)

    def restore(self, data: bytes) -> None:
        """Replace the ids."""
        self.ids = list(orjson.loads(data))
        self.restored = len(self.ids)


@dataclass
class Worker:
    """A bus, its Redis plugin, and what its catch-all handlers saw.

    ``local`` is the local handler's list of events; ``fleet`` the fleet
    handler's list of (position, event).
    """

    bus: EventBus
    plugin: RedisBridgePlugin
    local: list[DomainEvent] = field(default_factory=list)
    fleet: list[tuple[str | None, DomainEvent]] = field(default_factory=list)
    history: History | None = None

    def record(self) -> None:
        """Subscribe the catch-all handlers (local and fleet)."""
        self.bus.subscribe(DomainEvent, self.local.append)
        self.bus.subscribe(DomainEvent, self._on_fleet, fleet=True)

    def _on_fleet(self, event: DomainEvent) -> None:
        self.fleet.append((self.bus.current_position(), event))

    @property
    def fleet_events(self) -> list[DomainEvent]:
        """The fleet handler's events, without positions."""
        return [event for _, event in self.fleet]

    @property
    def positions(self) -> list[str | None]:
        """The fleet handler's positions."""
        return [position for position, _ in self.fleet]

    def stats(self) -> dict[str, int]:
        """The plugin's counters."""
        return self.plugin.statistics()

    async def delivered(self, count: int, what: str = "") -> None:
        """Wait until the fleet handler saw ``count`` events."""
        await wait_until_async(
            lambda: len(self.fleet) >= count, what=what or f"{count} fleet deliveries"
        )


async def publish_all(worker: Worker, events: Sequence[DomainEvent]) -> None:
    """Publish ``events`` on ``worker``, one after another."""
    for event in events:
        await worker.bus.publish(event)
