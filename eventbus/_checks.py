"""The field rules of events, each as a cheap inline test plus the full rule.

A `Kind` is one rule (a UUID, an amount of money, a currency code, a count, an
aware timestamp) in two forms:

* ``fast``: a Python expression over a value (written ``{v}``) that is true
  only for values that are valid *as they are*. It is cheap (type identity,
  one or two C method calls) and may be false for some valid values.
* ``slow``: the full rule. It returns the value to store (normalised where the
  rule says so) or raises `InvalidEventError` with the message that names the
  field.

`eventbus._compile` inlines ``fast`` into each event class's generated
constructor and validator and calls ``slow`` only when ``fast`` is false, so a
valid event pays for the cheap test alone while every message stays exactly
the full rule's. The public ``check_*`` helpers of `eventbus.events` call
``slow``.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TypeGuard, final
from uuid import UUID

from eventbus.exceptions import InvalidEventError

__all__ = [
    "COUNT",
    "CURRENCY",
    "EXACT",
    "INLINE",
    "MAX_COUNT",
    "MAX_DECIMAL_DIGITS",
    "MONEY",
    "UUIDS",
    "WHEN",
    "Difference",
    "Kind",
    "describe",
    "fits_decimal_bounds",
    "is_currency_code",
    "is_money",
    "subtract",
    "wrong_difference",
]

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

# Two amounts within the digit bounds differ by at most 2 * 40 + 1 digits, so
# this context subtracts them exactly, and faster than EXACT (whose MAX_PREC
# costs ~70 ns a call). Inexact or Rounded would raise, never round silently.
_BOUNDED: Final = decimal.Context(
    prec=2 * MAX_DECIMAL_DIGITS + 1,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.Inexact, decimal.Rounded, decimal.Overflow],
)


def describe(value: object) -> str:
    """``"<type name> <repr>"``, how messages show a bad value."""
    return f"{type(value).__name__} {value!r}"


def _fail(owner: str, name: str, message: str) -> InvalidEventError:
    return InvalidEventError(owner, name, message)


# ------------------------------------------------------------------ the full rules


def _uuid(owner: str, name: str, value: Any) -> Any:
    if not isinstance(value, UUID):
        raise _fail(owner, name, f"must be a UUID, got {describe(value)}")
    return value


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


def _money(owner: str, name: str, value: Any) -> Any:
    if not isinstance(value, Decimal):
        hint = " (floats are inexact; pass Decimal('...'))" if isinstance(value, float) else ""
        raise _fail(owner, name, f"must be a Decimal, got {describe(value)}{hint}")
    if not value.is_finite():
        raise _fail(owner, name, f"must be finite, got {value!r}")
    if not fits_decimal_bounds(value):
        size = value.as_tuple()
        # Describe the size, not the value: the value may be a million digits.
        raise _fail(
            owner,
            name,
            f"must have at most {MAX_DECIMAL_DIGITS} digits before and after the decimal "
            f"point, got one with exponent {size.exponent} and {len(size.digits)} digits",
        )
    return value


# Codes seen valid: a set lookup instead of five str method calls. Only exact
# str values that passed the full rule enter, so it holds at most 26**3 codes.
_CODES: Final[set[str]] = set()


def is_currency_code(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a 3-letter uppercase ASCII code (ISO 4217 style)."""
    return (
        isinstance(value, str)
        and len(value) == 3
        and value.isascii()
        and value.isalpha()
        and value.isupper()
    )


def _currency(owner: str, name: str, value: Any) -> Any:
    if not is_currency_code(value):
        raise _fail(
            owner, name, f"must be a 3-letter uppercase currency code, got {describe(value)}"
        )
    if type(value) is str:
        _CODES.add(value)
    return value


def _count(owner: str, name: str, value: Any) -> Any:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(owner, name, f"must be an int, got {describe(value)}")
    if value < 0:
        raise _fail(owner, name, f"must be non-negative, got {value}")
    if value > MAX_COUNT:
        # A huge int is described by size: str() of it may be slow or refused.
        shown = str(value) if value.bit_length() <= 128 else f"a {value.bit_length()}-bit int"
        raise _fail(owner, name, f"must be at most {MAX_COUNT} (a signed 64-bit int), got {shown}")
    return value


def _when(owner: str, name: str, value: Any) -> Any:
    if not isinstance(value, datetime):
        raise _fail(owner, name, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _fail(owner, name, "must be timezone-aware (naive datetimes are ambiguous)")
    # Not just a non-zero offset: a zone at UTC+0 (Europe/London in winter) is
    # still not UTC, and would make the tzinfo vary by season.
    if value.tzinfo is not UTC:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+05:00 has no UTC equivalent
            raise _fail(owner, name, f"is out of range in UTC: {value}") from None
    return value


# ------------------------------------------------------------------------- kinds


@final
@dataclass(frozen=True, slots=True)
class Kind:
    """One field rule: an inline test for the common valid case, and the full rule.

    Attributes:
        name: What the rule is, for reprs.
        fast: An expression over ``{v}``, using only names from `INLINE` (and
            methods of the value), true only for values valid as they are.
        slow: The full rule, ``slow(class name, field name, value)``: returns
            the value to store, or raises `InvalidEventError`.
        carries: The type a value that passed the rule is an instance of. On a
            field of that type the codec writes such a value with no further
            check: the rule has made it one JSON carries exactly.
    """

    name: str
    fast: str
    slow: Callable[[str, str, Any], Any]
    carries: type


_CENT: Final = Decimal("0.01")
_UNIT: Final = Decimal(1)

UUIDS: Final = Kind("uuid", "(__eb_type({v}) is __eb_UUID)", _uuid, UUID)
# Amounts with 2 decimals (cents) or none are the common case; same_quantum is
# an exponent comparison (finite only), far cheaper than as_tuple().
MONEY: Final = Kind(
    "money",
    "(__eb_type({v}) is __eb_Decimal"
    " and ({v}.same_quantum(__eb_CENT) or {v}.same_quantum(__eb_UNIT))"
    " and {v}.adjusted() < __eb_DIGITS)",
    _money,
    Decimal,
)
CURRENCY: Final = Kind(
    "currency", "(__eb_type({v}) is __eb_str and {v} in __eb_CODES)", _currency, str
)
COUNT: Final = Kind(
    "count", "(__eb_type({v}) is __eb_int and 0 <= {v} <= __eb_MAX_COUNT)", _count, int
)
WHEN: Final = Kind(
    "aware UTC datetime",
    "(__eb_type({v}) is __eb_datetime and {v}.tzinfo is __eb_UTC)",
    _when,
    datetime,
)

#: The names the ``fast`` expressions use, for the namespace of generated code.
INLINE: Final[dict[str, Any]] = {
    # Prefixed: generated constructors take the fields as parameters, and a
    # field may be called "type" or "str".
    "__eb_type": type,
    "__eb_str": str,
    "__eb_int": int,
    "__eb_UUID": UUID,
    "__eb_Decimal": Decimal,
    "__eb_CENT": _CENT,
    "__eb_UNIT": _UNIT,
    "__eb_DIGITS": MAX_DECIMAL_DIGITS,
    "__eb_CODES": _CODES,
    "__eb_MAX_COUNT": MAX_COUNT,
    "__eb_datetime": datetime,
    "__eb_UTC": UTC,
    "__eb_subtract": _BOUNDED.subtract,
}


@final
@dataclass(frozen=True, slots=True)
class Difference:
    """A cross-field rule: the field must equal ``minuend - subtrahend``, exactly.

    Checked after every field's own rule, so both operands are known finite
    amounts within the digit bounds (the subtraction is then exact and cheap).
    """

    minuend: str
    subtrahend: str


def wrong_difference(owner: str, name: str, new: Decimal, previous: Decimal, got: Any) -> None:
    """Raise `InvalidEventError` unless ``got == new - previous`` (computed exactly)."""
    expected = EXACT.subtract(new, previous)
    if got != expected:
        raise _fail(
            owner,
            name,
            f"must equal new - previous ({new} - {previous} = {expected}), got {got}",
        )


def is_money(value: object) -> bool:
    """Whether ``value`` passes the money rule (`check_decimal`), without raising."""
    if type(value) is Decimal and (value.same_quantum(_CENT) or value.same_quantum(_UNIT)):
        return value.adjusted() < MAX_DECIMAL_DIGITS
    return isinstance(value, Decimal) and value.is_finite() and fits_decimal_bounds(value)


def subtract(new: Decimal, previous: Decimal) -> Decimal:
    """``new - previous`` exactly, for two amounts that pass the money rule."""
    return _BOUNDED.subtract(new, previous)
