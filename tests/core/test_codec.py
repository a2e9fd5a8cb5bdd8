"""The wire codec: exact round trips (property-based) and strict, fuzzed decoding."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventbus import DecodeError, DomainEvent, EventBusError, codec
from eventbus.events import EXACT, MAX_COUNT, MAX_DECIMAL_DIGITS, event_name
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)
from tests.core.samples import Ping, balance, holdings, networth

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Decimals with up to 40 significant digits (beyond the default 28-digit context),
# either sign, anywhere in the range events accept (MAX_DECIMAL_DIGITS each side),
# less one integer digit so that the difference of two of them (a delta) fits too.
decimals = st.tuples(
    st.integers(0, 1), st.lists(st.integers(0, 9), min_size=1, max_size=40).map(tuple)
).flatmap(
    lambda sd: st.builds(
        lambda exponent: Decimal((sd[0], sd[1], exponent)),
        st.integers(-MAX_DECIMAL_DIGITS, MAX_DECIMAL_DIGITS - 1 - len(sd[1])),
    )
)
currencies = st.from_regex(r"[A-Z]{3}", fullmatch=True)
counts = st.integers(0, MAX_COUNT)  # what JSON (orjson) carries exactly
offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
)


@st.composite
def balance_events(draw: st.DrawFn) -> AccountBalanceUpdated:
    """Any valid AccountBalanceUpdated."""
    previous, new = draw(decimals), draw(decimals)
    return AccountBalanceUpdated(
        event_id=draw(st.uuids()),
        occurred_at=draw(moments),
        user_id=draw(st.uuids()),
        account_id=draw(st.uuids()),
        previous_balance=previous,
        new_balance=new,
        delta=EXACT.subtract(new, previous),
        currency=draw(currencies),
    )


holdings_events = st.builds(
    AccountHoldingsUpdated,
    event_id=st.uuids(),
    occurred_at=moments,
    user_id=st.uuids(),
    account_id=st.uuids(),
    holdings_count=counts,
    created_count=counts,
    updated_count=counts,
    deactivated_count=counts,
)


@st.composite
def networth_events(draw: st.DrawFn) -> PortfolioNetWorthRecalculated:
    """Any valid PortfolioNetWorthRecalculated."""
    previous, new = draw(decimals), draw(decimals)
    return PortfolioNetWorthRecalculated(
        event_id=draw(st.uuids()),
        occurred_at=draw(moments),
        user_id=draw(st.uuids()),
        previous_net_worth=previous,
        new_net_worth=new,
        delta=EXACT.subtract(new, previous),
        currency=draw(currencies),
        account_count=draw(counts),
    )


events = st.one_of(balance_events(), holdings_events, networth_events())

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


class TestRoundTrip:
    """loads(dumps(e)) == e, exactly, for every portfolio event."""

    @FUZZ
    @given(event=events)
    def test_round_trip(self, event: DomainEvent) -> None:
        """Every field survives, Decimals to the last digit (and exponent)."""
        decoded = codec.loads(codec.dumps(event))
        assert decoded == event
        assert type(decoded) is type(event)
        for name in ("previous_balance", "new_balance", "new_net_worth", "delta"):
            if hasattr(event, name):
                # Same value *and* same representation: "1.50" stays "1.50".
                assert str(getattr(decoded, name)) == str(getattr(event, name))
        assert decoded.occurred_at.utcoffset() == timedelta(0)

    @pytest.mark.parametrize(
        "value",
        [
            "12345678901234567890123456789.123456789",
            "-98765432109876543210987654321098765.4321",
            "0.0000000000000000000000000000001",
            "1E+30",
            "-0",
            "1.50",
        ],
    )
    def test_large_and_negative_decimals(self, value: str) -> None:
        """Decimals wider than 28 digits travel as exact strings."""
        event = AccountBalanceUpdated.from_change(
            user_id=balance().user_id,
            account_id=balance().account_id,
            previous_balance=Decimal("0.01"),
            new_balance=Decimal(value),
            currency="CHF",
        )
        wire = orjson.loads(codec.dumps(event))
        assert wire["data"]["new_balance"] == str(Decimal(value))
        assert isinstance(wire["data"]["delta"], str)
        decoded = codec.loads(codec.dumps(event))
        assert decoded == event
        assert isinstance(decoded, AccountBalanceUpdated)
        assert str(decoded.new_balance) == str(Decimal(value))

    def test_largest_count_round_trips(self) -> None:
        """The largest count an event accepts, MAX_COUNT, survives the codec."""
        event = holdings(holdings_count=MAX_COUNT)
        assert codec.loads(codec.dumps(event)) == event

    def test_envelope_shape(self) -> None:
        """The envelope has exactly type, event_id, occurred_at and data."""
        event = holdings()
        wire = orjson.loads(codec.dumps(event))
        assert wire == {
            "type": "portfolio.holdings.updated",
            "event_id": str(event.event_id),
            "occurred_at": event.occurred_at.isoformat(),
            "data": {
                "user_id": str(event.user_id),
                "account_id": str(event.account_id),
                "holdings_count": 12,
                "created_count": 2,
                "updated_count": 3,
                "deactivated_count": 1,
            },
        }
        assert codec.encode_payload(event) == wire
        assert codec.decode_payload(wire) == event

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, str])
    def test_loads_accepts_bytes_like_and_str(self, kind: type) -> None:
        """loads takes bytes, bytearray, memoryview or str."""
        event = networth()
        raw = codec.dumps(event)
        data = raw.decode() if kind is str else kind(raw)
        assert codec.loads(data) == event

    def test_unregistered_event_cannot_be_encoded(self) -> None:
        """An event class without a wire name is refused, saying how to fix it."""
        assert event_name(Ping) is None
        with pytest.raises(EventBusError, match="event_type"):
            codec.dumps(Ping())


class TestMalformed:
    """Malformed input raises DecodeError: never a bare KeyError, TypeError, ..."""

    @pytest.mark.parametrize(
        ("mutate", "words"),
        [
            (lambda p: p.pop("type"), "exactly the keys"),
            (lambda p: p.pop("data"), "exactly the keys"),
            (lambda p: p.update(extra=1), "exactly the keys"),
            (lambda p: p.update(type="portfolio.nope"), "unknown event type"),
            (lambda p: p.update(type=7), "unknown event type"),
            (lambda p: p.update(data=[]), "'data' must be an object"),
            (lambda p: p.update(event_id="nope"), "event_id"),
            (lambda p: p.update(event_id=12), "bad envelope field event_id"),
            (lambda p: p.update(occurred_at="yesterday"), "bad envelope field occurred_at"),
            (lambda p: p.update(occurred_at="2026-01-01T00:00:00"), "occurred_at"),
            (lambda p: p["data"].pop("currency"), "missing fields ['currency']"),
            (lambda p: p["data"].update(bonus="1"), "unexpected fields ['bonus']"),
            (lambda p: p["data"].update(new_balance=150.25), "new_balance"),
            (lambda p: p["data"].update(new_balance="lots"), "new_balance"),
            (lambda p: p["data"].update(delta="0"), "delta"),
            (lambda p: p["data"].update(currency="usd"), "currency"),
            (lambda p: p["data"].update(user_id=None), "user_id"),
            (lambda p: p["data"].update(account_id="123"), "account_id"),
        ],
    )
    def test_balance_envelope_errors(self, mutate: Any, words: str) -> None:
        """Each malformation of a balance envelope is a DecodeError saying what is wrong."""
        payload = codec.encode_payload(balance())
        mutate(payload)
        with pytest.raises(DecodeError, match=re.escape(words)):
            codec.loads(orjson.dumps(payload))

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("holdings_count", -1),
            ("holdings_count", True),
            ("created_count", 1.0),
            ("updated_count", "3"),
            ("deactivated_count", 2**70),
        ],
    )
    def test_count_errors(self, field: str, value: object) -> None:
        """Counts must be JSON integers (not bools, floats or strings) and non-negative."""
        payload = codec.encode_payload(holdings())
        payload["data"][field] = value
        raw = orjson.dumps(payload) if value != 2**70 else _with_big_int(payload, field)
        with pytest.raises(DecodeError, match=field):
            codec.loads(raw)

    @pytest.mark.parametrize(
        "raw",
        [b"", b"not json", b"{", b"[1, 2", b"\xff\xfe", b"null", b"42", b'"x"', b"[]", b"{}"],
    )
    def test_not_an_envelope(self, raw: bytes) -> None:
        """Non-JSON bytes and non-object JSON are DecodeErrors."""
        with pytest.raises(DecodeError):
            codec.loads(raw)

    @pytest.mark.parametrize(
        "amount",
        [" 150.25", "150.25 ", "+150.25", "1_50.25", "150.", ".25", "0x10", "\u0661\u0665\u0660"],
    )
    def test_only_the_decimal_spelling_dumps_writes_is_accepted(self, amount: str) -> None:
        """Decimal() is lenient (whitespace, '+', '_', other scripts' digits); the codec is not."""
        payload = codec.encode_payload(balance())
        payload["data"]["new_balance"] = amount
        with pytest.raises(DecodeError, match="new_balance: expected a plain decimal"):
            codec.decode_payload(payload)

    @pytest.mark.parametrize(
        "spelling",
        [
            "{12345678-1234-5678-1234-567812345678}",
            "urn:uuid:12345678-1234-5678-1234-567812345678",
            "12345678123456781234567812345678",
            " 12345678-1234-5678-1234-567812345678",
        ],
    )
    def test_only_the_hyphenated_uuid_form_is_accepted(self, spelling: str) -> None:
        """UUID() accepts braces, URNs and bare hex; one id must have one spelling on the wire."""
        payload = codec.encode_payload(balance())
        payload["data"]["user_id"] = spelling
        with pytest.raises(DecodeError, match="user_id: expected a UUID"):
            codec.decode_payload(payload)

    def test_exponent_and_uppercase_hex_spellings_still_decode(self) -> None:
        """What other encoders may legitimately write: exponents, uppercase hex."""
        event = balance(
            previous_balance=Decimal("1E+3"), new_balance=Decimal("1E+3"), delta=Decimal(0)
        )
        payload = codec.encode_payload(event)
        payload["data"]["user_id"] = payload["data"]["user_id"].upper()
        payload["data"]["previous_balance"] = "1e3"
        assert codec.decode_payload(payload) == event

    def test_decode_payload_refuses_non_dict(self) -> None:
        """decode_payload of a parsed non-object names what it got."""
        with pytest.raises(DecodeError, match="list"):
            codec.decode_payload([1])

    def test_timestamp_out_of_utc_range(self) -> None:
        """A timestamp with no UTC equivalent is a DecodeError, not an OverflowError."""
        payload = codec.encode_payload(holdings())
        payload["occurred_at"] = "0001-01-01T00:00:00+05:00"
        with pytest.raises(DecodeError, match="occurred_at"):
            codec.decode_payload(payload)

    def test_far_apart_exponents_fail_with_a_short_error(self) -> None:
        """Balances 1e-999999 and 1e999999 are refused without a megabyte error message."""
        payload = codec.encode_payload(balance())
        payload["data"]["previous_balance"] = "1e-999999"
        payload["data"]["new_balance"] = "1e999999"
        with pytest.raises(DecodeError, match="previous_balance") as info:
            codec.decode_payload(payload)
        assert len(str(info.value)) < 1000


def _with_big_int(payload: dict[str, Any], field: str) -> bytes:
    # orjson cannot encode ints beyond 64 bits; splice the literal into the text.
    payload["data"][field] = 0
    text = orjson.dumps(payload).decode()
    return text.replace(f'"{field}":0', f'"{field}":{2**70}').encode()


_TOP_KEYS = ("type", "event_id", "occurred_at", "data")


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid envelope with one to three random mutations applied."""
    payload = copy.deepcopy(codec.encode_payload(draw(events)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "data"]))
        target = (
            payload
            if where == "top" or not isinstance(payload.get("data"), dict)
            else (payload["data"])
        )
        keys = list(target) or ["x"]
        action = draw(st.sampled_from(["drop", "add", "replace", "type", "retype"]))
        key = draw(st.sampled_from(keys))
        if action == "drop":
            target.pop(key, None)
        elif action == "add":
            target[draw(st.text(max_size=10))] = draw(json_values)
        elif action == "replace":
            target[key] = draw(json_values)
        elif action == "type":
            payload["type"] = draw(
                st.sampled_from(
                    [
                        "portfolio.balance.updated",
                        "portfolio.holdings.updated",
                        "portfolio.networth.updated",
                    ]
                )
                | st.text(max_size=20)
            )
        else:  # same value, different JSON type
            value = target.get(key)
            target[key] = draw(
                st.sampled_from([str(value), [value], {"v": value}, None, 0, -1, 1.5, True])
            )
    return payload


class TestFuzz:
    """Hypothesis-generated garbage: only DecodeError may come out (or a valid event)."""

    @FUZZ
    @given(value=json_values)
    def test_arbitrary_json(self, value: Any) -> None:
        """Any JSON document that is not an envelope is refused with DecodeError."""
        with pytest.raises(DecodeError):
            codec.loads(orjson.dumps(value))

    @FUZZ
    @given(raw=st.binary(max_size=200))
    def test_arbitrary_bytes(self, raw: bytes) -> None:
        """Random bytes are refused with DecodeError."""
        with pytest.raises(DecodeError):
            codec.loads(raw)

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payload=mutated_envelopes())
    def test_mutated_envelopes(self, payload: dict[str, Any]) -> None:
        """Dropped, added, replaced or retyped fields: a valid event or DecodeError."""
        raw = orjson.dumps(payload)
        try:
            decoded = codec.loads(raw)
        except DecodeError:
            return
        # A harmless mutation (e.g. a value replaced by an equal one) decodes,
        # and then it is a fully valid event that round-trips.
        assert isinstance(decoded, DomainEvent)
        assert codec.loads(codec.dumps(decoded)) == decoded

    @FUZZ
    @given(payload=mutated_envelopes(), cut=st.integers(0, 400))
    def test_truncated_bytes(self, payload: dict[str, Any], cut: int) -> None:
        """A valid envelope cut short anywhere is a DecodeError."""
        raw = orjson.dumps(payload)
        if cut >= len(raw):
            return
        with pytest.raises(DecodeError):
            codec.loads(raw[:cut])

    @FUZZ
    @given(
        event=events,
        when=st.datetimes(timezones=offsets | st.just(UTC)),
    )
    def test_any_timestamp(self, event: DomainEvent, when: datetime) -> None:
        """Any aware timestamp on the wire decodes to UTC or raises DecodeError."""
        payload = codec.encode_payload(event)
        payload["occurred_at"] = when.isoformat()
        try:
            decoded = codec.decode_payload(payload)
        except DecodeError:
            return
        assert decoded.occurred_at == when
        assert decoded.occurred_at.utcoffset() == timedelta(0)
