"""The `NetWorthAggregator` on its own: arithmetic, rates, ordering, idempotence, seeding."""

from __future__ import annotations

import logging
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from eventbus.events import derived_id
from eventbus.portfolio import PortfolioNetWorthRecalculated
from eventbus_networth import AccountBalance, NetWorthAggregator, parse_rates
from tests.plugins.networth.helpers import RATES, balance


@pytest.fixture(name="agg")
def _agg() -> NetWorthAggregator:
    return NetWorthAggregator("USD", RATES)


@pytest.fixture(name="user")
def _user() -> UUID:
    return uuid4()


class TestApply:
    """Applying balance updates to the running total."""

    def test_first_balance_emits_change_from_zero(
        self, agg: NetWorthAggregator, user: UUID
    ) -> None:
        """A new account's balance moves net worth from 0 and counts the account."""
        derived = agg.apply(balance(user, uuid4(), 0, "100.25"))
        assert derived is not None
        assert derived.previous_net_worth == 0
        assert derived.new_net_worth == Decimal("100.25")
        assert derived.delta == Decimal("100.25")
        assert (derived.currency, derived.account_count, derived.user_id) == ("USD", 1, user)
        assert agg.net_worth(user) == Decimal("100.25")

    def test_derived_event_is_a_function_of_its_cause(
        self, agg: NetWorthAggregator, user: UUID
    ) -> None:
        """Its id is derived_id(cause, "networth") and its time the cause's: no clock, no uuid4."""
        cause = balance(user, uuid4(), 0, "7")
        derived = agg.apply(cause)
        assert derived is not None
        assert derived.event_id == derived_id(cause, "networth")
        assert derived.occurred_at == cause.occurred_at

    def test_negative_balances_reduce_net_worth(self, agg: NetWorthAggregator, user: UUID) -> None:
        """Credit cards and loans (negative balances) are subtracted."""
        agg.apply(balance(user, uuid4(), 0, "5000"))
        derived = agg.apply(balance(user, uuid4(), 0, "-1200.50"))
        assert derived is not None
        assert derived.delta == Decimal("-1200.50")
        assert agg.net_worth(user) == Decimal("3799.50")

    def test_update_adjusts_by_difference(self, agg: NetWorthAggregator, user: UUID) -> None:
        """A second update of the same account replaces its old contribution."""
        account = uuid4()
        agg.apply(balance(user, account, 0, "10"))
        agg.apply(balance(user, uuid4(), 0, "1"))
        derived = agg.apply(balance(user, account, "10", "7.5"))
        assert derived is not None
        assert (derived.previous_net_worth, derived.new_net_worth) == (Decimal(11), Decimal("8.5"))
        assert derived.account_count == 2

    def test_unchanged_value_emits_nothing(self, agg: NetWorthAggregator, user: UUID) -> None:
        """Same value (even written differently, 5 vs 5.00) → no event; the balance is kept."""
        account = uuid4()
        agg.apply(balance(user, account, 0, "5"))
        assert agg.apply(balance(user, account, "5", "5.00")) is None
        assert agg.accounts(user)[account].balance == Decimal("5.00")

    def test_new_zero_account_emits_nothing(self, agg: NetWorthAggregator, user: UUID) -> None:
        """A new account with balance 0 is known but does not change net worth."""
        assert agg.apply(balance(user, uuid4(), 0, 0)) is None
        assert len(agg.accounts(user)) == 1

    def test_exact_with_many_digits(self, agg: NetWorthAggregator, user: UUID) -> None:
        """No rounding: 40 significant digits survive conversion and addition."""
        big = "1234567890123456789012345678901234.567891"
        agg.apply(balance(user, uuid4(), 0, big, "EUR"))
        agg.apply(balance(user, uuid4(), 0, "0.000000000000000000000000000001"))
        exact = "1333333321333333332133333333213333.333322280000000000000000000001"
        assert str(agg.net_worth(user)) == exact
        rounded = Decimal(big) * Decimal("1.08") + Decimal("1e-30")  # the default context
        assert rounded != Decimal(exact)

    def test_multi_currency_conversion(self, agg: NetWorthAggregator, user: UUID) -> None:
        """Each account is converted into the base currency at update time."""
        agg.apply(balance(user, uuid4(), 0, "100", "EUR"))
        agg.apply(balance(user, uuid4(), 0, "100", "GBP"))
        agg.apply(balance(user, uuid4(), 0, "10000", "JPY"))
        assert agg.net_worth(user) == Decimal("108") + Decimal("127") + Decimal("67")

    def test_users_are_independent(self, agg: NetWorthAggregator) -> None:
        """One user's updates never affect another's net worth."""
        alice, bob = uuid4(), uuid4()
        agg.apply(balance(alice, uuid4(), 0, "1"))
        agg.apply(balance(bob, uuid4(), 0, "2"))
        assert (agg.net_worth(alice), agg.net_worth(bob)) == (Decimal(1), Decimal(2))
        assert set(agg.users()) == {alice, bob}

    def test_unknown_user_is_zero(self, agg: NetWorthAggregator) -> None:
        """An unknown user has net worth 0 and no accounts."""
        assert agg.net_worth(uuid4()) == 0
        assert agg.accounts(uuid4()) == {}

    def test_emit_called_with_the_derived_event(self, agg: NetWorthAggregator, user: UUID) -> None:
        """``emit`` receives the same event ``apply`` returns."""
        seen: list[PortfolioNetWorthRecalculated] = []
        derived = agg.apply(balance(user, uuid4(), 0, "3"), seen.append)
        assert seen == [derived]


class TestMissingRate:
    """A currency with no rate is never applied silently."""

    def test_not_applied_and_error_names_everything(
        self, agg: NetWorthAggregator, user: UUID, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The update is skipped; the error names the user, the account and the currency."""
        account = uuid4()
        agg.apply(balance(user, uuid4(), 0, "10"))
        assert agg.apply(balance(user, account, 0, "50", "CHF")) is None
        assert agg.net_worth(user) == Decimal(10)
        assert account not in agg.accounts(user)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        message = errors[0].getMessage()
        assert str(user) in message
        assert str(account) in message
        assert "CHF" in message

    def test_rate_added_later_applies_the_replay(self, user: UUID) -> None:
        """The skipped event is not remembered, so replaying it once a rate exists applies it."""
        rates = dict(RATES)
        agg = NetWorthAggregator("USD", lambda frm, to: rates.get((frm, to)))
        event = balance(user, uuid4(), 0, "10", "CHF")
        assert agg.apply(event) is None
        rates[("CHF", "USD")] = Decimal("1.1")
        assert agg.apply(event) is not None
        assert agg.net_worth(user) == Decimal("11.0")

    def test_callable_raising_lookup_error_means_no_rate(self, user: UUID) -> None:
        """A provider may raise KeyError (a LookupError) for an unknown pair."""
        agg = NetWorthAggregator("USD", lambda frm, to: RATES[(frm, to)])
        assert agg.apply(balance(user, uuid4(), 0, "10", "CHF")) is None
        assert agg.apply(balance(user, uuid4(), 0, "10", "EUR")) is not None

    def test_callable_returning_float_is_not_applied(
        self, user: UUID, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A float rate is inexact: the update is refused and the error says why."""
        agg = NetWorthAggregator("USD", lambda frm, to: 1.08)  # type: ignore[arg-type]
        assert agg.apply(balance(user, uuid4(), 0, "10", "EUR")) is None
        assert "float" in caplog.text
        assert agg.net_worth(user) == 0

    def test_rate_too_precise_for_an_event_is_not_applied(
        self, user: UUID, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 28-decimal rate times a 13-decimal balance does not fit an event: refused, not rounded."""
        third = Decimal(1) / Decimal(3)  # 0.3333... to 28 digits
        agg = NetWorthAggregator("USD", {("EUR", "USD"): third})
        assert agg.apply(balance(user, uuid4(), 0, "10.0000000000001", "EUR")) is None
        assert "more than the 40" in caplog.text
        assert agg.net_worth(user) == 0
        assert agg.apply(balance(user, uuid4(), 0, "3", "EUR")) is not None  # 2 + 28 digits fit


class TestOrderingAndIdempotence:
    """Replays are ignored; missed or reordered events converge with a warning."""

    def test_duplicate_event_is_ignored(self, agg: NetWorthAggregator, user: UUID) -> None:
        """The same event_id applied twice changes nothing the second time."""
        event = balance(user, uuid4(), 0, "10")
        assert agg.apply(event) is not None
        assert agg.apply(event) is None
        assert agg.net_worth(user) == Decimal(10)

    def test_duplicate_after_other_updates_is_ignored(
        self, agg: NetWorthAggregator, user: UUID
    ) -> None:
        """A late replay of an old event does not roll the account back."""
        account = uuid4()
        first = balance(user, account, 0, "10")
        agg.apply(first)
        agg.apply(balance(user, account, "10", "20"))
        assert agg.apply(first) is None
        assert agg.net_worth(user) == Decimal(20)

    def test_recent_ids_are_bounded(self, user: UUID) -> None:
        """Only the last ``recent_ids`` ids are remembered (memory stays bounded)."""
        agg = NetWorthAggregator("USD", recent_ids=2)
        account = uuid4()
        first = balance(user, account, 0, "1")
        agg.apply(first)
        agg.apply(balance(user, account, "1", "2"))
        agg.apply(balance(user, account, "2", "3"))
        assert agg.apply(first) is not None  # evicted: applied again (and it converges)

    def test_out_of_order_warns_and_converges(
        self, agg: NetWorthAggregator, user: UUID, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A previous_balance that does not match the stored one logs a warning; new_balance wins."""
        account = uuid4()
        agg.apply(balance(user, account, 0, "10"))
        derived = agg.apply(balance(user, account, "30", "40"))  # the 10 → 30 update was missed
        assert derived is not None
        assert (derived.previous_net_worth, derived.new_net_worth) == (Decimal(10), Decimal(40))
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert str(account) in warnings[0].getMessage()

    def test_matching_previous_balance_does_not_warn(
        self, agg: NetWorthAggregator, user: UUID, caplog: pytest.LogCaptureFixture
    ) -> None:
        """In-order updates log no warning."""
        account = uuid4()
        agg.apply(balance(user, account, 0, "10"))
        agg.apply(balance(user, account, "10.00", "11"))
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class TestSeed:
    """Start-up state from the application's database."""

    def test_seed_sets_state_without_events(self, agg: NetWorthAggregator, user: UUID) -> None:
        """Seeding returns nothing to publish and sets the accounts and total."""
        a, b = uuid4(), uuid4()
        agg.seed(user, {a: (Decimal("100"), "EUR"), b: (Decimal("-40.5"), "USD")})
        assert agg.net_worth(user) == Decimal("67.50")
        assert agg.accounts(user) == {
            a: AccountBalance(Decimal("100"), "EUR"),
            b: AccountBalance(Decimal("-40.5"), "USD"),
        }

    def test_updates_continue_from_seed(self, agg: NetWorthAggregator, user: UUID) -> None:
        """An update after seeding adjusts the seeded total by the difference."""
        account = uuid4()
        agg.seed(user, {account: (Decimal("100"), "USD"), uuid4(): (Decimal("1"), "USD")})
        derived = agg.apply(balance(user, account, "100", "150"))
        assert derived is not None
        assert (derived.previous_net_worth, derived.new_net_worth) == (Decimal(101), Decimal(151))

    def test_seed_replaces_the_users_accounts(self, agg: NetWorthAggregator, user: UUID) -> None:
        """The mapping is the user's full set of accounts."""
        agg.seed(user, {uuid4(): (Decimal("1"), "USD")})
        agg.seed(user, {})
        assert (agg.net_worth(user), agg.accounts(user)) == (Decimal(0), {})

    def test_missing_rate_rejected_atomically(self, agg: NetWorthAggregator, user: UUID) -> None:
        """An account with no rate fails the whole seed, naming the account and currency."""
        agg.seed(user, {uuid4(): (Decimal("1"), "USD")})
        bad = uuid4()
        with pytest.raises(ValueError, match=rf"{bad}.*CHF"):
            agg.seed(user, {uuid4(): (Decimal("5"), "USD"), bad: (Decimal("1"), "CHF")})
        assert agg.net_worth(user) == Decimal(1)

    @pytest.mark.parametrize(
        ("entry", "error"),
        [((1.5, "USD"), TypeError), ((Decimal("1"), "usd"), ValueError)],
    )
    def test_bad_values_rejected(
        self, agg: NetWorthAggregator, user: UUID, entry: tuple[object, str], error: type
    ) -> None:
        """A float balance or a malformed currency is refused with a clear error."""
        with pytest.raises(error, match="accounts"):
            agg.seed(user, {uuid4(): entry})  # type: ignore[dict-item]


class TestRates:
    """Rates providers and configuration errors."""

    def test_float_rate_in_mapping_refused(self) -> None:
        """A float rate is refused at construction, naming the pair."""
        with pytest.raises(TypeError, match=r"rates\[\('EUR', 'USD'\)\].*float"):
            NetWorthAggregator("USD", {("EUR", "USD"): 1.08})  # type: ignore[dict-item]

    @pytest.mark.parametrize(
        "rates",
        [{"EUR": Decimal(1)}, {("EUR", "usd"): Decimal(1)}, {("EUR", "USD"): Decimal(0)}],
    )
    def test_bad_mapping_refused(self, rates: object) -> None:
        """Keys must be (from, to) pairs of codes; rates must be positive."""
        with pytest.raises(ValueError, match="rates"):
            NetWorthAggregator("USD", rates)  # type: ignore[arg-type]

    def test_rates_not_inverted(self, user: UUID) -> None:
        """Only the given direction is used: USD→EUR does not imply EUR→USD."""
        agg = NetWorthAggregator("USD", {("USD", "EUR"): Decimal("0.9")})
        assert agg.apply(balance(user, uuid4(), 0, "1", "EUR")) is None

    def test_bad_base_currency(self) -> None:
        """The error names the parameter."""
        with pytest.raises(ValueError, match="base_currency"):
            NetWorthAggregator("dollars")

    def test_parse_rates(self) -> None:
        """The env-var format parses into exact Decimals."""
        assert parse_rates(" EUR:USD=1.08, GBP:USD = 1.27 ,") == {
            ("EUR", "USD"): Decimal("1.08"),
            ("GBP", "USD"): Decimal("1.27"),
        }

    @pytest.mark.parametrize("text", ["EUR=1.08", "EUR:USD=abc", "EUR:usd=1", "EUR:USD=-1"])
    def test_parse_rates_errors_name_the_item(self, text: str) -> None:
        """A malformed item is named in the error."""
        with pytest.raises(ValueError, match="EVENTBUS_NETWORTH_RATES item"):
            parse_rates(text)


class TestAmountBound:
    """A total an event cannot carry is refused without touching the state."""

    def test_total_past_the_bound_leaves_the_state_unchanged(
        self, agg: NetWorthAggregator, user: UUID, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Two accounts of 6E+39 would total 1.2E+40: the second is not applied; later ones are."""
        first, second = uuid4(), uuid4()
        assert agg.apply(balance(user, first, 0, "6E+39")) is not None
        assert agg.apply(balance(user, second, 0, "6E+39")) is None
        assert "NOT updated" in caplog.text
        assert agg.net_worth(user) == Decimal("6E+39")
        assert set(agg.accounts(user)) == {first}
        assert agg.apply(balance(user, second, 0, "5")) is not None
        assert agg.net_worth(user) == Decimal("6" + "0" * 38 + "5")  # exact: 40 digits
