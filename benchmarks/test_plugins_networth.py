"""The net-worth plugin's cost per balance update does not grow with the account count.

A user with 10 accounts and a user with 10,000 accounts (seeded, no events)
each get the same stream of updates to one account. Every update changes net
worth, so each publish also builds and publishes the derived
`PortfolioNetWorthRecalculated` (no subscribers). Each round makes `CALLS`
``publish_sync`` calls; the target is ``time(10,000) / time(10) <= 1.3``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import pytest

from benchmarks.ratios import RatioBook
from eventbus import EventBus
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_networth import NetWorthPlugin

CALLS: Final = 1000
#: Distinct events per stream; more than the plugin's replay window (1024), so
#: when the stream wraps around, its ids have been forgotten and apply again.
CYCLE: Final = 4096
RATES: Final = {("EUR", "USD"): Decimal("1.08")}


def _stream(user: UUID, account: UUID) -> list[AccountBalanceUpdated]:
    """A closed cycle of EUR balances: previous always matches, every value differs."""
    return [
        AccountBalanceUpdated.from_change(
            user_id=user,
            account_id=account,
            previous_balance=Decimal(f"{k + 1}.25"),
            new_balance=Decimal(f"{(k + 1) % CYCLE + 1}.25"),
            currency="EUR",
        )
        for k in range(CYCLE)
    ]


def _setup(accounts: int) -> Callable[[int], None]:
    bus = EventBus()
    plugin = NetWorthPlugin("USD", RATES)
    bus.register_plugin(plugin, name="networth")
    user = UUID(int=accounts)
    ids = [UUID(int=(accounts << 32) + i) for i in range(accounts)]
    seeded = {aid: (Decimal(f"{i}.10"), "USD" if i % 2 else "EUR") for i, aid in enumerate(ids)}
    seeded[ids[0]] = (Decimal("1.25"), "EUR")
    plugin.aggregator.seed(user, seeded)
    pool = _stream(user, ids[0]) * 2  # slices may run past the end of one cycle
    publish = bus.publish_sync
    position = 0

    def run(n: int) -> None:
        nonlocal position
        for event in pool[position : position + n]:
            publish(event)
        position = (position + n) % CYCLE

    run(CYCLE)  # warm: plans compiled, the replay window full
    return run


class TestPerUpdateCost:
    """``publish_sync`` of a balance update for a user with ``accounts`` accounts."""

    @pytest.mark.parametrize("accounts", [10, 10_000])
    def test_update(self, benchmark: Any, ratios: RatioBook, accounts: int) -> None:
        """`CALLS` updates of one account (each changes net worth and publishes)."""
        run = _setup(accounts)
        benchmark.group = "net worth: cost per update"
        benchmark(run, CALLS)
        ratios.record(f"networth {accounts} accounts", benchmark, CALLS)


class TestTargets:
    """The issue's target as a ratio of this run."""

    def test_constant_per_update(self, ratios: RatioBook) -> None:
        """Cost per update at 10,000 accounts is at most 1.3x the cost at 10."""
        ratios.check("networth 10000 accounts", "networth 10 accounts", at_most=1.3)
