"""The simulated users behind ``eventbus demo``: accounts that sync on a timer.

A `Simulator` owns a few users, each with accounts in mixed currencies
(checking, savings, a credit card, a brokerage account). `Simulator.tick`
"syncs" one account per user, as a bank sync would report it: a realistic
balance move as an `AccountBalanceUpdated`, plus an `AccountHoldingsUpdated`
for a brokerage account. It only builds events; the demo runner publishes them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, final
from uuid import UUID

from eventbus.events import DomainEvent
from eventbus.portfolio import AccountBalanceUpdated, AccountHoldingsUpdated

__all__ = ["BASE_CURRENCY", "DEMO_RATES", "DemoUser", "Simulator", "money"]

BASE_CURRENCY: Final = "USD"
#: Fixed demo exchange rates: units of `BASE_CURRENCY` per unit of each currency.
DEMO_RATES: Final = {
    "USD": Decimal(1),
    "EUR": Decimal("1.08"),
    "GBP": Decimal("1.27"),
    "CHF": Decimal("1.13"),
    "JPY": Decimal("0.0067"),
}

# (name, home currency, savings currency): every user has a mix.
_PEOPLE: Final = (
    ("alice", "USD", "EUR"),
    ("bruno", "EUR", "CHF"),
    ("chiyo", "JPY", "USD"),
    ("dev", "GBP", "EUR"),
    ("elena", "CHF", "GBP"),
)


@dataclass(slots=True)
class _Account:
    account_id: UUID
    label: str
    kind: str  # checking | savings | card | brokerage
    currency: str
    opening: Decimal  # the balance the first sync finds
    balance: Decimal = Decimal(0)
    holdings: int = 0


@dataclass(slots=True)
class DemoUser:
    """A simulated user and their accounts."""

    user_id: UUID
    name: str
    accounts: list[_Account] = field(default_factory=list)


def money(value: Decimal, currency: str) -> Decimal:
    """Round ``value`` to the minor unit of ``currency`` (cents; whole yen)."""
    # Yen have no minor unit; the others have cents.
    return value.quantize(Decimal(1) if currency == "JPY" else Decimal("0.01"))


@final
class Simulator:
    """Users whose accounts change on every `tick`, as a bank sync would report.

    Args:
        users: How many users to simulate.
        rng: The random source; seed it for a repeatable run.
    """

    __slots__ = ("_rng", "users")

    def __init__(self, users: int, rng: random.Random) -> None:
        self._rng = rng
        self.users: list[DemoUser] = [self._make_user(i) for i in range(users)]

    def _uuid(self) -> UUID:
        # Random bits from our own rng (not uuid4), so --seed repeats the ids.
        return UUID(int=self._rng.getrandbits(128), version=4)

    def _amount(self, low: int, high: int, currency: str) -> Decimal:
        scale = 150 if currency == "JPY" else 1  # roughly the same value in yen
        cents = self._rng.randint(low * 100, high * 100) * scale
        return money(Decimal(cents) / 100, currency)

    def _make_user(self, i: int) -> DemoUser:
        name, home, other = _PEOPLE[i % len(_PEOPLE)]
        if i >= len(_PEOPLE):
            name = f"{name}{i // len(_PEOPLE) + 1}"
        amount, uuid = self._amount, self._uuid
        accounts = [
            _Account(uuid(), "Checking", "checking", home, amount(800, 6000, home)),
            _Account(uuid(), "Savings", "savings", other, amount(5000, 40000, other)),
            _Account(uuid(), "Credit card", "card", home, -amount(50, 1500, home)),
            _Account(uuid(), "Brokerage", "brokerage", "USD", amount(10000, 90000, "USD")),
        ]
        accounts[3].holdings = self._rng.randint(4, 12)
        return DemoUser(uuid(), name, accounts)

    def opening_sync(self) -> list[DomainEvent]:
        """Events of each account's first sync: every balance goes from 0 to its opening value."""
        events: list[DomainEvent] = []
        for user in self.users:
            for account in user.accounts:
                created, account.holdings = account.holdings, 0
                events.extend(self._sync(user, account, account.opening, created=created))
        return events

    def tick(self) -> list[DomainEvent]:
        """Sync one randomly chosen account of every user; return the resulting events."""
        events: list[DomainEvent] = []
        for user in self.users:
            account = self._rng.choice(user.accounts)
            events.extend(self._sync(user, account, self._next_balance(account)))
        return events

    def _next_balance(self, account: _Account) -> Decimal:
        rng, cur, balance = self._rng, account.currency, account.balance
        if account.kind == "checking":  # salary now and then, spending otherwise
            change = self._amount(1500, 3000, cur) if rng.random() < 0.05 else None
            change = change or -self._amount(5, 250, cur)
        elif account.kind == "savings":  # transfers in, the odd withdrawal
            change = self._amount(20, 500, cur) * (1 if rng.random() < 0.8 else -1)
        elif account.kind == "card":  # purchases, and paying the card off
            pay = rng.random() < 0.1 and balance < 0
            change = -balance if pay else -self._amount(3, 180, cur)
        else:  # brokerage: the market moves up to +-1.5%
            change = money(balance * Decimal(rng.randint(-150, 150)) / 10000, cur)
        new = money(balance + change, cur)
        if new == balance:  # this sync reports a change, so make it one
            new += Decimal(1) if cur == "JPY" else Decimal("0.01")
        return new

    def _sync(
        self, user: DemoUser, account: _Account, new: Decimal, created: int = 0
    ) -> list[DomainEvent]:
        previous, account.balance = account.balance, new
        events: list[DomainEvent] = [
            AccountBalanceUpdated.from_change(
                user_id=user.user_id,
                account_id=account.account_id,
                previous_balance=previous,
                new_balance=new,
                currency=account.currency,
            )
        ]
        if account.kind == "brokerage":
            if not created:  # a rebalance: buy something new, sell something old
                created = self._rng.randint(0, 1)
            deactivated = self._rng.randint(0, 1) if account.holdings > 1 else 0
            account.holdings += created - deactivated
            events.append(
                AccountHoldingsUpdated(
                    user_id=user.user_id,
                    account_id=account.account_id,
                    holdings_count=account.holdings,
                    created_count=created,
                    updated_count=self._rng.randint(0, account.holdings - created),
                    deactivated_count=deactivated,
                )
            )
        return events
