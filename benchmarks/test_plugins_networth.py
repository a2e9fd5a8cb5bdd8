"""The net-worth plugin: cost per balance update, and memory per user.

Cost: a user with 10 accounts and a user with 10,000 accounts (seeded, no
events) each get the same stream of updates to one account. Every update
changes net worth, so each publish also builds and publishes the derived
`PortfolioNetWorthRecalculated` (no subscribers). Each round makes `CALLS`
``publish_sync`` calls; the target is ``time(10,000) / time(10) <= 1.3``.

Memory (tracemalloc, not a timing: it runs under ``--benchmark-disable`` too):
what the aggregator keeps per user, per further account and per remembered
event id (the replay window, ``recent_ids``), and what a snapshot holds of
each, as notes for docs/plugins/networth.md, with generous bounds as
regression guards.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final
from uuid import UUID, uuid4

import pytest

from benchmarks.ratios import RatioBook
from eventbus import EventBus
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_networth import NetWorthAggregator, NetWorthPlugin

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


#: Users per memory measurement, and the updates of each in the full-window case.
USERS: Final = 2_000
FULL_USERS: Final = 10
FULL_UPDATES: Final = 2_048  # twice the default window: its steady state
WINDOW: Final = 1024


def _kept(users: int, accounts: int, updates: int) -> tuple[float, float]:
    """Bytes per user kept by an aggregator, and its snapshot's bytes per user.

    Each user gets ``accounts`` accounts (one update each), then ``updates``
    more updates of the first. Events are made and dropped inside the traced
    region, as in service: what stays is the state (the window keeps event ids).
    """
    agg = NetWorthAggregator("USD")
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(users):
            user, ids = uuid4(), [uuid4() for _ in range(accounts)]
            for account in ids:
                agg.apply(_change(user, account, 0, 1))
            for k in range(updates):
                agg.apply(_change(user, ids[0], k + 1, k + 2))
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return kept / users, len(agg.snapshot()) / users


def _change(user: UUID, account: UUID, previous: int, new: int) -> AccountBalanceUpdated:
    return AccountBalanceUpdated.from_change(
        user_id=user,
        account_id=account,
        previous_balance=Decimal(previous),
        new_balance=Decimal(new),
        currency="USD",
    )


class TestMemoryPerUser:
    """What the aggregator keeps, in memory and in a snapshot."""

    def test_per_user_account_and_remembered_id(self, ratios: RatioBook) -> None:
        """Notes: bytes per user (1 account), per further account, per remembered id."""
        one, one_snap = _kept(USERS, 1, 0)
        ten, ten_snap = _kept(USERS, 10, 0)
        full, full_snap = _kept(FULL_USERS, 1, FULL_UPDATES)
        per_account, per_account_snap = (ten - one) / 9, (ten_snap - one_snap) / 9
        # 10 updates (10 ids) are in `ten`'s window too: the account figure
        # includes one remembered id; take it out.
        per_id, per_id_snap = (full - one) / (WINDOW - 1), (full_snap - one_snap) / (WINDOW - 1)
        per_account, per_account_snap = per_account - per_id, per_account_snap - per_id_snap
        ratios.notes.append(
            f"networth memory: {one:,.0f} bytes/user with 1 account and 1 applied update "
            f"(snapshot {one_snap:,.0f}); +{per_account:,.0f} per further account "
            f"(snapshot +{per_account_snap:,.0f}); +{per_id:,.0f} per remembered event id "
            f"(snapshot +{per_id_snap:,.0f}); a full window of {WINDOW} ids: "
            f"{full:,.0f} bytes/user (snapshot {full_snap:,.0f})"
        )
        # Regression guards, about twice what was measured.
        assert one < 3_000
        assert per_account < 600
        assert per_id < 500
        assert full_snap < 50_000
