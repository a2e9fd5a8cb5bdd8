"""Shared builders for the plugin tests: fixed rates, balance events, a hand-played stream.

`Stream` stands in for the Redis bridge: a `eventbus.Sequencer` per bus
records what each worker appends, and the test delivers the entries to every
bus in one order (the stream's), the way the bridge's reader does. The SSE and
logging tests use it too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final, final
from uuid import UUID

from eventbus import DomainEvent, EventBus, codec
from eventbus.events import event_name
from eventbus.portfolio import AccountBalanceUpdated

__all__ = ["RATES", "Stream", "StreamSequencer", "balance"]

#: Fixed demo rates into USD. CHF deliberately has none (the "missing rate" case).
RATES: Final = {
    ("EUR", "USD"): Decimal("1.08"),
    ("GBP", "USD"): Decimal("1.27"),
    ("JPY", "USD"): Decimal("0.0067"),
}

#: The millisecond part of every stream id `Stream` hands out.
STREAM_MS: Final = 1_700_000_000_000


def balance(
    user: UUID,
    account: UUID,
    previous: Decimal | str | int,
    new: Decimal | str | int,
    currency: str = "USD",
) -> AccountBalanceUpdated:
    """Build a valid `AccountBalanceUpdated` (``delta`` computed exactly)."""
    return AccountBalanceUpdated.from_change(
        user_id=user,
        account_id=account,
        previous_balance=Decimal(previous),
        new_balance=Decimal(new),
        currency=currency,
    )


@final
class StreamSequencer:
    """One bus's `eventbus.Sequencer`: sequences every type with a wire name."""

    __slots__ = ("_bus", "_stream")

    def __init__(self, stream: Stream, bus: EventBus) -> None:
        self._stream = stream
        self._bus = bus

    def sequences(self, event_type: type[DomainEvent]) -> bool:
        """Whether the codec can carry ``event_type`` (as the Redis bridge decides)."""
        return event_name(event_type) is not None

    def append(self, event: DomainEvent) -> None:
        """Record ``event`` as the next entry, appended by this sequencer's bus."""
        self._stream.entries.append((event, self._bus))


@final
class Stream:
    """The fleet's one order, played by the test.

    Attributes:
        entries: (event, the bus that appended it), in stream order. A test may
            reorder it before delivering, as concurrent appends race in Redis.
    """

    __slots__ = ("_delivered", "entries")

    def __init__(self) -> None:
        self.entries: list[tuple[DomainEvent, EventBus]] = []
        self._delivered: dict[int, int] = {}  # id(bus) -> entries delivered to it

    def attach(self, bus: EventBus) -> EventBus:
        """Give ``bus`` a sequencer appending to this stream; returns ``bus``."""
        bus.set_sequencer(StreamSequencer(self, bus))
        return bus

    @staticmethod
    def position(index: int) -> str:
        """The stream id of entry ``index``: ``1700000000000-<index>``."""
        return f"{STREAM_MS}-{index}"

    async def deliver(self, bus: EventBus, upto: int | None = None) -> None:
        """Deliver the entries ``bus`` has not had yet (up to index ``upto``), in order.

        The appending bus gets its own event object with ``local=True``; any
        other bus gets a decoded copy, as a worker reading Redis does.
        """
        end = len(self.entries) if upto is None else upto
        for index in range(self._delivered.get(id(bus), 0), end):
            event, origin = self.entries[index]
            local = origin is bus
            copy = event if local else codec.loads(codec.dumps(event))
            await bus.deliver(copy, self.position(index), local=local)
            self._delivered[id(bus)] = index + 1

    def skip(self, bus: EventBus, count: int) -> None:
        """Mark the first ``count`` entries as had by ``bus`` (it joined after them)."""
        self._delivered[id(bus)] = count
