"""The portfolio events: what an account sync tells the rest of the app.

Operational events, published after a bank or brokerage sync so that browsers
can update live (over SSE) without polling. They carry no audit duty: the sync
operations that cause them are audited on their own.

=====================================  ================================
Event                                  Wire name (SSE ``event:`` field)
=====================================  ================================
`AccountBalanceUpdated`                ``portfolio.balance.updated``
`AccountHoldingsUpdated`               ``portfolio.holdings.updated``
`PortfolioNetWorthRecalculated`        ``portfolio.networth.updated``
=====================================  ================================

Every field is validated at construction; a bad value raises
`eventbus.exceptions.InvalidEventError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Self
from uuid import UUID

from eventbus.events import (
    EXACT,
    DomainEvent,
    check_count,
    check_currency,
    check_decimal,
    check_uuid,
    event_type,
    fits_decimal_bounds,
)
from eventbus.exceptions import InvalidEventError

__all__ = ["AccountBalanceUpdated", "AccountHoldingsUpdated", "PortfolioNetWorthRecalculated"]


def _check_delta(event: DomainEvent, previous: Decimal, new: Decimal, delta: Decimal) -> None:
    expected = EXACT.subtract(new, previous)
    if delta != expected:
        raise InvalidEventError(
            type(event).__name__,
            "delta",
            f"must equal new - previous ({new} - {previous} = {expected}), got {delta}",
        )


@event_type("portfolio.balance.updated")
@dataclass(frozen=True, kw_only=True, slots=True)
class AccountBalanceUpdated(DomainEvent):
    """An account's balance changed during a sync.

    Attributes:
        user_id: The user who owns the account.
        account_id: The account whose balance changed.
        previous_balance: Balance before the sync.
        new_balance: Balance after the sync.
        delta: ``new_balance - previous_balance``, exactly.
        currency: The account's currency, e.g. ``"USD"``.
    """

    user_id: UUID
    account_id: UUID
    previous_balance: Decimal
    new_balance: Decimal
    delta: Decimal
    currency: str

    def __post_init__(self) -> None:
        DomainEvent.__post_init__(self)
        check_uuid(self, "user_id")
        check_uuid(self, "account_id")
        check_decimal(self, "previous_balance")
        check_decimal(self, "new_balance")
        check_decimal(self, "delta")
        check_currency(self, "currency")
        _check_delta(self, self.previous_balance, self.new_balance, self.delta)

    @classmethod
    def from_change(
        cls,
        *,
        user_id: UUID,
        account_id: UUID,
        previous_balance: Decimal,
        new_balance: Decimal,
        currency: str,
    ) -> Self:
        """Build the event from two balances, computing ``delta`` for you."""
        probe = (previous_balance, new_balance)
        # Bounded first: exact subtraction of 1e-999999 from 1e999999 is huge.
        exact = all(
            isinstance(v, Decimal) and v.is_finite() and fits_decimal_bounds(v) for v in probe
        )
        delta = EXACT.subtract(new_balance, previous_balance) if exact else Decimal(0)
        return cls(
            user_id=user_id,
            account_id=account_id,
            previous_balance=previous_balance,
            new_balance=new_balance,
            delta=delta,  # invalid inputs are reported by __post_init__, naming the field
            currency=currency,
        )


@event_type("portfolio.holdings.updated")
@dataclass(frozen=True, kw_only=True, slots=True)
class AccountHoldingsUpdated(DomainEvent):
    """An account's holdings (positions) changed during a sync.

    Attributes:
        user_id: The user who owns the account.
        account_id: The account whose holdings changed.
        holdings_count: Holdings in the account after the sync.
        created_count: Holdings the sync created.
        updated_count: Existing holdings the sync updated.
        deactivated_count: Holdings the sync marked inactive.
    """

    user_id: UUID
    account_id: UUID
    holdings_count: int
    created_count: int
    updated_count: int
    deactivated_count: int

    def __post_init__(self) -> None:
        DomainEvent.__post_init__(self)
        check_uuid(self, "user_id")
        check_uuid(self, "account_id")
        for name in ("holdings_count", "created_count", "updated_count", "deactivated_count"):
            check_count(self, name)


@event_type("portfolio.networth.updated")
@dataclass(frozen=True, kw_only=True, slots=True)
class PortfolioNetWorthRecalculated(DomainEvent):
    """A user's net worth was recalculated and changed.

    Attributes:
        user_id: The user whose net worth changed.
        previous_net_worth: Net worth before the change.
        new_net_worth: Net worth after the change.
        delta: ``new_net_worth - previous_net_worth``, exactly.
        currency: The base currency of the calculation, e.g. ``"USD"``.
        account_count: Accounts included in the calculation.
    """

    user_id: UUID
    previous_net_worth: Decimal
    new_net_worth: Decimal
    delta: Decimal
    currency: str
    account_count: int

    def __post_init__(self) -> None:
        DomainEvent.__post_init__(self)
        check_uuid(self, "user_id")
        check_decimal(self, "previous_net_worth")
        check_decimal(self, "new_net_worth")
        check_decimal(self, "delta")
        check_currency(self, "currency")
        check_count(self, "account_count")
        _check_delta(self, self.previous_net_worth, self.new_net_worth, self.delta)
