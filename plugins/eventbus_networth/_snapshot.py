"""The aggregator's snapshot format: orjson bytes, Decimals as strings (exact).

Layout (version 1):

    {"format": "eventbus-networth/1",
     "base_currency": "USD",
     "users": {"<user uuid>": {
         "net_worth": "1234.56",
         "accounts": {"<account uuid>": ["1000.00", "EUR", "1080.0000"]},
         "recent": ["<event uuid>", ...]}}}

Each account is ``[balance, currency, value in the base currency]``. The value is
stored, not recomputed, because it was converted at the rate in effect when the
balance was applied.

A snapshot may come from another worker (the bus's projection bootstrap), so
`decode` trusts nothing: every amount must fit the bounds an event may carry
(`eventbus.events.fits_decimal_bounds`), each total must be the sum of its
accounts, and every id must be a UUID.
"""

from __future__ import annotations

import itertools
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from uuid import UUID

import orjson

from eventbus.events import EXACT, MAX_DECIMAL_DIGITS, fits_decimal_bounds
from eventbus_networth._rates import check_currency_code

__all__ = ["CHUNK", "FORMAT", "MAX_AMOUNT_CHARS", "UserState", "decode", "encode"]

FORMAT: Final = "eventbus-networth/1"
#: Users encoded per ``orjson.dumps`` call (see `encode`).
CHUNK: Final = 64


@dataclass(frozen=True, slots=True)
class UserState:
    """One user's restorable state."""

    net_worth: Decimal
    accounts: dict[UUID, tuple[Decimal, str, Decimal]]
    recent: list[UUID]


def encode(base_currency: str, users: Iterable[tuple[UUID, UserState]]) -> bytes:
    """Serialise per-user state to bytes.

    ``users`` is consumed `CHUNK` users at a time, each chunk encoded by one
    ``orjson.dumps`` call: no single call holds the GIL for long, and a lazy
    ``users`` (copies made as they are needed) keeps few objects alive at
    once, so a snapshot taken in a worker thread triggers no full garbage
    collection and leaves the event loop responsive. orjson writes the UUIDs
    (keys too, with ``OPT_NON_STR_KEYS``) in their canonical form, as
    ``str(uuid)`` would.
    """
    head = orjson.dumps({"format": FORMAT, "base_currency": base_currency})
    pending = iter(users)
    parts = []
    while chunk := list(itertools.islice(pending, CHUNK)):
        encoded = orjson.dumps(
            {
                uid: {
                    "net_worth": str(state.net_worth),
                    "accounts": {
                        aid: [str(balance), currency, str(value)]
                        for aid, (balance, currency, value) in state.accounts.items()
                    },
                    "recent": state.recent,
                }
                for uid, state in chunk
            },
            option=orjson.OPT_NON_STR_KEYS,
        )
        parts.append(encoded[1:-1])
    return b'%s,"users":{%s}}' % (head[:-1], b",".join(parts))


#: The longest amount string `decode` parses: 40 digits each side of the point,
#: a sign, the point, and room for an exponent. Anything longer is refused
#: before ``Decimal()`` reads it.
MAX_AMOUNT_CHARS: Final = 100

# What an error message shows of an untrusted value: a bounded repr.
_SHOWN: Final = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxdict = 4
_SHOWN.maxlevel = 2


def _shown(raw: object) -> str:
    return _SHOWN.repr(raw)


def _key(raw: str) -> str:
    """A key of the snapshot as a path shows it: cut to 60 characters."""
    return raw if len(raw) <= 60 else f"{raw[:60]}...({len(raw):,} characters)"


def _uuid(raw: Any, where: str) -> UUID:
    if isinstance(raw, str) and len(raw) <= MAX_AMOUNT_CHARS:
        try:
            return UUID(raw)
        except ValueError:
            pass
    raise ValueError(f"{where}: expected a UUID string, got {_shown(raw)}")


def _decimal(raw: Any, where: str, index: str = "") -> Decimal:
    """``raw`` as a Decimal, bounded before it is parsed and before any arithmetic.

    ``Decimal()`` gets only a short ASCII string; the value must then be
    finite and fit the bounds an event may carry. So no amount in a snapshot
    can build a huge number (``1e-999999`` plus ``1e999999`` would need a
    million digits) or cost more than a short parse.
    """
    if isinstance(raw, str) and len(raw) <= MAX_AMOUNT_CHARS and raw.isascii():
        try:
            value = Decimal(raw)
        except InvalidOperation:
            pass
        else:
            if value.is_finite() and fits_decimal_bounds(value):
                return value
    raise ValueError(
        f"{where}{index}: expected a finite decimal string with at most {MAX_DECIMAL_DIGITS} "
        f"digits each side of the point, got {_shown(raw)}"
    )


def _obj(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
    return raw


def decode(data: bytes | bytearray | memoryview | str, base_currency: str) -> dict[UUID, UserState]:
    """Parse and validate snapshot bytes made by `encode`.

    Every amount is bounded (`_decimal`) before it takes part in any
    arithmetic, and each id is checked before what it names, so a bad
    snapshot costs about what reading it does. Messages show at most 60
    characters of any value or key.

    Raises:
        ValueError: Not a snapshot, a different base currency, or an invalid
            value; the message names the offending path.
    """
    try:
        root = _obj(orjson.loads(data), "snapshot")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"snapshot: not valid JSON: {exc}") from exc
    if root.get("format") != FORMAT:
        raise ValueError(f"snapshot.format: expected {FORMAT!r}, got {_shown(root.get('format'))}")
    if root.get("base_currency") != base_currency:
        raise ValueError(
            f"snapshot.base_currency: the snapshot is in {_shown(root.get('base_currency'))}, "
            f"this aggregator in {base_currency!r}"
        )
    users: dict[UUID, UserState] = {}
    for raw_uid, raw_user in _obj(root.get("users"), "snapshot.users").items():
        at = f"snapshot.users[{_key(raw_uid)}]"
        user_id = _uuid(raw_uid, at)
        user = _obj(raw_user, at)
        accounts: dict[UUID, tuple[Decimal, str, Decimal]] = {}
        total = Decimal(0)
        for raw_aid, raw_acc in _obj(user.get("accounts"), f"{at}.accounts").items():
            where = f"{at}.accounts[{_key(raw_aid)}]"
            account_id = _uuid(raw_aid, where)
            if not (isinstance(raw_acc, list) and len(raw_acc) == 3):
                raise ValueError(
                    f"{where}: expected [balance, currency, value], got {_shown(raw_acc)}"
                )
            balance, currency, value = raw_acc
            value = _decimal(value, where, "[2]")
            accounts[account_id] = (
                _decimal(balance, where, "[0]"),
                check_currency_code(currency, f"{where}[1]"),
                value,
            )
            total = EXACT.add(total, value)  # bounded operands: at most 80 digits, exact
        net_worth = _decimal(user.get("net_worth"), f"{at}.net_worth")
        if net_worth != total:
            raise ValueError(
                f"{at}.net_worth: {net_worth} is not the sum of the account values ({total})"
            )
        recent = user.get("recent")
        if not isinstance(recent, list):
            raise ValueError(f"{at}.recent: expected a list of event ids, got {_shown(recent)}")
        users[user_id] = UserState(net_worth, accounts, [_uuid(e, f"{at}.recent") for e in recent])
    return users
