"""The plugin's own event type, `LargeWithdrawal`, registered under a wire name."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from eventbus import DomainEvent, InvalidEventError, event_type
from eventbus.events import check_currency, check_decimal, check_uuid

__all__ = ["LargeWithdrawal"]


# The wire name is what codec.dumps(), the SSE `event:` field and the Redis
# bridge use. Prefix it with your package's namespace: names are global.
@event_type("example.withdrawal.large")
@dataclass(frozen=True, kw_only=True, slots=True)
class LargeWithdrawal(DomainEvent):
    """A balance dropped by at least the plugin's threshold in one sync.

    Attributes:
        user_id: The user who owns the account.
        account_id: The account the money left.
        amount: How much left, as a positive amount.
        currency: The account's currency.
        threshold: The threshold that was crossed, in that currency.
    """

    user_id: UUID
    account_id: UUID
    amount: Decimal
    currency: str
    threshold: Decimal

    def __post_init__(self) -> None:
        # Zero-argument super() does not work in slotted dataclasses on 3.11.
        DomainEvent.__post_init__(self)
        check_uuid(self, "user_id")
        check_uuid(self, "account_id")
        check_decimal(self, "amount")
        check_currency(self, "currency")
        check_decimal(self, "threshold")
        if self.amount <= 0:
            raise InvalidEventError(
                type(self).__name__, "amount", f"must be > 0, got {self.amount}"
            )
