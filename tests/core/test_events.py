"""Domain events: validation of every field, immutability, ids, timestamps, the registry."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

import eventbus.events
from eventbus import DecodeError, DomainEvent, InvalidEventError, codec, event_type
from eventbus.events import EXACT, check_decimal, event_class, event_name, registered_events
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)
from tests.core.samples import Ping, balance, holdings, networth

Factory = Callable[..., DomainEvent]

# (factory, field, bad value, words the message must contain)
INVALID: list[tuple[Factory, str, object, str]] = [
    # money: float, int, str, non-finite
    (balance, "previous_balance", 100.0, "float"),
    (balance, "new_balance", 150.25, "Decimal"),
    (balance, "delta", 50, "Decimal"),
    (balance, "previous_balance", "100.00", "Decimal"),
    (balance, "new_balance", Decimal("NaN"), "finite"),
    (balance, "previous_balance", Decimal("Infinity"), "finite"),
    (networth, "previous_net_worth", 1000.0, "float"),
    (networth, "new_net_worth", 900.5, "Decimal"),
    (networth, "delta", -99.5, "Decimal"),
    (networth, "new_net_worth", Decimal("-Infinity"), "finite"),
    # currency
    (balance, "currency", "usd", "3-letter uppercase"),
    (balance, "currency", "US", "3-letter uppercase"),
    (balance, "currency", "USDX", "3-letter uppercase"),
    (balance, "currency", "U5D", "3-letter uppercase"),
    (balance, "currency", "ÜSD", "3-letter uppercase"),
    (balance, "currency", None, "3-letter uppercase"),
    (networth, "currency", "eur", "3-letter uppercase"),
    # delta consistency
    (balance, "delta", Decimal("50.24"), "new - previous"),
    (balance, "delta", Decimal("-50.25"), "new - previous"),
    (networth, "delta", Decimal("99.5"), "new - previous"),
    # counts
    (holdings, "holdings_count", -1, "non-negative"),
    (holdings, "created_count", -5, "non-negative"),
    (holdings, "updated_count", True, "int"),
    (holdings, "deactivated_count", 1.0, "int"),
    (holdings, "holdings_count", "3", "int"),
    (networth, "account_count", -1, "non-negative"),
    (networth, "account_count", False, "int"),
    # ids
    (balance, "user_id", "not-a-uuid", "UUID"),
    (balance, "account_id", str(uuid4()), "UUID"),
    (holdings, "user_id", 42, "UUID"),
    (holdings, "account_id", None, "UUID"),
    (networth, "user_id", uuid4().bytes, "UUID"),
    (balance, "event_id", str(uuid4()), "UUID"),
    (holdings, "event_id", 7, "UUID"),
    (networth, "event_id", None, "UUID"),
    # timestamps
    (balance, "occurred_at", datetime(2026, 1, 1, 12, 0), "timezone-aware"),
    (holdings, "occurred_at", datetime(2026, 1, 1), "timezone-aware"),
    (networth, "occurred_at", "2026-01-01T00:00:00+00:00", "datetime"),
]


def _id(case: tuple[Factory, str, object, str]) -> str:
    factory, field, value, _ = case
    return f"{factory.__name__}.{field}={value!r}"


class TestValidation:
    """Every invalid field is rejected with InvalidEventError naming the field."""

    @pytest.mark.parametrize("case", INVALID, ids=[_id(c) for c in INVALID])
    def test_invalid_field_named(self, case: tuple[Factory, str, object, str]) -> None:
        """The error is a ValueError whose message starts with Class.field."""
        factory, field, value, words = case
        with pytest.raises(InvalidEventError) as info:
            factory(**{field: value})
        error = info.value
        assert isinstance(error, ValueError)
        assert error.field == field
        cls_name = factory().__class__.__name__
        assert error.event_type == cls_name
        assert str(error).startswith(f"{cls_name}.{field}: ")
        assert words in str(error)

    @pytest.mark.parametrize("factory", [balance, holdings, networth])
    def test_valid_defaults(self, factory: Factory) -> None:
        """The sample events themselves are valid."""
        assert isinstance(factory(), DomainEvent)

    def test_zero_counts_and_zero_delta_allowed(self) -> None:
        """Zero is a valid count and a valid (no-change) delta."""
        holdings(holdings_count=0, created_count=0, updated_count=0, deactivated_count=0)
        balance(previous_balance=Decimal(5), new_balance=Decimal("5.00"), delta=Decimal(0))

    def test_delta_compared_as_value(self) -> None:
        """Equal values with different exponents are equal deltas (50.250 == 50.25)."""
        balance(delta=Decimal("50.250"))

    def test_negative_balances(self) -> None:
        """Balances may be negative (credit cards, overdrafts)."""
        balance(previous_balance=Decimal("-10"), new_balance=Decimal("-30"), delta=Decimal("-20"))

    def test_count_beyond_64_bits_is_refused_naming_the_field(self) -> None:
        """A count the wire (orjson) cannot carry is refused by the event itself."""
        with pytest.raises(InvalidEventError, match="holdings_count") as info:
            holdings(holdings_count=2**64)
        assert "at most" in str(info.value)

    def test_a_huge_count_is_described_by_size(self) -> None:
        """A count too big to print in a message is described by its bit length."""
        with pytest.raises(InvalidEventError, match="bit int"):
            holdings(holdings_count=10**5000)

    @pytest.mark.parametrize(
        "amount",
        ["1e40", "0.1e-40", "0E-41", "1" * 41],
        ids=["too-large", "too-precise", "zero-too-precise", "41-digits"],
    )
    def test_amount_beyond_the_digit_bound_is_refused(self, amount: str) -> None:
        """An amount beyond MAX_DECIMAL_DIGITS on either side of the point names its field."""
        with pytest.raises(InvalidEventError, match="new_balance"):
            balance(new_balance=Decimal(amount))

    def test_keyword_only(self) -> None:
        """Events cannot be built positionally."""
        with pytest.raises(TypeError):
            AccountHoldingsUpdated(uuid4(), uuid4(), 1, 1, 1, 1)  # type: ignore[call-arg, arg-type]

    def test_missing_field(self) -> None:
        """A missing required field is a TypeError naming it (dataclass behaviour)."""
        with pytest.raises(TypeError, match="currency"):
            AccountBalanceUpdated(  # type: ignore[call-arg]
                user_id=uuid4(),
                account_id=uuid4(),
                previous_balance=Decimal(1),
                new_balance=Decimal(2),
                delta=Decimal(1),
            )


_FACTORIES: dict[type[DomainEvent], Factory] = {
    AccountBalanceUpdated: balance,
    AccountHoldingsUpdated: holdings,
    PortfolioNetWorthRecalculated: networth,
}
# Bad values per field type, with words the message must contain.
_BAD_BY_TYPE: dict[type, list[tuple[object, str]]] = {
    Decimal: [(1.5, "float"), ("1.00", "Decimal"), (1, "Decimal")],
    str: [("usd", "uppercase"), ("EURO", "3-letter")],
    int: [(-1, "non-negative"), (True, "int"), (2.0, "int")],
    UUID: [("0190f0c6-0000-7000-8000-000000000000", "UUID"), (None, "UUID")],
    datetime: [(datetime(2026, 5, 1, 8, 0), "timezone-aware"), (0, "datetime")],
}


def _every_field_case() -> list[tuple[type[DomainEvent], str, object, str]]:
    cases = []
    for cls in _FACTORIES:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            for value, words in _BAD_BY_TYPE[hints[field.name]]:
                cases.append((cls, field.name, value, words))
    return cases


EVERY_FIELD = _every_field_case()


class TestEveryFieldOfEveryEvent:
    """Each field of each portfolio event refuses each kind of bad value, by name."""

    @pytest.mark.parametrize(
        "case", EVERY_FIELD, ids=[f"{c[0].__name__}.{c[1]}={c[2]!r}" for c in EVERY_FIELD]
    )
    def test_rejected_and_named(self, case: tuple[type[DomainEvent], str, object, str]) -> None:
        """InvalidEventError names the class and the field."""
        cls, field, value, words = case
        with pytest.raises(InvalidEventError) as info:
            _FACTORIES[cls](**{field: value})
        assert (info.value.event_type, info.value.field) == (cls.__name__, field)
        assert words in str(info.value)

    def test_matrix_covers_every_field(self) -> None:
        """The matrix above really covers every field of all three events."""
        covered = {(c[0], c[1]) for c in EVERY_FIELD}
        expected = {(cls, f.name) for cls in _FACTORIES for f in dataclasses.fields(cls)}
        assert covered == expected
        assert len(expected) == 3 * (2 + 6)  # event_id, occurred_at + six own fields each

    @pytest.mark.parametrize("factory", [balance, networth])
    def test_wrong_delta(self, factory: Factory) -> None:
        """Both events with a delta refuse one that is not new - previous."""
        with pytest.raises(InvalidEventError) as info:
            factory(delta=Decimal("0.01"))
        assert info.value.field == "delta"


class TestImmutability:
    """Events are frozen, slotted, hashable values."""

    @pytest.mark.parametrize("factory", [balance, holdings, networth])
    def test_frozen(self, factory: Factory) -> None:
        """Assigning any field raises FrozenInstanceError."""
        event = factory()
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.user_id = uuid4()  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.event_id = uuid4()  # type: ignore[misc]

    @pytest.mark.parametrize("factory", [balance, holdings, networth])
    def test_slotted(self, factory: Factory) -> None:
        """No per-instance __dict__: new attributes cannot be added."""
        event = factory()
        assert not hasattr(event, "__dict__")
        with pytest.raises((AttributeError, TypeError)):
            event.extra = 1  # type: ignore[attr-defined]

    @pytest.mark.parametrize("factory", [balance, holdings, networth])
    def test_hashable_and_equal_by_value(self, factory: Factory) -> None:
        """Equal events hash equally and deduplicate in sets."""
        event = factory()
        twin = dataclasses.replace(event)
        assert twin == event
        assert hash(twin) == hash(event)
        assert len({event, twin, factory()}) == 2

    def test_replace_revalidates(self) -> None:
        """dataclasses.replace runs validation again."""
        with pytest.raises(InvalidEventError, match="delta"):
            dataclasses.replace(balance(), new_balance=Decimal("1"))


class TestFromChange:
    """AccountBalanceUpdated.from_change computes the delta exactly."""

    def test_simple(self) -> None:
        """The delta is new - previous."""
        event = AccountBalanceUpdated.from_change(
            user_id=uuid4(),
            account_id=uuid4(),
            previous_balance=Decimal("100.10"),
            new_balance=Decimal("99.95"),
            currency="GBP",
        )
        assert event.delta == Decimal("-0.15")

    @pytest.mark.parametrize(
        ("previous", "new", "delta"),
        [
            (
                "12345678901234567890123456789.123456789",
                "12345678901234567890123456789.123456790",
                "0.000000001",
            ),
            (
                "-99999999999999999999999999999999.99",
                "0.01",
                "100000000000000000000000000000000.00",
            ),
            (
                "1E+39",
                "1000000000000000000000000000000000000000.000001",
                "0.000001",
            ),
            ("0.1", "0.3", "0.2"),
        ],
    )
    def test_exact_beyond_28_digits(self, previous: str, new: str, delta: str) -> None:
        """No rounding at the default 28-digit context precision."""
        event = AccountBalanceUpdated.from_change(
            user_id=uuid4(),
            account_id=uuid4(),
            previous_balance=Decimal(previous),
            new_balance=Decimal(new),
            currency="USD",
        )
        assert event.delta == Decimal(delta)
        assert event.delta == EXACT.subtract(Decimal(new), Decimal(previous))
        assert EXACT.add(event.previous_balance, event.delta) == event.new_balance

    def test_rounded_delta_rejected(self) -> None:
        """A delta computed with the default (28-digit) context is refused as wrong."""
        previous = Decimal("12345678901234567890123456789.123456789")
        new = Decimal("12345678901234567890123456789.123456790")
        rounded = new - previous  # the default context
        assert rounded == EXACT.subtract(new, previous)  # fine here ...
        big_previous = Decimal("0.1")
        big_new = Decimal("1" + "0" * 30 + ".2")
        assert big_new - big_previous != EXACT.subtract(big_new, big_previous)  # ... not here
        with pytest.raises(InvalidEventError, match="delta"):
            balance(
                previous_balance=big_previous, new_balance=big_new, delta=big_new - big_previous
            )

    def test_refuses_far_apart_amounts_before_subtracting(self) -> None:
        """The digit bound is checked first: no 20-million-digit delta is ever built."""
        with pytest.raises(InvalidEventError, match="previous_balance"):
            AccountBalanceUpdated.from_change(
                user_id=uuid4(),
                account_id=uuid4(),
                previous_balance=Decimal("1e-10000000"),
                new_balance=Decimal("1e10000000"),
                currency="USD",
            )

    def test_amounts_at_the_digit_bound_are_exact(self) -> None:
        """40 integer digits and 40 decimals are accepted, the delta exact (80 digits)."""
        big, small = Decimal("9" * 40), Decimal("0." + "0" * 39 + "1")
        event = AccountBalanceUpdated.from_change(
            user_id=uuid4(),
            account_id=uuid4(),
            previous_balance=small,
            new_balance=big,
            currency="USD",
        )
        assert event.delta == EXACT.subtract(big, small)
        assert len(event.delta.as_tuple().digits) == 80  # not rounded to 28 digits
        assert codec.loads(codec.dumps(event)) == event

    @pytest.mark.parametrize("field", ["previous_balance", "new_balance"])
    def test_invalid_input_named(self, field: str) -> None:
        """A float balance is reported naming the balance field, not the delta."""
        kwargs: dict[str, object] = {
            "user_id": uuid4(),
            "account_id": uuid4(),
            "previous_balance": Decimal(1),
            "new_balance": Decimal(2),
            "currency": "USD",
        }
        kwargs[field] = 1.5
        with pytest.raises(InvalidEventError) as info:
            AccountBalanceUpdated.from_change(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field


class TestIdsAndTimestamps:
    """Default event_id is a time-ordered UUIDv7; occurred_at is aware UTC."""

    def test_event_id_is_uuid7(self) -> None:
        """Version 7, RFC 4122 variant, timestamp close to now."""
        before = datetime.now(UTC)
        event = balance()
        assert isinstance(event.event_id, UUID)
        assert event.event_id.version == 7
        assert event.event_id.variant == "specified in RFC 4122"
        millis = event.event_id.int >> 80
        stamp = datetime.fromtimestamp(millis / 1000, UTC)
        assert abs(stamp - before) < timedelta(seconds=5)

    def test_event_ids_strictly_increasing(self) -> None:
        """Ids made one after another (many per millisecond) strictly increase."""
        ids = [holdings().event_id for _ in range(5000)]
        assert all(a.int < b.int for a, b in itertools.pairwise(ids))
        assert len(set(ids)) == len(ids)

    def test_occurred_at_default_is_utc(self) -> None:
        """The default timestamp is aware, in UTC, and current."""
        before = datetime.now(UTC)
        event = networth()
        after = datetime.now(UTC)
        assert event.occurred_at.tzinfo is UTC
        assert before <= event.occurred_at <= after

    def test_other_timezones_normalised_to_utc(self) -> None:
        """An aware non-UTC timestamp is converted to the same instant in UTC."""
        local = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        event = balance(occurred_at=local)
        assert event.occurred_at == local
        assert event.occurred_at.utcoffset() == timedelta(0)
        assert event.occurred_at.hour == 4

    def test_zone_at_zero_offset_is_normalised(self) -> None:
        """Europe/London in winter (UTC+0) becomes UTC itself, as it does in summer (UTC+1)."""
        london = ZoneInfo("Europe/London")
        winter = Ping(occurred_at=datetime(2026, 1, 15, 12, tzinfo=london))
        summer = Ping(occurred_at=datetime(2026, 7, 15, 12, tzinfo=london))
        assert summer.occurred_at.tzinfo is UTC
        assert winter.occurred_at.tzinfo is UTC
        assert winter.occurred_at == datetime(2026, 1, 15, 12, tzinfo=UTC)

    @pytest.mark.parametrize(
        "when",
        [
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
            datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5))),
        ],
        ids=["before-year-1-in-utc", "after-year-9999-in-utc"],
    )
    def test_timestamp_without_utc_equivalent(self, when: datetime) -> None:
        """A timestamp that overflows when converted to UTC is an InvalidEventError."""
        with pytest.raises(InvalidEventError) as info:
            balance(occurred_at=when)
        assert info.value.field == "occurred_at"

    def test_explicit_ids_kept(self) -> None:
        """An explicit event_id (e.g. a decoded event) is kept as given."""
        given = uuid4()
        assert holdings(event_id=given).event_id == given


@pytest.fixture(name="registry")
def _registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register test events in a throwaway copy of the process-wide registry."""
    monkeypatch.setattr(eventbus.events, "_by_name", dict(eventbus.events._by_name))


class TestRegistry:
    """event_type() registers wire names; conflicts are refused."""

    def test_portfolio_wire_names(self) -> None:
        """The three portfolio events have their documented wire names."""
        names = {
            AccountBalanceUpdated: "portfolio.balance.updated",
            AccountHoldingsUpdated: "portfolio.holdings.updated",
            PortfolioNetWorthRecalculated: "portfolio.networth.updated",
        }
        for cls, name in names.items():
            assert event_name(cls) == name
            assert event_class(name) is cls
            assert registered_events()[name] is cls

    def test_registered_events_is_read_only(self) -> None:
        """The mapping returned cannot be used to change the registry."""
        snapshot = registered_events()
        with pytest.raises(TypeError):
            snapshot["x"] = AccountBalanceUpdated  # type: ignore[index]

    def test_unknown_lookups(self) -> None:
        """Unknown names and unregistered classes give None."""
        assert event_class("no.such.event") is None
        assert event_name(DomainEvent) is None

    def test_subclass_does_not_inherit_wire_name(self, registry: None) -> None:
        """An unregistered subclass of a registered event has no wire name of its own."""

        @dataclass(frozen=True, kw_only=True, slots=True)
        class Special(AccountHoldingsUpdated):
            pass

        assert event_name(Special) is None

    def test_register_and_duplicate_by_another_class(self, registry: None) -> None:
        """A name taken by a different class is refused, naming the holder."""

        @event_type("test.core.thing")
        @dataclass(frozen=True, kw_only=True, slots=True)
        class Thing(DomainEvent):
            pass

        assert event_class("test.core.thing") is Thing

        with pytest.raises(ValueError, match=r"test\.core\.thing.*Thing"):

            @event_type("test.core.thing")
            @dataclass(frozen=True, kw_only=True, slots=True)
            class Other(DomainEvent):
                pass

        assert event_class("test.core.thing") is Thing

    def test_same_qualname_from_another_module_is_a_different_class(self, registry: None) -> None:
        """Two classes named alike in different modules may not share a wire name."""

        def make(module: str) -> type[DomainEvent]:
            @dataclass(frozen=True, kw_only=True, slots=True)
            class Clash(DomainEvent):
                pass

            Clash.__module__ = module
            return Clash

        first = event_type("test.core.clash")(make("plugin_one.events"))
        with pytest.raises(ValueError, match="plugin_one"):
            event_type("test.core.clash")(make("plugin_two.events"))
        assert event_class("test.core.clash") is first

    def test_reregistering_same_class_replaces(self, registry: None) -> None:
        """The same class registered again (a module reload) replaces the entry."""

        def make() -> type[DomainEvent]:
            @dataclass(frozen=True, kw_only=True, slots=True)
            class Reloaded(DomainEvent):
                pass

            return Reloaded

        event_type("test.core.reloaded")(make())
        again = event_type("test.core.reloaded")(make())
        assert event_class("test.core.reloaded") is again

    def test_bad_registrations(self, registry: None) -> None:
        """Empty names and classes that are not DomainEvent dataclasses are refused."""
        with pytest.raises(ValueError, match="non-empty"):
            event_type("")

        @dataclass
        class Plain:
            x: int = 0

        with pytest.raises(TypeError, match="DomainEvent"):
            event_type("test.core.plain")(Plain)  # type: ignore[type-var]
        with pytest.raises(TypeError, match="DomainEvent"):
            event_type("test.core.notevent")(int)  # type: ignore[type-var]
        assert event_class("test.core.plain") is None

    def test_no_side_effects_at_import(self) -> None:
        """Importing eventbus (and its submodules) imports no plugin and scans nothing."""
        probe = (
            "import sys, eventbus, eventbus.portfolio, eventbus.codec, eventbus.testing;"
            "print(sorted(m for m in sys.modules if m.startswith('eventbus_')))"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
        )
        assert result.stdout.strip() == "[]"


@event_type("test.hook.order")
@dataclass(frozen=True, kw_only=True, slots=True)
class _HookedOrder(DomainEvent):
    """Declared field checks plus a ``validate`` hook (no ``__post_init__``)."""

    total: Annotated[Decimal, check_decimal]
    note: str = ""

    def validate(self) -> None:
        if len(self.note) > 5:
            raise InvalidEventError(type(self).__name__, "note", "is too long")


@event_type("test.hook.big_order")
@dataclass(frozen=True, kw_only=True, slots=True)
class _BigOrder(_HookedOrder):
    """A subclass adds its own rule; the parent's still runs, first."""

    def validate(self) -> None:
        if self.total < 100:
            raise InvalidEventError(type(self).__name__, "total", "must be at least 100")


@dataclass(frozen=True, kw_only=True, slots=True)
class _UnregisteredHooked(DomainEvent):
    """Not registered: validated through DomainEvent.__post_init__, hook included."""

    n: int = 0

    def validate(self) -> None:
        if self.n < 0:
            raise InvalidEventError(type(self).__name__, "n", "must not be negative")


class TestValidationHook:
    """``validate(self)``: a subclass's own rules, with no ``super().__post_init__()`` call."""

    def test_the_hook_rejects_naming_the_field(self) -> None:
        """A hook's InvalidEventError comes out of construction as is."""
        with pytest.raises(InvalidEventError, match=r"_HookedOrder\.note: is too long"):
            _HookedOrder(total=Decimal(1), note="too long")
        assert _HookedOrder(total=Decimal(1), note="ok").note == "ok"

    def test_every_class_hook_runs_base_first(self) -> None:
        """A subclass's hook adds to its parent's: both run, the parent's first."""
        with pytest.raises(InvalidEventError, match="total: must be at least 100"):
            _BigOrder(total=Decimal(1))
        with pytest.raises(InvalidEventError, match="note: is too long"):
            _BigOrder(total=Decimal(1), note="too long")  # the parent's rule first
        assert _BigOrder(total=Decimal(500)).total == Decimal(500)

    def test_declared_checks_run_before_the_hook(self) -> None:
        """The hook sees fields that passed their declared checks (a float never reaches it)."""
        with pytest.raises(InvalidEventError, match="total: must be a Decimal"):
            _BigOrder(total=1.5)  # type: ignore[arg-type]

    def test_unregistered_classes_run_it_too(self) -> None:
        """Without a wire name the dataclass constructor validates through __post_init__."""
        with pytest.raises(InvalidEventError, match="n: must not be negative"):
            _UnregisteredHooked(n=-1)

    def test_decoding_runs_the_hook(self) -> None:
        """Bytes the hook refuses do not decode into an event: the codec refuses them."""
        good = codec.dumps(_BigOrder(total=Decimal(500)))
        assert codec.loads(good) == codec.loads(good)
        bad = good.replace(b'"500"', b'"5"')
        with pytest.raises((DecodeError, InvalidEventError), match="at least 100"):
            codec.loads(bad)
