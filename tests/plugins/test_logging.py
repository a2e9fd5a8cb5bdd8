"""The logging plugin: levels per type, ``extra`` fields, switching off, and laziness."""

from __future__ import annotations

import abc
import io
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest

from eventbus import DomainEvent, EventBus, Priority, codec, event_type
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)
from eventbus_logging import LOGGER_NAME, JSONLinesFormatter, LoggingPlugin
from eventbus_networth import NetWorthPlugin
from tests.plugins.networth.helpers import Stream


@event_type("tests.logging.custom")
@dataclass(frozen=True, kw_only=True, slots=True)
class Custom(DomainEvent):
    """A third-party event with fields that clash with LogRecord attributes."""

    name: str
    module: str
    amount: Decimal


@event_type("tests.logging.derived")
@dataclass(frozen=True, kw_only=True, slots=True)
class Derived(Custom):
    """A subclass of `Custom`, to test level resolution along the MRO."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Unnamed(DomainEvent):
    """An event class with no wire name (not registered with @event_type)."""

    ref: UUID


class Marker(abc.ABC):  # noqa: B024  # a marker ABC, registered with below
    """An ABC events are registered with (virtual subclassing)."""


Marker.register(Unnamed)


def _balance() -> AccountBalanceUpdated:
    return AccountBalanceUpdated.from_change(
        user_id=uuid4(),
        account_id=uuid4(),
        previous_balance=Decimal("10.00"),
        new_balance=Decimal("12.50"),
        currency="EUR",
    )


def _holdings() -> AccountHoldingsUpdated:
    return AccountHoldingsUpdated(
        user_id=uuid4(),
        account_id=uuid4(),
        holdings_count=4,
        created_count=1,
        updated_count=2,
        deactivated_count=0,
    )


def _networth() -> PortfolioNetWorthRecalculated:
    return PortfolioNetWorthRecalculated(
        user_id=uuid4(),
        previous_net_worth=Decimal("1"),
        new_net_worth=Decimal("3.5"),
        delta=Decimal("2.5"),
        currency="USD",
        account_count=2,
    )


def _custom(cls: type[Custom] = Custom) -> Custom:
    return cls(name="n", module="m", amount=Decimal("0.1"))


@pytest.fixture(name="debug_events", autouse=True)
def _debug_events(caplog: pytest.LogCaptureFixture) -> None:
    """Every test here captures ``eventbus.events`` from DEBUG up (tests may raise it)."""
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER_NAME]


def _bus(plugin: LoggingPlugin | None = None) -> EventBus:
    bus = EventBus(raise_errors=True)
    bus.register_plugin(plugin or LoggingPlugin(), name="logging")
    return bus


class TestLevels:
    """Default levels, per-type configuration, and off."""

    @pytest.mark.parametrize(
        ("make", "level", "message"),
        [
            (_balance, logging.DEBUG, "portfolio.balance.updated"),
            (_holdings, logging.DEBUG, "portfolio.holdings.updated"),
            (_networth, logging.INFO, "portfolio.networth.updated"),
            (_custom, logging.INFO, "tests.logging.custom"),
        ],
    )
    def test_defaults(
        self, caplog: pytest.LogCaptureFixture, make: object, level: int, message: str
    ) -> None:
        """Balance/holdings at DEBUG, net worth and unknown events at INFO; message = wire name."""
        _bus().publish_sync(make())  # type: ignore[operator]
        [record] = _records(caplog)
        assert (record.levelno, record.getMessage()) == (level, message)

    def test_configured_level(self, caplog: pytest.LogCaptureFixture) -> None:
        """A per-type level overrides the default."""
        _bus(LoggingPlugin(levels={AccountBalanceUpdated: logging.WARNING})).publish_sync(
            _balance()
        )
        assert [r.levelno for r in _records(caplog)] == [logging.WARNING]

    def test_off(self, caplog: pytest.LogCaptureFixture) -> None:
        """``None`` switches a type off; other types still log."""
        bus = _bus(LoggingPlugin(levels={AccountBalanceUpdated: None}))
        bus.publish_sync(_balance())
        bus.publish_sync(_networth())
        assert [r.getMessage() for r in _records(caplog)] == ["portfolio.networth.updated"]

    def test_default_off(self, caplog: pytest.LogCaptureFixture) -> None:
        """``default=None`` silences types with no configured level."""
        bus = _bus(LoggingPlugin(default=None))
        bus.publish_sync(_custom())
        bus.publish_sync(_networth())
        assert [r.getMessage() for r in _records(caplog)] == ["portfolio.networth.updated"]

    def test_resolved_along_the_mro(self) -> None:
        """A level set on a base class applies to subclasses, unless they have their own."""
        plugin = LoggingPlugin(levels={Custom: logging.ERROR})
        assert plugin.level_for(Derived) == logging.ERROR
        plugin = LoggingPlugin(levels={Custom: logging.ERROR, Derived: None})
        assert plugin.level_for(Derived) is None
        assert plugin.level_for(Custom) == logging.ERROR

    def test_virtual_subclass(self) -> None:
        """A level set on an ABC applies to classes registered with it."""
        plugin = LoggingPlugin(levels={Marker: logging.CRITICAL})  # type: ignore[dict-item]
        assert plugin.level_for(Unnamed) == logging.CRITICAL

    def test_set_level_at_runtime(self, caplog: pytest.LogCaptureFixture) -> None:
        """set_level takes effect for the next event, despite the per-type cache."""
        plugin = LoggingPlugin()
        bus = _bus(plugin)
        bus.publish_sync(_networth())
        plugin.set_level(PortfolioNetWorthRecalculated, None)
        bus.publish_sync(_networth())
        plugin.set_level(PortfolioNetWorthRecalculated, logging.ERROR)
        bus.publish_sync(_networth())
        assert [r.levelno for r in _records(caplog)] == [logging.INFO, logging.ERROR]

    def test_disabled_logger_level(self, caplog: pytest.LogCaptureFixture) -> None:
        """The logger's own level is honoured: DEBUG events vanish at INFO."""
        caplog.set_level(logging.INFO, logger=LOGGER_NAME)
        bus = _bus()
        bus.publish_sync(_balance())
        bus.publish_sync(_networth())
        assert [r.levelno for r in _records(caplog)] == [logging.INFO]

    @pytest.mark.parametrize("level", [0, -5, True, "INFO", 1.5])
    def test_invalid_level(self, level: object) -> None:
        """A bad level is refused, naming the event type."""
        with pytest.raises(ValueError, match=r"levels\[AccountBalanceUpdated\]"):
            LoggingPlugin(levels={AccountBalanceUpdated: level})  # type: ignore[dict-item]

    def test_invalid_key(self) -> None:
        """Keys must be classes."""
        with pytest.raises(TypeError, match="levels"):
            LoggingPlugin(levels={"AccountBalanceUpdated": logging.INFO})  # type: ignore[dict-item]


@event_type("tests.logging.reading")
@dataclass(frozen=True, kw_only=True, slots=True)
class Reading(DomainEvent):
    """A third-party event with a float: a nan has no exact JSON form."""

    value: float


class TestExtra:
    """Structured fields on the LogRecord."""

    def test_a_value_the_codec_refuses_is_logged_plainly_that_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A nan (no exact JSON form) is still logged, and so is every later event."""
        bus = _bus(LoggingPlugin(levels={Reading: logging.DEBUG}))
        bus.publish_sync(Reading(value=float("nan")))
        bus.publish_sync(Reading(value=1.5))
        first, second = _records(caplog)
        assert math.isnan(first.value)  # type: ignore[attr-defined]
        assert second.value == 1.5  # type: ignore[attr-defined]

    def test_balance_fields(self, caplog: pytest.LogCaptureFixture) -> None:
        """Metadata and every field are present; UUIDs and Decimals are strings."""
        event = _balance()
        _bus().publish_sync(event)
        [record] = _records(caplog)
        fields = {k: getattr(record, k) for k in codec.encode_payload(event)["data"]}
        assert record.event_type == "portfolio.balance.updated"  # type: ignore[attr-defined]
        assert record.event_id == str(event.event_id)  # type: ignore[attr-defined]
        assert record.occurred_at == event.occurred_at.isoformat()  # type: ignore[attr-defined]
        assert fields == {
            "user_id": str(event.user_id),
            "account_id": str(event.account_id),
            "previous_balance": "10.00",
            "new_balance": "12.50",
            "delta": "2.50",
            "currency": "EUR",
        }

    def test_ints_stay_ints(self, caplog: pytest.LogCaptureFixture) -> None:
        """Counts keep their JSON type."""
        _bus().publish_sync(_holdings())
        [record] = _records(caplog)
        assert record.holdings_count == 4  # type: ignore[attr-defined]

    def test_clashing_fields_are_prefixed(self, caplog: pytest.LogCaptureFixture) -> None:
        """Fields named like LogRecord attributes are logged as ``event_<field>``."""
        _bus().publish_sync(_custom())
        [record] = _records(caplog)
        assert (record.event_name, record.event_module) == ("n", "m")  # type: ignore[attr-defined]
        assert record.name == LOGGER_NAME
        assert record.amount == "0.1"  # type: ignore[attr-defined]

    def test_event_without_wire_name(self, caplog: pytest.LogCaptureFixture) -> None:
        """The class's qualified name stands in for a missing wire name."""
        event = Unnamed(ref=uuid4())
        _bus().publish_sync(event)
        [record] = _records(caplog)
        assert record.getMessage() == "Unnamed"
        assert record.event_type == "Unnamed"  # type: ignore[attr-defined]
        assert record.ref == str(event.ref)  # type: ignore[attr-defined]

    def test_nothing_built_when_disabled(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the level disabled, the payload is never encoded."""
        calls: list[DomainEvent] = []
        real = codec.encode_payload

        def spy(event: DomainEvent) -> dict[str, object]:
            calls.append(event)
            return real(event)

        monkeypatch.setattr(codec, "encode_payload", spy)
        caplog.set_level(logging.INFO, logger=LOGGER_NAME)
        bus = _bus()
        bus.publish_sync(_balance())
        assert calls == []
        bus.publish_sync(_networth())
        assert len(calls) == 1


class TestWithEntryPoints:
    """Loaded with ``load_entry_points()`` next to the net-worth plugin."""

    def test_logs_in_causal_order(
        self,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        event_bus: EventBus,
    ) -> None:
        """A balance event is logged before the net-worth event its handling publishes."""
        monkeypatch.setenv("EVENTBUS_BLOCK_PLUGINS", "sse,redis")
        monkeypatch.delenv("EVENTBUS_NETWORTH_RATES", raising=False)
        monkeypatch.delenv("EVENTBUS_NETWORTH_BASE", raising=False)
        event_bus.load_entry_points()
        assert isinstance(event_bus.get_plugin("logging"), LoggingPlugin)
        event_bus.publish_sync(
            AccountBalanceUpdated.from_change(
                user_id=uuid4(),
                account_id=uuid4(),
                previous_balance=Decimal(0),
                new_balance=Decimal(5),
                currency="USD",
            )
        )
        assert [(r.levelname, r.getMessage()) for r in _records(caplog)] == [
            ("DEBUG", "portfolio.balance.updated"),
            ("INFO", "portfolio.networth.updated"),
        ]


class TestFleet:
    """With a sequencer: local, so each event is logged once in the whole fleet."""

    def test_a_local_subscription_at_the_observe_band(self) -> None:
        """One subscription on DomainEvent, at Priority.OBSERVE, not a fleet one."""
        bus = _bus()
        (sub,) = bus.subscriptions()
        assert (sub.event_type, sub.priority, sub.fleet) == (DomainEvent, Priority.OBSERVE, False)

    async def test_root_where_published_derived_on_its_origin(self) -> None:
        """A's balance is logged on A at publish; its net worth on A at delivery; B logs none."""
        stream = Stream()
        logs: dict[str, list[str]] = {}
        buses = {}
        for name in ("a", "b"):
            logger = logging.getLogger(f"{LOGGER_NAME}.test.{name}")
            logger.setLevel(logging.DEBUG)
            handler = _Collect()
            logger.addHandler(handler)
            logs[name] = handler.messages
            bus = stream.attach(EventBus(raise_errors=True))
            bus.register_plugin(LoggingPlugin(logger=logger), name="logging")
            bus.register_plugin(NetWorthPlugin("USD"), name="networth")
            buses[name] = bus
        try:
            buses["a"].publish_sync(_usd_balance())
            assert logs["a"] == ["portfolio.balance.updated"]
            for bus in buses.values():
                await stream.deliver(bus)
        finally:
            for name in buses:
                logging.getLogger(f"{LOGGER_NAME}.test.{name}").handlers.clear()
        assert logs == {
            "a": ["portfolio.balance.updated", "portfolio.networth.updated"],
            "b": [],
        }


class _Collect(logging.Handler):
    """Keeps the messages of the records it handles."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _usd_balance() -> AccountBalanceUpdated:
    return AccountBalanceUpdated.from_change(
        user_id=uuid4(),
        account_id=uuid4(),
        previous_balance=Decimal(0),
        new_balance=Decimal(5),
        currency="USD",
    )


@event_type("tests.logging.clashing")
@dataclass(frozen=True, kw_only=True, slots=True)
class Clashing(DomainEvent):
    """An event whose fields share names with the JSON lines' basic keys."""

    level: str
    time: int


class TestJSONLinesFormatter:
    """`JSONLinesFormatter`, the plugin's public JSON-lines formatter (docs/plugins/logging.md)."""

    @pytest.fixture(name="lines")
    def _lines(self) -> Iterator[io.StringIO]:
        """The ``eventbus.events`` logger written through the formatter, as the docs set it up."""
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JSONLinesFormatter())
        events = logging.getLogger(LOGGER_NAME)
        events.addHandler(handler)
        try:
            yield stream
        finally:
            events.removeHandler(handler)

    @staticmethod
    def _parsed(stream: io.StringIO) -> list[dict[str, Any]]:
        text = stream.getvalue()
        assert text.endswith("\n")
        return [orjson.loads(line) for line in text.splitlines()]

    def test_one_json_object_per_event(self, lines: io.StringIO) -> None:
        """Each event is one line: the basics first, then the codec's exact values."""
        event = _balance()
        bus = _bus()
        bus.publish_sync(event)
        bus.publish_sync(_custom())
        first, second = self._parsed(lines)
        assert list(first)[:4] == ["time", "level", "logger", "message"]
        assert first["message"] == first["event_type"] == "portfolio.balance.updated"
        assert (first["level"], first["logger"]) == ("DEBUG", "eventbus.events")
        assert (first["new_balance"], first["delta"], first["currency"]) == ("12.50", "2.50", "EUR")
        assert first["event_id"] == str(event.event_id)
        assert first["user_id"] == str(event.user_id)
        assert first["occurred_at"] == event.occurred_at.isoformat()
        payload = codec.encode_payload(event)["data"]
        assert {k: first[k] for k in payload} == payload
        assert (second["event_name"], second["event_module"], second["amount"]) == ("n", "m", "0.1")

    def test_time_is_the_records_creation_time_in_utc(self) -> None:
        """``time`` is ISO 8601 with an explicit UTC offset and microseconds."""
        record = logging.makeLogRecord({"msg": "x", "created": 1_790_000_000.25})
        line = orjson.loads(JSONLinesFormatter().format(record))
        assert line["time"] == "2026-09-21T14:13:20.250000+00:00"
        assert datetime.fromisoformat(line["time"]).timestamp() == 1_790_000_000.25

    def test_fields_named_like_the_basics_are_prefixed(self, lines: io.StringIO) -> None:
        """An event field called ``level`` or ``time`` never hides the record's own."""
        _bus().publish_sync(Clashing(level="gold", time=7))
        (line,) = self._parsed(lines)
        assert (line["level"], line["event_level"]) == ("INFO", "gold")
        assert line["event_time"] == 7
        assert isinstance(line["time"], str)

    def test_exceptions_and_values_orjson_cannot_encode(self) -> None:
        """A traceback is kept as text; other values fall back to ``str``, never an error."""
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            record = logging.getLogger("x").makeRecord(
                "x",
                logging.ERROR,
                __file__,
                1,
                "failed %s",
                ("here",),
                sys.exc_info(),
                extra={"where": Path("/tmp"), "huge": 2**80},
            )
        line = orjson.loads(JSONLinesFormatter().format(record))
        assert line["message"] == "failed here"
        assert line["exc_info"].startswith("Traceback")
        assert "RuntimeError: boom" in line["exc_info"]
        assert (line["where"], line["huge"]) == ("/tmp", str(2**80))

    def test_is_public_api(self) -> None:
        """It is exported by the plugin package, which ships in eventbus's wheel."""
        import eventbus_logging

        assert "JSONLinesFormatter" in eventbus_logging.__all__
        assert eventbus_logging.JSONLinesFormatter is JSONLinesFormatter
