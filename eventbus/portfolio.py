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
`eventbus.exceptions.InvalidEventError` naming the field. The checks are
declared on the fields (``Annotated[Decimal, check_decimal]``), so each class
gets a generated constructor with them inlined (see `eventbus.events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Self
from uuid import UUID

from eventbus._checks import is_money, subtract
from eventbus.events import (
    DomainEvent,
    check_count,
    check_currency,
    check_decimal,
    check_uuid,
    equals_difference,
    event_type,
)

__all__ = ["AccountBalanceUpdated", "AccountHoldingsUpdated", "PortfolioNetWorthRecalculated"]


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

    user_id: Annotated[UUID, check_uuid]
    account_id: Annotated[UUID, check_uuid]
    previous_balance: Annotated[Decimal, check_decimal]
    new_balance: Annotated[Decimal, check_decimal]
    delta: Annotated[Decimal, check_decimal, equals_difference("new_balance", "previous_balance")]
    currency: Annotated[str, check_currency]

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
        # Bounded first: exact subtraction of 1e-999999 from 1e999999 is huge.
        if is_money(previous_balance) and is_money(new_balance):
            delta = subtract(new_balance, previous_balance)
        else:
            delta = Decimal(0)
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

    user_id: Annotated[UUID, check_uuid]
    account_id: Annotated[UUID, check_uuid]
    holdings_count: Annotated[int, check_count]
    created_count: Annotated[int, check_count]
    updated_count: Annotated[int, check_count]
    deactivated_count: Annotated[int, check_count]


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

    user_id: Annotated[UUID, check_uuid]
    previous_net_worth: Annotated[Decimal, check_decimal]
    new_net_worth: Annotated[Decimal, check_decimal]
    delta: Annotated[
        Decimal, check_decimal, equals_difference("new_net_worth", "previous_net_worth")
    ]
    currency: Annotated[str, check_currency]
    account_count: Annotated[int, check_count]
