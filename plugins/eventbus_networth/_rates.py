"""Exchange rates for the net-worth aggregator: providers, validation, env parsing.

A *rates provider* answers "how many units of ``to`` is one unit of ``frm``",
exactly, as a `Decimal`. It is either

* a mapping keyed by ``(from, to)`` currency pairs, e.g.
  ``{("EUR", "USD"): Decimal("1.08")}``: one euro is 1.08 dollars; or
* a callable ``rate(frm, to) -> Decimal`` that returns ``None`` or raises
  `LookupError` when it has no rate.

Rates are never inverted or chained: ``1 / rate`` is not exact in general, and
net worth must never be silently wrong. Give every pair you need.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Final, TypeAlias

from eventbus.events import is_currency_code

__all__ = [
    "BASE_ENV",
    "RATES_ENV",
    "RateLookup",
    "RatesProvider",
    "check_currency_code",
    "check_rate",
    "env_config",
    "parse_rates",
    "rate_lookup",
]

#: Base currency for the entry-point-loaded plugin, e.g. ``EVENTBUS_NETWORTH_BASE=EUR``.
BASE_ENV: Final = "EVENTBUS_NETWORTH_BASE"
#: Rates for the entry-point-loaded plugin, e.g. ``EVENTBUS_NETWORTH_RATES=EUR:USD=1.08,GBP:USD=1.27``.
RATES_ENV: Final = "EVENTBUS_NETWORTH_RATES"

#: What `NetWorthAggregator` accepts: a ``{(from, to): rate}`` mapping or a callable.
RatesProvider: TypeAlias = Mapping[tuple[str, str], Decimal] | Callable[[str, str], Decimal | None]
#: The normalised form: ``lookup(frm, to)`` returns the rate or ``None`` when there is none.
RateLookup: TypeAlias = Callable[[str, str], Decimal | None]


def check_currency_code(value: object, where: str) -> str:
    """Return ``value`` if it is a 3-letter uppercase code; else raise `ValueError` naming ``where``."""
    if not is_currency_code(value):
        shown = reprlib.repr(value)  # bounded: the value may come from an untrusted snapshot
        raise ValueError(f"{where}: must be a 3-letter uppercase currency code, got {shown}")
    return value


def check_rate(value: object, where: str) -> Decimal:
    """Return ``value`` if it is a finite, positive `Decimal`; else raise naming ``where``.

    Raises:
        TypeError: Not a Decimal (a float is inexact and refused).
        ValueError: Not finite, or not positive.
    """
    if not isinstance(value, Decimal):
        hint = " (floats are inexact; use Decimal('...'))" if isinstance(value, float) else ""
        raise TypeError(f"{where}: a rate must be a Decimal, got {type(value).__name__}{hint}")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{where}: a rate must be a finite positive Decimal, got {value}")
    return value


def rate_lookup(rates: RatesProvider | None) -> RateLookup:
    """Normalise a provider into a `RateLookup`, validating a mapping up front.

    Raises:
        TypeError: ``rates`` is neither a mapping nor callable, or a rate is not a Decimal.
        ValueError: A key is not a ``(from, to)`` pair of currency codes, or a rate is not positive.
    """
    if rates is None:
        return lambda frm, to: None
    if isinstance(rates, Mapping):
        table: dict[tuple[str, str], Decimal] = {}
        for key, value in rates.items():
            where = f"rates[{key!r}]"
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(
                    f"{where}: keys must be (from, to) currency pairs like ('EUR', 'USD')"
                )
            pair = (check_currency_code(key[0], where), check_currency_code(key[1], where))
            table[pair] = check_rate(value, where)
        return lambda frm, to: table.get((frm, to))
    if callable(rates):
        provider = rates

        def lookup(frm: str, to: str) -> Decimal | None:
            try:
                value = provider(frm, to)
            except LookupError:
                return None
            return None if value is None else check_rate(value, f"rates({frm!r}, {to!r})")

        return lookup
    raise TypeError(f"rates: expected a mapping or a callable, got {type(rates).__name__}")


def parse_rates(text: str, source: str = RATES_ENV) -> dict[tuple[str, str], Decimal]:
    """Parse ``"EUR:USD=1.08,GBP:USD=1.27"`` into ``{("EUR", "USD"): Decimal("1.08"), ...}``.

    Raises:
        ValueError: An item is malformed; the message names ``source`` and the item.
    """
    table: dict[tuple[str, str], Decimal] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        pair, sep, number = item.partition("=")
        frm, colon, to = pair.strip().partition(":")
        where = f"{source} item {item!r}"
        if not (sep and colon):
            raise ValueError(f"{where}: expected FROM:TO=RATE, e.g. EUR:USD=1.08")
        try:
            rate = Decimal(number.strip())
        except InvalidOperation:
            raise ValueError(f"{where}: {number.strip()!r} is not a decimal number") from None
        key = (check_currency_code(frm.strip(), where), check_currency_code(to.strip(), where))
        table[key] = check_rate(rate, where)
    return table


def env_config() -> tuple[str | None, dict[tuple[str, str], Decimal] | None]:
    """Read `BASE_ENV` and `RATES_ENV`; ``None`` for each one that is unset or empty.

    Raises:
        ValueError: A variable is set to something invalid (the message names it).
    """
    base = os.environ.get(BASE_ENV, "").strip() or None
    if base is not None:
        check_currency_code(base, BASE_ENV)
    text = os.environ.get(RATES_ENV, "").strip()
    return base, (parse_rates(text) if text else None)
