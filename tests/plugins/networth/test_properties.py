"""Property test: the running total always equals a from-scratch recomputation."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus import EventBus
from eventbus.events import EXACT
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus_networth import NetWorthPlugin
from tests.plugins.networth.helpers import RATES, balance

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF")  # CHF has no rate: never applied

# One step: (user, account, new balance, currency, previous-balance mode, replay earlier event?)
_amounts = st.decimals(min_value=-(10**12), max_value=10**12, places=4, allow_nan=False)
_steps = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 3),
        _amounts,
        st.sampled_from(CURRENCIES),
        st.booleans(),
        st.integers(-1, 30),
    ),
    max_size=60,
)


def _value(amount: Decimal, currency: str) -> Decimal:
    return amount if currency == "USD" else EXACT.multiply(amount, RATES[(currency, "USD")])


class TestRunningTotal:
    """Any sequence of updates across users, accounts and currencies with fixed rates."""

    @settings(max_examples=150, deadline=None)
    @given(steps=_steps)
    def test_matches_recomputation(
        self, steps: list[tuple[int, int, Decimal, str, bool, int]]
    ) -> None:
        """Net worth = sum of converted last balances; deltas sum up; no zero delta."""
        bus = EventBus(raise_errors=True)
        plugin = NetWorthPlugin("USD", RATES)
        bus.register_plugin(plugin, name="networth")
        emitted: list[PortfolioNetWorthRecalculated] = []
        bus.subscribe(PortfolioNetWorthRecalculated, emitted.append)

        users = [uuid4() for _ in range(3)]
        accounts = [uuid4() for _ in range(4)]
        model: dict[UUID, dict[UUID, tuple[Decimal, str]]] = {u: {} for u in users}
        sent: list[AccountBalanceUpdated] = []
        applied: set[UUID] = set()
        for user_i, account_i, amount, currency, in_order, replay in steps:
            if 0 <= replay < len(sent):
                event = sent[replay]  # a duplicate delivery of an earlier event
            else:
                user, account = users[user_i], accounts[account_i]
                known = model[user].get(account)
                previous = known[0] if known and in_order else Decimal(7)
                event = balance(user, account, previous, amount, currency)
                sent.append(event)
            bus.publish_sync(event)
            if event.event_id not in applied and event.currency != "CHF":
                applied.add(event.event_id)
                model[event.user_id][event.account_id] = (event.new_balance, event.currency)

        for user in users:
            expected = Decimal(0)
            for amount, currency in model[user].values():
                expected = EXACT.add(expected, _value(amount, currency))
            assert plugin.aggregator.net_worth(user) == expected
            mine = [e for e in emitted if e.user_id == user]
            assert all(e.delta != 0 for e in mine)
            total = Decimal(0)
            for e in mine:
                total = EXACT.add(total, e.delta)
            assert total == expected  # final minus start (0)
            assert {a: tuple(b) for a, b in plugin.aggregator.accounts(user).items()} == model[user]
