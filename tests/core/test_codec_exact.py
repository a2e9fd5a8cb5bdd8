"""The codec never changes a value silently (issue 11, item 5), and its fast paths change nothing.

A registered event with float, int, str and Decimal fields either round-trips
exactly or fails to encode with `EncodeError` naming the event type and the
field. The generated encoders and decoders (module ``eventbus._wire``) write
and accept exactly what the general path does, byte for byte and message for
message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventbus import DecodeError, DomainEvent, EncodeError, EventBusError, codec, event_type
from eventbus.portfolio import AccountHoldingsUpdated
from tests.core.samples import balance, holdings, networth
from tests.core.test_codec import events, mutated_envelopes

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@event_type("test.codec.reading")
@dataclass(frozen=True, kw_only=True, slots=True)
class Reading(DomainEvent):
    """A third-party event with fields of every plain codec type (no declared checks)."""

    value: float | None = None
    label: str = ""
    count: int = 0
    amount: Decimal = Decimal(0)
    flag: bool = False


class TestEncodeRefusesWhatItCannotCarry:
    """Issue 11 item 5: every encode failure is an EncodeError naming the type and field."""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("value", -math.inf),  # in `float | None`: was written as null, decoded as None
            ("value", math.inf),  # was written as null, then failed to decode
            ("value", math.nan),
            ("label", "lone \ud800 surrogate"),  # was a bare TypeError from orjson
            ("label", "\udfff"),
            ("count", 2**64),  # was a bare TypeError from orjson
            ("count", -(2**63) - 1),
            ("count", 10**5000),
            ("amount", Decimal("NaN")),  # was written as "NaN", which decoding refuses
            ("amount", Decimal("-Infinity")),
            ("value", "1.5"),  # another type than the field's: refused, not written
            ("count", True),
            ("flag", 1),
        ],
        ids=lambda v: v if isinstance(v, str) and v.isidentifier() else type(v).__name__,
    )
    def test_refused_naming_type_and_field(self, field: str, value: object) -> None:
        """dumps and encode_payload both raise EncodeError; nothing is written."""
        event = Reading(**{field: value})  # type: ignore[arg-type]
        for encode in (codec.dumps, codec.encode_payload):
            with pytest.raises(EncodeError) as info:
                encode(event)
            error = info.value
            assert isinstance(error, EventBusError)
            assert (error.event_type, error.field) == ("Reading", field)
            assert str(error).startswith(f"Reading.{field}: ")
            assert len(str(error)) < 300  # a 5000-digit int is described, not printed

    def test_messages_say_why(self) -> None:
        """The message names the reason: inf/nan, the 64-bit range, a lone surrogate."""
        cases = {
            "value": (-math.inf, "no JSON form"),
            "count": (2**70, "64 bits"),
            "label": ("x\ud800", "lone surrogate at index 1"),
        }
        for field, (value, words) in cases.items():
            with pytest.raises(EncodeError, match=words):
                codec.dumps(Reading(**{field: value}))  # type: ignore[arg-type]

    def test_unregistered_class_is_an_encode_error(self) -> None:
        """A class without a wire name: EncodeError (an EventBusError), field None."""

        @dataclass(frozen=True, kw_only=True, slots=True)
        class Nameless(DomainEvent):
            pass

        with pytest.raises(EncodeError, match="event_type") as info:
            codec.dumps(Nameless())
        assert info.value.field is None

    @pytest.mark.parametrize(
        "fields",
        [
            {"value": 1.7976931348623157e308},
            {"value": -0.0},
            {"value": 5e-324},
            {"value": 3},  # an int is a valid float, carried exactly
            {"value": None},
            {"count": 2**64 - 1},
            {"count": -(2**63)},
            {"label": "\U0001f600 \u00e9 \x00 \u2028"},
            {"amount": Decimal("-1E+999")},
            {"flag": True},
        ],
        ids=repr,
    )
    def test_edges_round_trip_exactly(self, fields: dict[str, Any]) -> None:
        """Values at the edges of what JSON carries come back equal, and of the same type."""
        event = Reading(**fields)
        decoded = codec.loads(codec.dumps(event))
        assert decoded == event
        for name, value in fields.items():
            assert type(getattr(decoded, name)) is type(value)

    @FUZZ
    @given(
        value=st.none() | st.floats() | st.integers(-(2**70), 2**70),
        label=st.text() | st.sampled_from(["\ud800", "a\udcffb"]),
        count=st.integers(-(2**66), 2**66),
        amount=st.decimals(allow_nan=True, allow_infinity=True),
    )
    def test_never_a_silent_change(
        self, value: float | None, label: str, count: int, amount: Decimal
    ) -> None:
        """Any values: the event round-trips to an equal one, or encoding raises EncodeError."""
        event = Reading(value=value, label=label, count=count, amount=amount)
        try:
            raw = codec.dumps(event)
        except EncodeError as exc:
            refused = exc.field
        else:
            refused = None
        if refused is not None:
            assert refused in {"value", "label", "count", "amount"}
            return
        decoded = codec.loads(raw)
        # Field by field: a NaN would make == fail, and must never get here.
        for name in ("value", "label", "count", "amount"):
            got, sent = getattr(decoded, name), getattr(event, name)
            assert got == sent, name
        assert decoded == event


def _slow_then_fast(raw: bytes) -> tuple[Any, Any]:
    """The outcome of the general path and of `codec.loads` on ``raw``: an event or the message."""

    def outcome(decode: Any) -> Any:
        try:
            return decode()
        except DecodeError as exc:
            return ("DecodeError", str(exc))

    slow = outcome(lambda: codec._decode_slow(orjson.loads(raw)))
    fast = outcome(lambda: codec.loads(raw))
    return slow, fast


class TestFastPathsChangeNothing:
    """The generated encoders and decoders agree with the general path."""

    @FUZZ
    @given(event=events)
    def test_dumps_writes_the_general_paths_bytes(self, event: DomainEvent) -> None:
        """dumps == orjson.dumps(encode_payload): the same bytes, to the last digit."""
        assert codec.dumps(event) == orjson.dumps(codec.encode_payload(event))

    @FUZZ
    @given(event=events)
    def test_canonical_bytes_take_the_fast_path(
        self, event: DomainEvent, monkeypatch_module: pytest.MonkeyPatch
    ) -> None:
        """Bytes dumps wrote decode without the general path, to an equal event."""

        def refuse(payload: object) -> DomainEvent:
            raise AssertionError("the general path was used")

        monkeypatch_module.setattr(codec, "_decode_slow", refuse)
        try:
            assert codec.loads(codec.dumps(event)) == event
        finally:
            monkeypatch_module.undo()

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payload=mutated_envelopes())
    def test_mutated_envelopes_decode_alike(self, payload: dict[str, Any]) -> None:
        """Any mutation: the same event, or DecodeError with the same message, both ways."""
        slow, fast = _slow_then_fast(orjson.dumps(payload))
        assert fast == slow

    @pytest.mark.parametrize(
        ("field", "spelling"),
        [
            ("user_id", "0190A5F2-7C1E-7B3A-9D4E-3F2A1B0C9D8E"),  # uppercase: accepted
            ("user_id", "0190a5f2-7c1e-7b3a-9d4e-3f2a1b0c9d8"),  # one digit short
            ("user_id", "0190a5f27-c1e-7b3a-9d4e-3f2a1b0c9d8e"),  # a dash moved
            ("user_id", "0190a5f2-7c1e-7b3a-9d4e-3f2a1b0c9d 8"),
            ("user_id", "0190a5f2-7c1e-7b3a-9d4e-3f2a1b0c9d\u0668e"),  # an Arabic-Indic digit
            ("account_id", "0x90a5f2-7c1e-7b3a-9d4e-3f2a1b0c9d8e"),
            ("previous_balance", "1e2"),  # accepted by the general path
            ("previous_balance", "0100.00"),  # accepted: leading zeros
            ("previous_balance", "100.000000000000000000000000000000000000001"),
            ("previous_balance", "1" * 41),
            ("previous_balance", "NaN"),
            ("previous_balance", "+100.00"),
            ("previous_balance", "1_00.00"),
            ("previous_balance", " 100.00"),
            ("currency", "usd"),
            ("currency", 7),
        ],
    )
    def test_spellings_decide_alike(self, field: str, spelling: object) -> None:
        """Odd spellings of one value: both paths accept or refuse them alike."""
        payload = codec.encode_payload(balance())
        payload["data"][field] = spelling
        slow, fast = _slow_then_fast(orjson.dumps(payload))
        assert fast == slow

    @pytest.mark.parametrize("factory", [balance, holdings, networth])
    @pytest.mark.parametrize(
        "when",
        [
            "2026-01-01T00:00:00+00:00",
            "2026-01-01T00:00:00Z",
            "2026-01-01 00:00:00+00:00",
            "2026-01-01T05:30:00+05:30",  # normalised to UTC by the general path
            "2026-01-01T00:00:00",  # naive: refused
            "20260101T000000+0000",
        ],
    )
    def test_timestamps_decide_alike(self, factory: Any, when: str) -> None:
        """Every ISO spelling fromisoformat takes: the same instant (in UTC) or the same error."""
        payload = codec.encode_payload(factory())
        payload["occurred_at"] = when
        slow, fast = _slow_then_fast(orjson.dumps(payload))
        assert fast == slow

    def test_a_subclass_value_is_written_as_its_base_would_be(self) -> None:
        """A UUID subclass (orjson refuses it) goes through the general path, same bytes."""

        class MyUUID(type(holdings().user_id)):  # type: ignore[misc]
            pass

        event = holdings(user_id=MyUUID(int=12345))
        assert codec.dumps(event) == orjson.dumps(codec.encode_payload(event))
        assert codec.loads(codec.dumps(event)) == event

    def test_holdings_subclass_registered_later_gets_its_own_codec(self) -> None:
        """A registered subclass of a registered event encodes and decodes as itself."""

        @event_type("test.codec.holdings.special")
        @dataclass(frozen=True, kw_only=True, slots=True)
        class SpecialHoldings(AccountHoldingsUpdated):
            pass

        template = holdings()
        event = SpecialHoldings(
            **{name: getattr(template, name) for name in template.__dataclass_fields__}
        )
        decoded = codec.loads(codec.dumps(event))
        assert type(decoded) is SpecialHoldings
        assert decoded == event


@pytest.fixture(name="monkeypatch_module", scope="module")
def fixture_monkeypatch_module() -> Any:
    """A MonkeyPatch usable inside a hypothesis test (the function-scoped one is not)."""
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()
