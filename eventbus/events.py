"""Domain events: the `DomainEvent` base class and the wire-name registry.

An event is a frozen, keyword-only, slotted dataclass. Subclasses add their own
fields and validate them in ``__post_init__`` with the ``check_*`` helpers
below, which raise `InvalidEventError` naming the field:

    @event_type("shop.order.placed")
    @dataclass(frozen=True, kw_only=True, slots=True)
    class OrderPlaced(DomainEvent):
        order_id: UUID
        total: Decimal

        def __post_init__(self) -> None:
            DomainEvent.__post_init__(self)
            check_uuid(self, "order_id")
            check_decimal(self, "total")

The decorator gives the class a stable *wire name*, used by `eventbus.codec`, the
SSE plugin and the Redis bridge. (``DomainEvent.__post_init__`` is called
explicitly because zero-argument ``super()`` does not work in slotted
dataclasses on Python 3.11.)
"""

from __future__ import annotations

import decimal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final, TypeVar
from uuid import UUID

from eventbus._uuid7 import derived_uuid7, uuid7
from eventbus.exceptions import InvalidEventError

__all__ = [
    "EXACT",
    "MAX_COUNT",
    "MAX_DECIMAL_DIGITS",
    "DomainEvent",
    "OrderGap",
    "check_count",
    "check_currency",
    "check_decimal",
    "check_uuid",
    "derived_id",
    "event_class",
    "event_name",
    "event_type",
    "fits_decimal_bounds",
    "registered_events",
    "uuid7",
]

E = TypeVar("E", bound="DomainEvent")

#: A decimal context that never rounds: use ``EXACT.subtract(a, b)``,
#: ``EXACT.add``, ``EXACT.multiply`` for money. The default context rounds to
#: 28 significant digits, which would make a large balance's delta inexact.
EXACT: Final = decimal.Context(
    prec=decimal.MAX_PREC,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


#: The most digits a `check_decimal` field may have on each side of the point.
MAX_DECIMAL_DIGITS: Final = 40
#: The largest value a `check_count` field may hold (a signed 64-bit integer's).
MAX_COUNT: Final = 2**63 - 1


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class DomainEvent:
    """Base class of every event.

    Attributes:
        event_id: Unique, time-ordered id (UUIDv7 by default).
        occurred_at: When the event happened; timezone-aware, normalised to UTC.
    """

    event_id: UUID = field(default_factory=uuid7)
    occurred_at: datetime = field(default_factory=_utcnow)

    def __post_init__(self) -> None:
        check_uuid(self, "event_id")
        when = self.occurred_at
        if not isinstance(when, datetime):
            _fail(self, "occurred_at", f"must be a datetime, got {type(when).__name__}")
        if when.tzinfo is None or when.utcoffset() is None:
            _fail(self, "occurred_at", "must be timezone-aware (naive datetimes are ambiguous)")
        # Not just a non-zero offset: a zone at UTC+0 (Europe/London in winter)
        # is still not UTC, and would make occurred_at's tzinfo vary by season.
        if when.tzinfo is not UTC:
            try:
                when = when.astimezone(UTC)
            except OverflowError:  # e.g. 0001-01-01T00:00+05:00 has no UTC equivalent
                raise InvalidEventError(
                    type(self).__name__, "occurred_at", f"is out of range in UTC: {when}"
                ) from None
            object.__setattr__(self, "occurred_at", when)


def derived_id(cause: DomainEvent, key: str) -> UUID:
    """The id of the event derived from ``cause`` under ``key``: the same on every worker.

    A UUIDv7 with ``cause.occurred_at`` as its time and the rest hashed from
    ``cause.event_id`` and ``key``. A handler that derives an event in the
    fleet (module ``eventbus._fleet``) builds it with
    ``event_id=derived_id(cause, "networth")`` and
    ``occurred_at=cause.occurred_at``, so every worker derives the same bytes.
    ``key`` tells apart several events derived from one cause.
    """
    return derived_uuid7(cause.event_id, cause.occurred_at, key)


# --------------------------------------------------------------------- validators


def _fail(event: object, name: str, message: str) -> None:
    raise InvalidEventError(type(event).__name__, name, message)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def check_uuid(event: object, name: str) -> None:
    """Require ``event.<name>`` to be a `uuid.UUID`."""
    value = getattr(event, name)
    if not isinstance(value, UUID):
        _fail(event, name, f"must be a UUID, got {_describe(value)}")


def fits_decimal_bounds(value: Decimal) -> bool:
    """Whether finite ``value`` has at most `MAX_DECIMAL_DIGITS` digits each side of the point.

    Cheap (no arithmetic on the digits): check it before computing with
    untrusted amounts, as `check_decimal` does.
    """
    exponent = value.as_tuple().exponent
    return (
        isinstance(exponent, int)
        and exponent >= -MAX_DECIMAL_DIGITS
        and value.adjusted() < MAX_DECIMAL_DIGITS
    )


def check_decimal(event: object, name: str) -> None:
    """Require ``event.<name>`` to be a finite `decimal.Decimal` (a float is refused).

    The value must also fit `MAX_DECIMAL_DIGITS` digits on each side of the
    decimal point. Money never needs more, and the bound keeps exact arithmetic
    on hostile input (``1e-999999`` against ``1e999999``) from building
    megabyte-long numbers.
    """
    value = getattr(event, name)
    if not isinstance(value, Decimal):
        hint = " (floats are inexact; pass Decimal('...'))" if isinstance(value, float) else ""
        _fail(event, name, f"must be a Decimal, got {_describe(value)}{hint}")
    if not value.is_finite():
        _fail(event, name, f"must be finite, got {value!r}")
    if not fits_decimal_bounds(value):
        size = value.as_tuple()
        # Describe the size, not the value: the value may be a million digits.
        _fail(
            event,
            name,
            f"must have at most {MAX_DECIMAL_DIGITS} digits before and after the decimal "
            f"point, got one with exponent {size.exponent} and {len(size.digits)} digits",
        )


def check_currency(event: object, name: str) -> None:
    """Require ``event.<name>`` to be a 3-letter uppercase ISO 4217 style code."""
    value = getattr(event, name)
    if not (
        isinstance(value, str)
        and len(value) == 3
        and value.isascii()
        and value.isalpha()
        and value.isupper()
    ):
        _fail(event, name, f"must be a 3-letter uppercase currency code, got {_describe(value)}")


def check_count(event: object, name: str) -> None:
    """Require ``event.<name>`` to be an `int` in ``[0, MAX_COUNT]`` (``bool`` is refused).

    The upper bound is a signed 64-bit integer's, what JSON codecs (orjson) and
    databases carry exactly.
    """
    value = getattr(event, name)
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(event, name, f"must be an int, got {_describe(value)}")
    if value < 0:
        _fail(event, name, f"must be non-negative, got {value}")
    if value > MAX_COUNT:
        # A huge int is described by size: str() of it may be slow or refused.
        shown = str(value) if value.bit_length() <= 128 else f"a {value.bit_length()}-bit int"
        _fail(event, name, f"must be at most {MAX_COUNT} (a signed 64-bit int), got {shown}")


# ----------------------------------------------------------------------- registry

_registry_lock = threading.Lock()
_by_name: dict[str, type[DomainEvent]] = {}


def event_type(name: str) -> Callable[[type[E]], type[E]]:
    """Class decorator registering a `DomainEvent` subclass under a wire name.

    Apply it *above* ``@dataclass``. Names are unique per process; registering
    the same class again (e.g. on module reload) replaces the old entry.

    Raises:
        TypeError: The class is not a dataclass subclass of `DomainEvent`.
        ValueError: The name is empty, or taken by a different class.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"event wire name must be a non-empty string, got {name!r}")

    def decorate(cls: type[E]) -> type[E]:
        if not (isinstance(cls, type) and issubclass(cls, DomainEvent) and is_dataclass(cls)):
            raise TypeError(f"@event_type({name!r}) needs a dataclass subclass of DomainEvent")
        with _registry_lock:
            old = _by_name.get(name)
            # Same module and qualname: the same class re-created (a module reload).
            same = old is not None and (old.__module__, old.__qualname__) == (
                cls.__module__,
                cls.__qualname__,
            )
            if old is not None and not same:
                raise ValueError(
                    f"event wire name {name!r} is already used by "
                    f"{old.__module__}.{old.__qualname__}"
                )
            _by_name[name] = cls
            cls.__event_name__ = name  # type: ignore[attr-defined]
        return cls

    return decorate


def event_name(cls: type[DomainEvent]) -> str | None:
    """Return the wire name registered for exactly ``cls``, or ``None``."""
    name: str | None = cls.__dict__.get("__event_name__")
    return name


def event_class(name: str) -> type[DomainEvent] | None:
    """Return the event class registered under wire name ``name``, or ``None``."""
    return _by_name.get(name)


def registered_events() -> Mapping[str, type[DomainEvent]]:
    """Return a read-only snapshot of ``{wire name: event class}``."""
    with _registry_lock:
        return MappingProxyType(dict(_by_name))


# -------------------------------------------------------------------- fleet events


@event_type("eventbus.order.gap")
@dataclass(frozen=True, kw_only=True, slots=True)
class OrderGap(DomainEvent):
    """Entries of the fleet's order were lost before this worker read them.

    A sequencer that finds a gap (the Redis bridge: a stream trimmed past a
    slow reader, found through per-origin sequence numbers) delivers one to
    the fleet handlers, in order, where the gap is. Consumers that keep
    per-client history, such as the SSE broadcaster, tell their clients to
    refetch their state (``stream.reset``): their streams now have holes.

    Attributes:
        origin: The id of the worker whose entries are missing.
        missing: How many of its entries are missing (at least 1).
    """

    origin: str
    missing: int

    def __post_init__(self) -> None:
        DomainEvent.__post_init__(self)
        if not isinstance(self.origin, str) or not self.origin:
            _fail(self, "origin", f"must be a non-empty str, got {_describe(self.origin)}")
        check_count(self, "missing")
        if self.missing < 1:
            _fail(self, "missing", f"must be at least 1, got {self.missing}")
