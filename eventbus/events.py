"""Domain events: the `DomainEvent` base class and the wire-name registry.

An event is a frozen, keyword-only, slotted dataclass. Subclasses add their own
fields and declare each field's check in its annotation (the ``check_*``
helpers below raise `InvalidEventError` naming the field). Any other rule goes
in a ``validate(self)`` method, the validation hook:

    @event_type("shop.order.placed")
    @dataclass(frozen=True, kw_only=True, slots=True)
    class OrderPlaced(DomainEvent):
        order_id: Annotated[UUID, check_uuid]
        total: Annotated[Decimal, check_decimal]
        note: str

        def validate(self) -> None:
            if len(self.note) > 500:
                raise InvalidEventError(type(self).__name__, "note", "is too long")

``validate`` runs after the base fields and the declared checks passed, at
construction and when the codec decodes the event. Every class in the
hierarchy that defines one has it called, the base class's first, so a
subclass never calls ``super()`` (which slotted dataclasses cannot do: zero-
argument ``super()`` fails in them on Python 3.11 to 3.13) and never writes a
``__post_init__``. (A class that does define ``__post_init__`` must call
``DomainEvent.__post_init__(self)`` itself, and loses the generated
constructor.)

The declared form is fast: a registered class without a ``__post_init__`` of
its own gets a generated constructor with the checks inlined (module
``eventbus._compile``), and `DomainEvent.__post_init__` runs the same checks
from code generated once per class. `equals_difference` declares the one
cross-field rule the portfolio events need.

The decorator gives the class a stable *wire name*, used by `eventbus.codec`, the
SSE plugin and the Redis bridge.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, is_dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TypeVar
from uuid import UUID

from eventbus import _checks

# Defined with the rules, and part of this module's API (see __all__).
from eventbus._checks import (
    EXACT,
    MAX_COUNT,
    MAX_DECIMAL_DIGITS,
    Difference,
    fits_decimal_bounds,
    is_currency_code,
)
from eventbus._compile import install_init, layout_of
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
    "equals_difference",
    "event_class",
    "event_label",
    "event_name",
    "event_type",
    "fits_decimal_bounds",
    "is_currency_code",
    "registered_events",
    "uuid7",
]

E = TypeVar("E", bound="DomainEvent")


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
        """Check the base fields and every check declared on a field (see the module docstring).

        Raises:
            InvalidEventError: A field failed its check; the error names it.
        """
        validate = _validators.get(type(self))
        if validate is None:
            # Kept even when the annotations did not resolve (base rules only,
            # as before): resolving again on every construction would be slow.
            validate = _validators[type(self)] = _layout(type(self)).validate
        validate(self)


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


_describe = _checks.describe


def check_uuid(event: object, name: str) -> None:
    """Require ``event.<name>`` to be a `uuid.UUID`."""
    _checks.UUIDS.slow(type(event).__name__, name, getattr(event, name))


def check_decimal(event: object, name: str) -> None:
    """Require ``event.<name>`` to be a finite `decimal.Decimal` (a float is refused).

    The value must also fit `MAX_DECIMAL_DIGITS` digits on each side of the
    decimal point. Money never needs more, and the bound keeps exact arithmetic
    on hostile input (``1e-999999`` against ``1e999999``) from building
    megabyte-long numbers.
    """
    _checks.MONEY.slow(type(event).__name__, name, getattr(event, name))


def check_currency(event: object, name: str) -> None:
    """Require ``event.<name>`` to be a 3-letter uppercase ISO 4217 style code."""
    _checks.CURRENCY.slow(type(event).__name__, name, getattr(event, name))


def check_count(event: object, name: str) -> None:
    """Require ``event.<name>`` to be an `int` in ``[0, MAX_COUNT]`` (``bool`` is refused).

    The upper bound is a signed 64-bit integer's, what JSON codecs (orjson) and
    databases carry exactly.
    """
    _checks.COUNT.slow(type(event).__name__, name, getattr(event, name))


def equals_difference(minuend: str, subtrahend: str) -> Difference:
    """Declare, in a field's annotation, that it must equal ``minuend - subtrahend`` exactly.

    For example ``delta: Annotated[Decimal, check_decimal,
    equals_difference("new_balance", "previous_balance")]``. All three fields
    must declare `check_decimal` (bounded amounts; checked first). A wrong
    value raises `InvalidEventError` naming this field, with the expected
    difference in the message.
    """
    return Difference(minuend, subtrahend)


# The helpers a field may declare, and the rule each inlines as.
_DECLARABLE: Final[Mapping[object, _checks.Kind]] = {
    check_uuid: _checks.UUIDS,
    check_decimal: _checks.MONEY,
    check_currency: _checks.CURRENCY,
    check_count: _checks.COUNT,
}
_BASE_RULES: Final = {"event_id": _checks.UUIDS, "occurred_at": _checks.WHEN}
# Default factories whose values pass their field's rule as they are.
_TRUSTED_FACTORIES: Final[Mapping[object, _checks.Kind]] = {
    uuid7: _checks.UUIDS,
    _utcnow: _checks.WHEN,
}
_validators: dict[type, Callable[[Any], None]] = {}


def _layout(cls: type) -> Any:
    return layout_of(cls, _DECLARABLE, _BASE_RULES, DomainEvent.__post_init__)


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
        _compile(cls)
        return cls

    return decorate


def _compile(cls: type[DomainEvent]) -> None:
    """Give ``cls`` its generated constructor, when every rule of it is declared on fields."""
    layout = _layout(cls)
    init = cls.__dict__.get("__init__")
    # Only a constructor dataclasses wrote (or we did): never one the class defines itself.
    generated = init is not None and (
        getattr(init, "__eventbus_compiled__", False)
        or getattr(getattr(init, "__code__", None), "co_filename", "") == "<string>"
    )
    if layout.compilable and generated:
        install_init(layout, _TRUSTED_FACTORIES)


def event_name(cls: type[DomainEvent]) -> str | None:
    """Return the wire name registered for exactly ``cls``, or ``None``."""
    name: str | None = cls.__dict__.get("__event_name__")
    return name


def event_label(cls: type[DomainEvent]) -> str:
    """``cls``'s wire name, or its qualified name when it has none: a bounded label for it.

    What observability uses to name an event type (span names, metric labels):
    one value per class, never per event.
    """
    name: str | None = cls.__dict__.get("__event_name__")
    return name if name is not None else cls.__qualname__


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
