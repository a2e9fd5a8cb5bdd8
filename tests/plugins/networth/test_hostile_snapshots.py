"""``restore`` against hostile snapshots: the documented ValueError, fast and small, always.

A snapshot may come from another worker through Redis, so it is untrusted
input. Every amount is bounded before any arithmetic; whatever the bytes,
``restore`` raises `ValueError` (naming the path, in a bounded message) and
leaves the state as it was. Memory is measured with tracemalloc (a loose
bound, 50 MB); time only as a hang guard.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import uuid4

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventbus.events import MAX_DECIMAL_DIGITS, fits_decimal_bounds
from eventbus_networth import NetWorthAggregator
from tests.plugins.networth.helpers import RATES, balance

#: tracemalloc peak allowed for one restore of a small hostile snapshot.
MEMORY = 50 * 2**20
#: A hang guard, not a performance assertion.
HANG = 2.0


def snapshot(
    net_worth: Any = "10", accounts: list[list[Any]] | None = None, recent: Any = None
) -> bytes:
    """A one-user snapshot; each account ``[balance, currency, value]``."""
    accounts = [["10", "USD", "10"]] if accounts is None else accounts
    recent = [] if recent is None else recent
    return orjson.dumps(
        {
            "format": "eventbus-networth/1",
            "base_currency": "USD",
            "users": {
                str(uuid4()): {
                    "net_worth": net_worth,
                    "accounts": {str(uuid4()): account for account in accounts},
                    "recent": recent,
                }
            },
        }
    )


def refused(data: bytes) -> ValueError:
    """Restore ``data`` into an aggregator with state: it must raise ValueError, within bounds.

    Returns the error; the aggregator's state must be unchanged.
    """
    agg = NetWorthAggregator("USD", RATES)
    user = uuid4()
    agg.apply(balance(user, uuid4(), 0, "7"))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=r"^snapshot") as caught:
            agg.restore(data)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY, f"restore of {len(data)} bytes peaked at {peak:,} bytes"
    assert elapsed < HANG, f"restore of {len(data)} bytes took {elapsed:.1f} s"
    assert agg.users() == [user]
    assert agg.net_worth(user) == Decimal(7)
    return caught.value


def out_of_bounds(text: str) -> bool:
    """Whether ``text`` is no amount a snapshot may hold (the oracle for generated amounts)."""
    try:
        value = Decimal(text)
    except ArithmeticError:
        return True
    return not (value.is_finite() and fits_decimal_bounds(value))


_digits = st.text("0123456789", min_size=1, max_size=60)
_huge_exponents = st.builds(
    lambda sign, digits, exponent: f"{sign}{digits}e{exponent}",
    st.sampled_from(["", "-", "+"]),
    _digits,
    st.one_of(
        st.integers(-(10**24), -MAX_DECIMAL_DIGITS - 1),
        st.integers(MAX_DECIMAL_DIGITS, 10**24),
    ),
)
_many_digits = st.builds(
    lambda whole, fraction: f"{whole}.{fraction}" if fraction else whole,
    st.integers(1, 400).map(lambda n: "9" * n),
    st.integers(0, 400).map(lambda n: "1" * n),
)
_specials = st.sampled_from(
    [
        "NaN",
        "-NaN",
        "sNaN",
        "-sNaN",
        "sNaN123456789",
        "NaN" + "9" * 500,
        "Infinity",
        "-Infinity",
        "inf",
        "-inf",
        "1e999999999999999999",
        "1e-999999999999999999",
        "0e-999999999999999999",
        "0E+999999999999999999",
        "9" * 5000,
        "0." + "0" * 5000 + "1",
        "1e" + "9" * 5000,
    ]
)
_long_strings = st.text(min_size=101, max_size=3000)
_not_strings = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
)
#: Amounts no snapshot may hold.
HOSTILE = st.one_of(
    st.one_of(_huge_exponents, _many_digits, _specials, _long_strings).filter(out_of_bounds),
    _not_strings,
)


class TestHostileAmounts:
    """Every amount slot, every kind of hostile number: ValueError, small and quick."""

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(
        amount=HOSTILE,
        slot=st.sampled_from(["balance", "value", "net_worth"]),
        accounts=st.integers(1, 3),
        partner=st.sampled_from(["10", "1e39", "-1e39", "1e-40", "0"]),
    )
    def test_any_slot(self, amount: Any, slot: str, accounts: int, partner: str) -> None:
        """One hostile amount among bounded ones (which may be extreme): ValueError."""
        rows = [[partner, "USD", partner] for _ in range(accounts)]
        net_worth: Any = str(Decimal(partner) * accounts)
        if slot == "net_worth":
            net_worth = amount
        else:
            rows[-1][0 if slot == "balance" else 2] = amount
        error = refused(snapshot(net_worth, rows))
        assert len(str(error)) < 1_000

    @pytest.mark.parametrize(
        "pair",
        [
            # The shapes: two opposite exponents whose exact sum needs
            # about 2e18 digits (MemoryError), or 8e8 (0.7 s and 484 MB).
            ("1E+999999999999999999", "1E-999999999999999999"),
            ("1E+400000000", "1E-400000000"),
            ("9" * 40 + "E+400000000", "-1E-400000000"),
        ],
    )
    def test_values_whose_sum_would_be_huge(self, pair: tuple[str, str]) -> None:
        """Bounded before they are added: the first value out of bounds is refused."""
        big, small = pair
        data = snapshot("0", [["1", "USD", big], ["1", "USD", small]])
        assert len(data) < 400  # the snapshots were 277 and 294 bytes
        assert "at most 40 digits" in str(refused(data))

    def test_a_megabyte_of_digits(self) -> None:
        """A 1 MB digit string is refused by its length, before it is parsed."""
        error = refused(snapshot("10", [["10", "USD", "1" * 2**20]]))
        assert "[2]" in str(error)
        assert len(str(error)) < 1_000


class TestHostileShapes:
    """Keys, lists and ids: the message stays small, the id is checked first."""

    @pytest.mark.parametrize(
        ("build", "path"),
        [
            (lambda: snapshot(recent=["x" * 2**20]), "recent"),
            (lambda: snapshot(recent="x" * 2**20), "recent"),
            (lambda: snapshot(accounts=[list(range(100_000))]), "accounts"),
            (lambda: snapshot(accounts=[["10", "U" * 2**20, "10"]]), "[1]"),
            (
                lambda: orjson.dumps(
                    {
                        "format": "eventbus-networth/1",
                        "base_currency": "USD",
                        "users": {"k" * 2**20: {}},
                    }
                ),
                "users",
            ),
            (lambda: orjson.dumps({"format": "f" * 2**20}), "format"),
            (
                lambda: orjson.dumps(
                    {"format": "eventbus-networth/1", "base_currency": "B" * 2**20}
                ),
                "base_currency",
            ),
        ],
    )
    def test_the_message_is_bounded(self, build: Callable[[], bytes], path: str) -> None:
        """A megabyte in a key, a list or a string: the message shows a few dozen characters."""
        error = refused(build())
        assert len(str(error)) < 1_000
        assert path in str(error)

    def test_a_bad_user_id_is_refused_before_its_accounts(self) -> None:
        """The user's key is checked first: 50,000 accounts behind it are never read."""
        data = orjson.dumps(
            {
                "format": "eventbus-networth/1",
                "base_currency": "USD",
                "users": {
                    "not-a-uuid": {
                        "net_worth": "0",
                        "accounts": {str(uuid4()): ["1", "USD", "1"] for _ in range(50_000)},
                        "recent": [],
                    }
                },
            }
        )
        assert "snapshot.users[not-a-uuid]: expected a UUID" in str(refused(data))
