"""Shared builders for the net-worth tests: fixed rates and balance events."""

from __future__ import annotations

from decimal import Decimal
from typing import Final
from uuid import UUID

from eventbus.portfolio import AccountBalanceUpdated

__all__ = ["RATES", "balance"]

#: Fixed demo rates into USD. CHF deliberately has none (the "missing rate" case).
RATES: Final = {
    ("EUR", "USD"): Decimal("1.08"),
    ("GBP", "USD"): Decimal("1.27"),
    ("JPY", "USD"): Decimal("0.0067"),
}


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
