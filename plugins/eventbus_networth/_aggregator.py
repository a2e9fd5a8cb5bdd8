"""`NetWorthAggregator`: per-user running net worth, exact and O(1) per update.

State per user: each account's last balance, currency and value in the base
currency, the running total, a bounded set of recently applied event ids, and
a lock. A balance update adjusts the total by the difference between the
account's new and old value, so its cost does not depend on how many accounts
the user has. Arithmetic uses `eventbus.events.EXACT`: no rounding, no float.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Final, NamedTuple, final
from uuid import UUID

from eventbus.events import EXACT, MAX_DECIMAL_DIGITS, derived_id, fits_decimal_bounds
from eventbus.exceptions import InvalidEventError
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus_networth import _snapshot
from eventbus_networth._rates import RatesProvider, check_currency_code, rate_lookup

__all__ = ["AccountBalance", "NetWorthAggregator"]

_log = logging.getLogger("eventbus.networth")

_ZERO: Final = Decimal(0)

#: The key of the net-worth event derived from a balance update (`derived_id`).
DERIVED_KEY: Final = "networth"


class AccountBalance(NamedTuple):
    """An account's last known balance, in the account's own currency."""

    balance: Decimal
    currency: str


@final
class _User:
    """One user's state; every field is read and written under ``lock``."""

    __slots__ = ("accounts", "lock", "recent", "total")

    def __init__(self) -> None:
        # Re-entrant: a handler of the derived event may publish another balance
        # update for the same user on the same thread.
        self.lock: Final = threading.RLock()
        self.accounts: dict[UUID, tuple[Decimal, str, Decimal]] = {}
        self.total = _ZERO
        self.recent: OrderedDict[UUID, None] = OrderedDict()


def _check_uuid(value: object, where: str) -> UUID:
    if not isinstance(value, UUID):
        raise TypeError(f"{where}: expected a UUID, got {type(value).__name__} {value!r}")
    return value


@final
class NetWorthAggregator:
    """Keeps every user's net worth in one base currency, updated per balance event.

    Balances in other currencies are converted when they are applied, with
    ``rates`` (see `eventbus_networth.RatesProvider`). A balance with no rate is
    not applied, and an error naming the user, account and currency is logged:
    net worth is never silently wrong. Holdings events carry no value, so they
    change nothing here.

    Thread-safe: each user has its own lock, taken only inside this class.

    Args:
        base_currency: The currency net worth is expressed in.
        rates: A ``{(from, to): Decimal}`` mapping or a ``rate(from, to)`` callable.
        recent_ids: How many recently applied event ids to remember per user, so
            a replayed event is ignored.

    Raises:
        ValueError: ``base_currency`` is not a currency code, a rate is invalid,
            or ``recent_ids`` is below 1.
    """

    __slots__ = ("_base", "_rate", "_recent_ids", "_users", "_users_lock")

    def __init__(
        self,
        base_currency: str = "USD",
        rates: RatesProvider | None = None,
        *,
        recent_ids: int = 1024,
    ) -> None:
        self._base: Final = check_currency_code(base_currency, "base_currency")
        self._rate: Final = rate_lookup(rates)
        if not isinstance(recent_ids, int) or recent_ids < 1:
            raise ValueError(f"recent_ids: must be an int >= 1, got {recent_ids!r}")
        self._recent_ids: Final = recent_ids
        self._users: dict[UUID, _User] = {}
        self._users_lock: Final = threading.Lock()

    @property
    def base_currency(self) -> str:
        """The currency every net worth is expressed in."""
        return self._base

    # ------------------------------------------------------------------ queries

    def net_worth(self, user_id: UUID) -> Decimal:
        """Return the user's current net worth (``Decimal(0)`` for an unknown user)."""
        user = self._users.get(user_id)
        if user is None:
            return _ZERO
        with user.lock:
            return user.total

    def accounts(self, user_id: UUID) -> dict[UUID, AccountBalance]:
        """Return a copy of the user's known accounts: ``{account_id: AccountBalance}``."""
        user = self._users.get(user_id)
        if user is None:
            return {}
        with user.lock:
            return {aid: AccountBalance(b, c) for aid, (b, c, _) in user.accounts.items()}

    def users(self) -> list[UUID]:
        """Return the ids of every user with state."""
        return list(self._users)

    # ------------------------------------------------------------------ updates

    def _user(self, user_id: UUID) -> _User:
        user = self._users.get(user_id)
        if user is None:
            with self._users_lock:
                user = self._users.setdefault(user_id, _User())
        return user

    def convert(self, amount: Decimal, currency: str) -> Decimal | None:
        """Return ``amount`` in the base currency, exactly, or ``None`` with no rate.

        Raises:
            TypeError: The rates callable returned something other than a Decimal.
            ValueError: The rates callable returned a non-positive rate, or one so
                precise that the converted amount has more decimals than an
                event may carry (`eventbus.events.MAX_DECIMAL_DIGITS`).
        """
        if currency == self._base:
            return amount
        rate = self._rate(currency, self._base)
        if rate is None:
            return None
        value = EXACT.multiply(amount, rate)
        if not fits_decimal_bounds(value):
            # Rounding it would make net worth silently inexact; refuse instead.
            raise ValueError(
                f"{amount} {currency} at rate {rate} is {value}: more than the "
                f"{MAX_DECIMAL_DIGITS} digits each side of the point an event may carry"
            )
        return value

    def apply(
        self,
        event: AccountBalanceUpdated,
        emit: Callable[[PortfolioNetWorthRecalculated], None] | None = None,
    ) -> PortfolioNetWorthRecalculated | None:
        """Apply a balance update; return the net-worth event if the value changed.

        ``new_balance`` is trusted as the account's balance. A stored balance that
        differs from ``previous_balance`` (a missed or reordered event) is logged as
        a warning, and the account still converges to ``new_balance``. An event
        whose id was applied recently is ignored.

        Args:
            event: The balance update.
            emit: Called with the net-worth event while the user's lock is still
                held, so events for one user are emitted in the order their state
                changes were made, even across threads.

        Returns:
            The `PortfolioNetWorthRecalculated` event, or ``None`` when nothing changed
            (duplicate, missing rate, or same value). Its id is derived from
            ``event``'s and its ``occurred_at`` is ``event``'s (see the module
            docstring).
        """
        user = self._user(event.user_id)
        with user.lock:
            if event.event_id in user.recent:
                _log.debug("ignoring replayed event %s for user %s", event.event_id, event.user_id)
                return None
            try:
                value = self.convert(event.new_balance, event.currency)
            except (TypeError, ValueError) as exc:
                value, reason = None, f"the rates provider failed: {exc}"
            else:
                reason = f"no {event.currency}->{self._base} rate"
            if value is None:
                _log.error(
                    "net worth of user %s NOT updated for account %s: %s (balance %s %s)",
                    event.user_id,
                    event.account_id,
                    reason,
                    event.new_balance,
                    event.currency,
                    extra={"user_id": str(event.user_id), "account_id": str(event.account_id)},
                )
                return None
            old = user.accounts.get(event.account_id)
            old_value = _ZERO
            if old is not None:
                old_value = old[2]
                if old[0] != event.previous_balance or old[1] != event.currency:
                    _log.warning(
                        "user %s account %s: stored balance %s %s but the event's previous "
                        "balance is %s %s (missed or reordered event); converging to %s",
                        event.user_id,
                        event.account_id,
                        old[0],
                        old[1],
                        event.previous_balance,
                        event.currency,
                        event.new_balance,
                    )
            derived = None
            if value != old_value:
                # Built before any state changes: an event that cannot exist (a
                # total past the amount bound) must leave the state as it was.
                previous = user.total
                new = EXACT.add(previous, EXACT.subtract(value, old_value))
                try:
                    derived = PortfolioNetWorthRecalculated(
                        event_id=derived_id(event, DERIVED_KEY),
                        occurred_at=event.occurred_at,
                        user_id=event.user_id,
                        previous_net_worth=previous,
                        new_net_worth=new,
                        delta=EXACT.subtract(new, previous),
                        currency=self._base,
                        account_count=len(user.accounts) + (old is None),
                    )
                except InvalidEventError as exc:
                    _log.error(
                        "net worth of user %s NOT updated for account %s: %s",
                        event.user_id,
                        event.account_id,
                        exc,
                    )
                    return None
            user.accounts[event.account_id] = (event.new_balance, event.currency, value)
            recent = user.recent
            recent[event.event_id] = None
            if len(recent) > self._recent_ids:
                recent.popitem(last=False)
            if derived is None:
                return None
            user.total = derived.new_net_worth
            if emit is not None:
                emit(derived)
            return derived

    def seed(self, user_id: UUID, accounts: Mapping[UUID, tuple[Decimal, str]]) -> None:
        """Replace a user's accounts with ``{account_id: (balance, currency)}``; emits nothing.

        For start-up from the application's database. All-or-nothing: on error,
        the user's state is unchanged.

        Raises:
            TypeError: An id is not a UUID or a balance is not a Decimal.
            ValueError: A currency is invalid or has no rate to the base currency.
        """
        _check_uuid(user_id, "user_id")
        converted: dict[UUID, tuple[Decimal, str, Decimal]] = {}
        total = _ZERO
        for account_id, entry in accounts.items():
            where = f"accounts[{account_id!r}]"
            _check_uuid(account_id, where)
            balance, currency = entry
            if not isinstance(balance, Decimal) or not balance.is_finite():
                raise TypeError(f"{where}: balance must be a finite Decimal, got {balance!r}")
            check_currency_code(currency, where)
            value = self.convert(balance, currency)
            if value is None:
                raise ValueError(f"{where}: no {currency}->{self._base} rate")
            converted[account_id] = (balance, currency, value)
            total = EXACT.add(total, value)
        user = self._user(user_id)
        with user.lock:
            user.accounts = converted
            user.total = total

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> bytes:
        """Serialise all state (orjson; Decimals as strings, so exact).

        Each user is copied under its own lock, so every user's entry is
        consistent; users changed meanwhile (from other threads) may be seen
        before or after their change. Safe in any thread: the Redis bridge
        calls it in a worker thread between two deliveries, when nothing
        changes the state of a fleet.
        """
        return _snapshot.encode(self._base, self._states())

    def _states(self) -> Iterator[tuple[UUID, _snapshot.UserState]]:
        # Lazily, one copy at a time (see _snapshot.encode); the ids first,
        # as a list of references (one object, not a tuple per user).
        users = self._users
        for user_id in list(users):
            user = users.get(user_id)
            if user is None:
                continue
            with user.lock:
                state = _snapshot.UserState(user.total, dict(user.accounts), list(user.recent))
            yield user_id, state

    def restore(self, data: bytes | bytearray | memoryview | str) -> None:
        """Replace all state with a `snapshot`; meant for start-up, before publishing.

        Raises:
            ValueError: The bytes are not a valid snapshot for this base currency;
                the message names the offending path. State is then unchanged.
        """
        decoded = _snapshot.decode(data, self._base)
        users: dict[UUID, _User] = {}
        for user_id, state in decoded.items():
            user = users[user_id] = _User()
            user.accounts = state.accounts
            user.total = state.net_worth
            user.recent = OrderedDict.fromkeys(state.recent[-self._recent_ids :])
        with self._users_lock:
            self._users = users

    def __repr__(self) -> str:
        return f"<NetWorthAggregator base={self._base} users={len(self._users)}>"
