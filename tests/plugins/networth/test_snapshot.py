"""`NetWorthAggregator.snapshot` and `restore`: exact round trips, strict validation, threads.

Hostile snapshots (huge numbers, huge keys) are in test_hostile_snapshots.py.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from uuid import UUID, uuid4

import orjson
import pytest

from eventbus_networth import NetWorthAggregator
from tests.plugins.networth.helpers import RATES, balance


@pytest.fixture(name="agg")
def _agg() -> NetWorthAggregator:
    return NetWorthAggregator("USD", RATES)


@pytest.fixture(name="user")
def _user() -> UUID:
    return uuid4()


class TestSnapshot:
    """snapshot() / restore(): exact round trips and strict validation."""

    def test_round_trip_is_exact(self, agg: NetWorthAggregator) -> None:
        """Every balance, currency, value and total survives digit for digit."""
        users = [uuid4() for _ in range(3)]
        for i, user in enumerate(users):
            agg.apply(balance(user, uuid4(), 0, f"{i}123456789012345678901234567.891", "EUR"))
            agg.apply(balance(user, uuid4(), 0, "-0.000000000000000000000000000000001"))
        data = agg.snapshot()
        restored = NetWorthAggregator("USD", RATES)
        restored.restore(data)
        for user in users:
            assert str(restored.net_worth(user)) == str(agg.net_worth(user))
            assert restored.accounts(user) == agg.accounts(user)
        assert restored.snapshot() == data

    def test_decimals_are_strings(self, agg: NetWorthAggregator, user: UUID) -> None:
        """The JSON holds decimals as strings, never numbers."""
        agg.apply(balance(user, uuid4(), 0, "0.10"))
        raw = orjson.loads(agg.snapshot())
        assert raw["users"][str(user)]["net_worth"] == "0.10"

    def test_replay_ids_survive_restore(self, agg: NetWorthAggregator, user: UUID) -> None:
        """An event applied before the snapshot is still ignored after restore."""
        event = balance(user, uuid4(), 0, "10")
        agg.apply(event)
        restored = NetWorthAggregator("USD", RATES)
        restored.restore(agg.snapshot())
        assert restored.apply(event) is None

    def test_restore_replaces_state(self, agg: NetWorthAggregator, user: UUID) -> None:
        """Users absent from the snapshot are gone after restore."""
        empty = agg.snapshot()
        agg.apply(balance(user, uuid4(), 0, "10"))
        agg.restore(empty)
        assert agg.users() == []

    def test_taken_in_another_thread_each_user_is_whole(self, agg: NetWorthAggregator) -> None:
        """Snapshots taken while another thread applies updates: every user's entry consistent.

        ``restore`` checks that each total is the sum of its accounts.
        """
        users = [(uuid4(), uuid4(), uuid4()) for _ in range(300)]
        for user, first, second in users:
            agg.apply(balance(user, first, 0, "1"))
            agg.apply(balance(user, second, 0, "1"))
        done = threading.Event()
        taken: list[bytes] = []

        def snapshots() -> None:
            while not done.is_set() or not taken:
                taken.append(agg.snapshot())

        thread = threading.Thread(target=snapshots)
        thread.start()
        try:
            for step in range(1, 6):
                for user, first, second in users:
                    agg.apply(balance(user, first, step, step + 1))
                    agg.apply(balance(user, second, step, step + 1))
        finally:
            done.set()
            thread.join(timeout=30)
        for data in taken[:: max(1, len(taken) // 20)]:
            NetWorthAggregator("USD", RATES).restore(data)
        assert not thread.is_alive()

    def test_other_base_currency_refused(self, agg: NetWorthAggregator) -> None:
        """A snapshot taken in EUR cannot be restored into a USD aggregator."""
        with pytest.raises(ValueError, match="base_currency"):
            agg.restore(NetWorthAggregator("EUR").snapshot())

    @pytest.mark.parametrize(
        ("mutate", "path"),
        [
            (lambda u: u.update(net_worth="1e999999999999999999"), "net_worth"),
            (lambda u: next(iter(u["accounts"].values())).__setitem__(0, "1e41"), r"\[0\]"),
            (lambda u: next(iter(u["accounts"].values())).__setitem__(2, "1e-41"), "at most 40"),
            (lambda u: u.update(net_worth="123"), "net_worth"),
            (lambda u: u["accounts"].update({"nope": ["1", "USD", "1"]}), "nope"),
            (lambda u: next(iter(u["accounts"].values())).__setitem__(1, "usd"), r"\[1\]"),
            (lambda u: next(iter(u["accounts"].values())).__setitem__(2, 1.5), r"\[2\]"),
            (lambda u: u.update(recent="x"), "recent"),
        ],
    )
    def test_invalid_snapshot_names_the_path(
        self, agg: NetWorthAggregator, user: UUID, mutate: object, path: str
    ) -> None:
        """Corrupt input raises ValueError naming where, and leaves state unchanged."""
        agg.apply(balance(user, uuid4(), 0, "10"))
        raw = orjson.loads(agg.snapshot())
        mutate(raw["users"][str(user)])  # type: ignore[operator]
        with pytest.raises(ValueError, match=path):
            agg.restore(orjson.dumps(raw))
        assert agg.net_worth(user) == Decimal(10)

    @pytest.mark.parametrize("data", [b"not json", b"[]", b'{"format": "other"}'])
    def test_not_a_snapshot(self, agg: NetWorthAggregator, data: bytes) -> None:
        """Garbage is refused with a ValueError mentioning the snapshot."""
        with pytest.raises(ValueError, match="snapshot"):
            agg.restore(data)
