"""What the observability plugins cost per publish, loaded and enabled.

Each round makes `CALLS` publishes of a balance update to three no-op
handlers (microseconds per round read as nanoseconds per publish):

* ``bare``: no plugin: the fast path;
* ``loaded``: the otel and prometheus plugins registered but not enabled
  (what ``load_entry_points()`` gives): must cost nothing (same fast path);
* ``observer``: an empty `eventbus.DispatchObserver`: the careful, observed
  path alone;
* ``otel``: the otel plugin enabled, with the SDK's tracer provider and a
  no-op span processor (what building spans costs, without exporting them);
* ``prometheus``: the prometheus plugin enabled.

The dispatch budgets of the core (benchmarks/test_dispatch.py) hold only
while nothing observes; the figures here are what an enabled plugin adds.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from itertools import repeat
from typing import Any, Final
from uuid import UUID

import pytest
from opentelemetry.sdk.trace import TracerProvider

from benchmarks.ratios import RatioBook
from eventbus import DispatchObserver, DomainEvent, EventBus
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_otel import OTelPlugin
from eventbus_prometheus import PrometheusPlugin

CALLS: Final = 1000
CASES: Final = ("bare", "loaded", "observer", "otel", "prometheus")


def _noop(event: DomainEvent) -> None:
    """A no-op handler."""


def _event() -> AccountBalanceUpdated:
    return AccountBalanceUpdated.from_change(
        user_id=UUID(int=1),
        account_id=UUID(int=2),
        previous_balance=Decimal("1520.75"),
        new_balance=Decimal("1735.20"),
        currency="USD",
    )


def _bus(case: str) -> EventBus:
    bus = EventBus()
    for _ in range(3):
        bus.subscribe(AccountBalanceUpdated, _noop)
    if case == "loaded":
        bus.register_plugin(OTelPlugin(), name="otel")
        bus.register_plugin(PrometheusPlugin(), name="prometheus")
    elif case == "observer":
        bus.add_observer(DispatchObserver())
    elif case == "otel":
        bus.register_plugin(OTelPlugin(TracerProvider()), name="otel")
    elif case == "prometheus":
        bus.register_plugin(PrometheusPlugin(enabled=True), name="prometheus")
    return bus


def _loop(publish: Callable[[Any], None], event: AccountBalanceUpdated) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in repeat(None, n):
            publish(event)

    return run


class TestObservedPublish:
    """``publish_sync`` of a balance event to 3 handlers, per case."""

    @pytest.mark.parametrize("case", CASES)
    def test_publish_sync(self, benchmark: Any, ratios: RatioBook, case: str) -> None:
        """`CALLS` publishes on the ``case`` bus."""
        bus = _bus(case)
        run = _loop(bus.publish_sync, _event())
        run(10)
        benchmark.group = "observability plugins, publish_sync to 3 handlers"
        try:
            benchmark(run, CALLS)
        finally:
            for observer in bus.observers():
                bus.remove_observer(observer)  # the next cases are unobserved again
        ratios.record(f"observability {case}", benchmark, CALLS)


class TestTargets:
    """Loaded but not enabled costs nothing; enabled costs are printed."""

    def test_loaded_costs_nothing(self, ratios: RatioBook) -> None:
        """Loading the plugins without enabling them keeps the fast path (within noise)."""
        ratios.check("observability loaded", "observability bare", at_most=1.15)
        for case in ("observer", "otel", "prometheus"):
            ratios.note_ratio(
                f"observability: {case} / bare", f"observability {case}", "observability bare"
            )
