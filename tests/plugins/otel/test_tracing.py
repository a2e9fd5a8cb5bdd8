"""The otel plugin: one span per publish and per handler call, one tree per root event."""

from __future__ import annotations

import gc
from decimal import Decimal
from uuid import uuid4

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eventbus import EventBus
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_logging import LoggingPlugin
from eventbus_networth import NetWorthPlugin
from eventbus_otel import OTelPlugin
from eventbus_sse import SSEPlugin
from tests.plugins.otel.conftest import tree


def _balance() -> AccountBalanceUpdated:
    return AccountBalanceUpdated(
        user_id=uuid4(),
        account_id=uuid4(),
        previous_balance=Decimal("0"),
        new_balance=Decimal("120.50"),
        delta=Decimal("120.50"),
        currency="USD",
    )


def _bus(provider: TracerProvider, *plugins: object) -> EventBus:
    bus = EventBus()
    bus.register_plugin(OTelPlugin(provider), name="otel")
    for plugin in plugins:
        bus.register_plugin(plugin)
    return bus


class TestSpanTree:
    """A balance update with the first-party plugins is one tree."""

    @pytest.mark.parametrize("mode", ["async", "sync"])
    async def test_balance_update_tree(
        self, provider: TracerProvider, exporter: InMemorySpanExporter, mode: str
    ) -> None:
        """Publish, its handlers, the derived net-worth publish under the aggregator, its SSE routing."""
        bus = _bus(provider, LoggingPlugin(), NetWorthPlugin(), SSEPlugin())
        event = _balance()
        async with bus:
            if mode == "async":
                await bus.publish(event)
            else:
                bus.publish_sync(event)
        spans = exporter.get_finished_spans()
        assert tree(spans) == [
            "publish portfolio.balance.updated",
            "  process portfolio.balance.updated [LoggingPlugin]",
            "  process portfolio.balance.updated [Broadcaster]",
            "  process portfolio.balance.updated [NetWorthPlugin]",
            "    publish portfolio.networth.updated",
            "      process portfolio.networth.updated [LoggingPlugin]",
            "      process portfolio.networth.updated [Broadcaster]",
        ]
        assert len({s.context.trace_id for s in spans}) == 1
        root = next(s for s in spans if s.parent is None)
        assert root.kind is SpanKind.PRODUCER
        assert root.attributes == {
            "messaging.system": "eventbus",
            "messaging.operation.type": "publish",
            "messaging.destination.name": "portfolio.balance.updated",
            "messaging.message.id": str(event.event_id),
        }
        routing = [
            s for s in spans if "Broadcaster" in str((s.attributes or {}).get("eventbus.handler"))
        ]
        assert {s.kind for s in routing} == {SpanKind.CONSUMER}
        assert routing[0].attributes["eventbus.handler"] == (  # type: ignore[index]
            "eventbus_sse._broadcaster.Broadcaster.handle"
        )
        assert all(s.status.status_code is StatusCode.UNSET for s in spans)

    async def test_failing_handler(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """A failing handler's span records the exception and has status ERROR."""
        bus = _bus(provider)

        def broken(event: AccountBalanceUpdated) -> None:
            raise ValueError("no quotes today")

        bus.subscribe(AccountBalanceUpdated, broken)
        bus.subscribe(AccountBalanceUpdated, lambda e: None)
        await bus.publish(_balance())
        failed, fine = [s for s in exporter.get_finished_spans() if s.name.startswith("process")]
        assert failed.status.status_code is StatusCode.ERROR
        assert "ValueError: no quotes today" in str(failed.status.description)
        [exception] = failed.events
        assert exception.name == "exception"
        assert exception.attributes["exception.type"] == "ValueError"  # type: ignore[index]
        assert exception.attributes["exception.message"] == "no quotes today"  # type: ignore[index]
        assert fine.status.status_code is StatusCode.UNSET

    async def test_concurrent_and_timed_out_handlers(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """A concurrent handler's span is a child of the publish; a timeout is an ERROR."""
        import asyncio

        bus = _bus(provider)

        async def hang(event: AccountBalanceUpdated) -> None:
            await asyncio.Event().wait()

        bus.subscribe(AccountBalanceUpdated, hang, concurrent=True, timeout=0.05)
        await bus.publish(_balance())
        assert tree(exporter.get_finished_spans()) == [
            "publish portfolio.balance.updated",
            "  process portfolio.balance.updated [<locals>]",
        ]
        span = next(s for s in exporter.get_finished_spans() if s.name.startswith("process"))
        assert span.status.status_code is StatusCode.ERROR
        assert "TimeoutError" in str(span.status.description)

    def test_unloaded_costs_nothing(self, provider: TracerProvider) -> None:
        """Unregistering the plugin removes its observer: plans are cached again."""
        bus = _bus(provider)
        bus.subscribe(AccountBalanceUpdated, lambda e: None)
        assert len(bus.observers()) == 1
        bus.unregister_plugin("otel")
        assert bus.observers() == ()
        gc.collect()  # the other tests' buses: observed() looks at every bus
        bus.publish_sync(_balance())
        assert AccountBalanceUpdated in bus._sync_plans


class TestEntryHeaders:
    """The publish span's context goes into a fleet entry as W3C traceparent."""

    async def test_traceparent_round_trip(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """inject() writes traceparent; the receive span is a child of the publish span."""
        from collections.abc import Mapping

        from eventbus import DomainEvent

        class Sequencer:
            def __init__(self) -> None:
                self.entries: list[tuple[DomainEvent, Mapping[str, str]]] = []

            def sequences(self, event_type: type[DomainEvent]) -> bool:
                return True

            def append(self, event: DomainEvent) -> None:
                raise AssertionError("append_with_headers is used while observed")

            def append_with_headers(self, event: DomainEvent, headers: Mapping[str, str]) -> None:
                self.entries.append((event, dict(headers)))

        bus = _bus(provider)
        sequencer = Sequencer()
        bus.set_sequencer(sequencer)
        bus.subscribe(AccountBalanceUpdated, lambda e: None, fleet=True)
        await bus.publish(_balance())
        [(event, headers)] = sequencer.entries
        publish = exporter.get_finished_spans()[0]
        trace_id = f"{publish.context.trace_id:032x}"
        span_id = f"{publish.context.span_id:016x}"
        assert headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
        exporter.clear()
        await bus.deliver(event, "1700000000000-0", local=False, headers=headers)
        receive, process = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
        assert receive.name == "receive portfolio.balance.updated"
        assert receive.kind is SpanKind.CONSUMER
        assert receive.parent is not None
        assert receive.parent.span_id == publish.context.span_id
        assert receive.context.trace_id == publish.context.trace_id
        assert receive.attributes["eventbus.position"] == "1700000000000-0"  # type: ignore[index]
        assert process.parent is not None
        assert process.parent.span_id == receive.context.span_id
