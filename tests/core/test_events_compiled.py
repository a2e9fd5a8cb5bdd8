"""Compiled event classes and ids: the generated constructor validates exactly as before.

Checks declared on fields (``Annotated[Decimal, check_decimal]``) give a
registered class a generated ``__init__``; every other construction path
(unregistered subclasses, ``__post_init__`` of one's own) validates through a
generated validator. Both must refuse and accept the same values, with the
same messages, as the ``check_*`` helpers. Ids: UUIDv7 from a per-process
counter, with no system call per id, re-seeded in a forked child.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventbus.events
from eventbus import DomainEvent, InvalidEventError, event_type
from eventbus.events import (
    check_count,
    check_currency,
    check_decimal,
    check_uuid,
    equals_difference,
    uuid7,
)
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)
from tests.core.samples import balance, holdings, networth
from tests.core.test_events import INVALID, Factory


@dataclass(frozen=True, kw_only=True, slots=True)
class PlainBalance(AccountBalanceUpdated):
    """Unregistered: the dataclass constructor, validating through __post_init__."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlainHoldings(AccountHoldingsUpdated):
    """Unregistered, as above."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlainNetWorth(PortfolioNetWorthRecalculated):
    """Unregistered, as above."""


_PLAIN: dict[type[DomainEvent], type[DomainEvent]] = {
    AccountBalanceUpdated: PlainBalance,
    AccountHoldingsUpdated: PlainHoldings,
    PortfolioNetWorthRecalculated: PlainNetWorth,
}


def _error(build: Any) -> tuple[str, str, str] | None:
    try:
        build()
    except InvalidEventError as exc:
        return exc.event_type, exc.field, str(exc).split(": ", 1)[1]
    return None


@pytest.fixture(name="registry")
def _registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register test events in a throwaway copy of the process-wide registry."""
    monkeypatch.setattr(eventbus.events, "_by_name", dict(eventbus.events._by_name))


class TestGeneratedConstructor:
    """The portfolio classes' constructors are generated, and behave as dataclass ones."""

    @pytest.mark.parametrize(
        "cls", [AccountBalanceUpdated, AccountHoldingsUpdated, PortfolioNetWorthRecalculated]
    )
    def test_installed_keyword_only(self, cls: type[DomainEvent]) -> None:
        """A generated __init__: keyword-only, named after the class, defaults shown as <factory>."""
        init = cls.__dict__["__init__"]
        assert getattr(init, "__eventbus_compiled__", False)
        assert init.__qualname__ == f"{cls.__qualname__}.__init__"
        params = inspect.signature(cls).parameters
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
        assert str(params["event_id"]) == "event_id=<factory>"
        assert set(params) == {f.name for f in dataclasses.fields(cls)}

    def test_missing_argument_names_class_and_field(self) -> None:
        """The TypeError of a missing field names the class and the field, as dataclasses' does."""
        with pytest.raises(TypeError, match=r"AccountHoldingsUpdated\.__init__\(\).*'user_id'"):
            AccountHoldingsUpdated(  # type: ignore[call-arg]
                account_id=uuid4(),
                holdings_count=1,
                created_count=0,
                updated_count=0,
                deactivated_count=0,
            )

    @pytest.mark.parametrize("case", INVALID, ids=[f"{c[0].__name__}.{c[1]}" for c in INVALID])
    def test_same_errors_as_the_dataclass_path(
        self, case: tuple[Factory, str, object, str]
    ) -> None:
        """Each invalid value: the same class name, field and message both ways."""
        factory, field, value, _ = case
        cls = type(factory())
        valid = {f.name: getattr(factory(), f.name) for f in dataclasses.fields(cls)}
        valid[field] = value
        compiled = _error(lambda: cls(**valid))
        plain = _error(lambda: _PLAIN[cls](**valid))
        assert compiled is not None
        assert plain is not None
        assert compiled[1:] == plain[1:]
        assert (compiled[0], plain[0]) == (cls.__name__, _PLAIN[cls].__name__)

    @settings(max_examples=200, deadline=None)
    @given(
        amount=st.decimals(allow_nan=True, allow_infinity=True)
        | st.sampled_from([Decimal("0E-41"), Decimal("1E+39"), Decimal("-0.00"), 1.5, 2, "1"]),
        count=st.integers(-5, 2**64) | st.sampled_from([True, 1.0, "3"]),
        currency=st.text(max_size=4) | st.sampled_from(["USD", "ÜSD", "usd"]),
        when=st.datetimes(timezones=st.just(UTC) | st.just(timezone(timedelta(hours=-3))))
        | st.datetimes(),
    )
    def test_accepts_and_refuses_alike(
        self, amount: Any, count: Any, currency: Any, when: datetime
    ) -> None:
        """Random values: both constructors build equal events or raise the same error."""
        for cls, fields in (
            (
                AccountBalanceUpdated,
                {"previous_balance": Decimal(0), "new_balance": amount, "currency": currency},
            ),
            (AccountHoldingsUpdated, {"holdings_count": count, "account_id": uuid4()}),
        ):
            kwargs = {"event_id": uuid4(), "user_id": uuid4(), "occurred_at": when, **fields}
            if cls is AccountBalanceUpdated:
                kwargs["account_id"] = uuid4()
                kwargs["delta"] = amount
            else:
                kwargs.update(created_count=0, updated_count=0, deactivated_count=0)
            outcomes = []
            for make in (cls, _PLAIN[cls]):
                try:
                    built = make(**kwargs)
                except InvalidEventError as exc:
                    outcomes.append((exc.field, str(exc).split(": ", 1)[1]))
                else:
                    outcomes.append(tuple(getattr(built, f.name) for f in dataclasses.fields(cls)))
            assert outcomes[0] == outcomes[1]

    def test_occurred_at_normalised_to_utc(self) -> None:
        """Another offset becomes the same instant in UTC, as before."""
        local = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        event = holdings(occurred_at=local)
        assert event.occurred_at.tzinfo is UTC
        assert event.occurred_at == local

    def test_subclasses_of_uuid_and_decimal_accepted(self) -> None:
        """The fast tests are type identities; the full rules still accept subclasses."""

        class MyUUID(UUID):
            pass

        class MyDecimal(Decimal):
            pass

        event = balance(
            user_id=MyUUID(int=7),
            previous_balance=MyDecimal("100.00"),
            new_balance=Decimal("150.255"),
            delta=Decimal("50.255"),
        )
        assert event.user_id == UUID(int=7)

    def test_replace_and_pickle_keep_working(self) -> None:
        """dataclasses.replace validates again; copies and pickles compare equal."""
        import copy
        import pickle

        event = networth()
        assert pickle.loads(pickle.dumps(event)) == event
        assert copy.deepcopy(event) == event
        with pytest.raises(InvalidEventError, match="delta"):
            dataclasses.replace(event, new_net_worth=Decimal("1"))


class TestDeclaredChecks:
    """Checks declared in annotations, for any event class."""

    def test_registered_class_gets_a_generated_constructor(self, registry: None) -> None:
        """Declared checks, no __post_init__: the constructor is generated and checks them."""

        @event_type("test.compiled.order")
        @dataclass(frozen=True, kw_only=True, slots=True)
        class Order(DomainEvent):
            order_id: Annotated[UUID, check_uuid]
            total: Annotated[Decimal, check_decimal]
            items: Annotated[int, check_count]
            currency: Annotated[str, check_currency]
            note: str = ""

        assert getattr(Order.__init__, "__eventbus_compiled__", False)
        order = Order(order_id=uuid4(), total=Decimal("9.99"), items=2, currency="EUR")
        assert order.note == ""
        with pytest.raises(InvalidEventError, match=r"Order\.total: must be a Decimal"):
            Order(order_id=uuid4(), total=9.99, items=2, currency="EUR")  # type: ignore[arg-type]
        with pytest.raises(InvalidEventError, match=r"Order\.items: must be non-negative"):
            Order(order_id=uuid4(), total=Decimal(1), items=-1, currency="EUR")
        with pytest.raises(InvalidEventError, match=r"Order\.order_id"):
            Order(order_id="x", total=Decimal(1), items=1, currency="EUR")  # type: ignore[arg-type]

    def test_unregistered_class_checks_through_post_init(self) -> None:
        """Without registration the dataclass constructor runs, and __post_init__ checks."""

        @dataclass(frozen=True, kw_only=True, slots=True)
        class Refund(DomainEvent):
            amount: Annotated[Decimal, check_decimal]

        assert not getattr(Refund.__init__, "__eventbus_compiled__", False)
        with pytest.raises(InvalidEventError, match=r"Refund\.amount: must be finite"):
            Refund(amount=Decimal("NaN"))

    def test_own_post_init_keeps_the_dataclass_constructor(self, registry: None) -> None:
        """A class with its own __post_init__ keeps it: declared checks run first, then its own."""
        seen: list[str] = []

        @event_type("test.compiled.limit")
        @dataclass(frozen=True, kw_only=True, slots=True)
        class Limit(DomainEvent):
            cap: Annotated[int, check_count]

            def __post_init__(self) -> None:
                DomainEvent.__post_init__(self)
                seen.append("own")
                if self.cap > 10:
                    raise InvalidEventError(type(self).__name__, "cap", "is too high")

        assert not getattr(Limit.__init__, "__eventbus_compiled__", False)
        with pytest.raises(InvalidEventError, match="non-negative"):
            Limit(cap=-1)
        assert seen == []  # the declared check failed first
        with pytest.raises(InvalidEventError, match="too high"):
            Limit(cap=11)

    def test_constructor_defined_by_the_class_is_kept(self, registry: None) -> None:
        """A class that writes its own __init__ keeps it."""

        @event_type("test.compiled.custom_init")
        @dataclass(frozen=True, kw_only=True, slots=True, init=False)
        class Custom(DomainEvent):
            n: Annotated[int, check_count]

            def __init__(self, n: int) -> None:
                object.__setattr__(self, "n", n)
                object.__setattr__(self, "event_id", uuid7())
                object.__setattr__(self, "occurred_at", datetime.now(UTC))
                self.__post_init__()

        assert Custom(3).n == 3
        assert not getattr(Custom.__init__, "__eventbus_compiled__", False)

    def test_annotations_that_resolve_later(
        self, registry: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A name defined after the class (a string annotation): its checks apply once it exists."""
        (tmp_path / "later_events.py").write_text(
            "from __future__ import annotations\n"
            "from dataclasses import dataclass\n"
            "from decimal import Decimal\n"
            "from typing import Annotated\n"
            "from eventbus import DomainEvent, event_type\n"
            "from eventbus.events import check_decimal\n"
            "@event_type('test.compiled.later')\n"
            "@dataclass(frozen=True, kw_only=True, slots=True)\n"
            "class Later(DomainEvent):\n"
            "    amount: Amount\n"
            "Amount = Annotated[Decimal, check_decimal]\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        import later_events  # type: ignore[import-not-found]

        from eventbus import codec

        with pytest.raises(InvalidEventError, match=r"Later\.amount: must be finite"):
            later_events.Later(amount=Decimal("NaN"))
        event = later_events.Later(amount=Decimal("1.5"))
        assert codec.loads(codec.dumps(event)) == event

    def test_difference_needs_bounded_amounts(self, registry: None) -> None:
        """equals_difference without check_decimal on its operands is refused at registration."""
        with pytest.raises(TypeError, match="check_decimal"):

            @event_type("test.compiled.bad_difference")
            @dataclass(frozen=True, kw_only=True, slots=True)
            class Bad(DomainEvent):
                new: Decimal
                old: Annotated[Decimal, check_decimal]
                change: Annotated[Decimal, check_decimal, equals_difference("new", "old")]


class TestIds:
    """uuid7: ordered, unique, no system call per id, re-seeded after fork."""

    def test_no_system_call_per_id(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """os.urandom is not called when making ids (only at import and after fork)."""

        def refuse(size: int) -> bytes:
            raise AssertionError("os.urandom called per id")

        monkeypatch.setattr(os, "urandom", refuse)
        ids = [uuid7() for _ in range(1000)]
        assert len(set(ids)) == 1000

    def test_unique_across_threads(self) -> None:
        """Four threads making ids at once never make the same one."""
        made: list[list[UUID]] = [[] for _ in range(4)]

        def make(into: list[UUID]) -> None:
            into.extend(uuid7() for _ in range(20_000))

        threads = [threading.Thread(target=make, args=(m,)) for m in made]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        every = [u for m in made for u in m]
        assert len(set(every)) == len(every)
        for m in made:  # each thread's own ids strictly increase
            assert all(a.int < b.int for a, b in itertools.pairwise(m))

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_forked_child_draws_new_random_bits(self) -> None:
        """A child does not continue the parent's counter: its ids share nothing but time."""
        uuid7()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover  # the child
            try:
                os.write(write, uuid7().bytes)
            finally:
                os._exit(0)
        os.close(write)
        child = UUID(bytes=os.read(read, 16))
        os.close(read)
        os.waitpid(pid, 0)
        parent = uuid7()
        assert child.version == 7

        def tail(u: UUID) -> tuple[int, int]:  # (rand_a, the counter in rand_b)
            return (u.int >> 64) & 0xFFF, u.int & ((1 << 62) - 1)

        (child_a, child_count), (parent_a, parent_count) = tail(child), tail(parent)
        # Not a continuation of the parent's sequence (odds of a false alarm: ~2**-54).
        assert not (child_a == parent_a and abs(child_count - parent_count) < 2**20)
