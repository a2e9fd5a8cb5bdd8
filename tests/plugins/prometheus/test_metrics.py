"""The prometheus plugin: dispatch metrics, the SSE and Redis figures, /metrics over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from eventbus import EventBus
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_networth import NetWorthPlugin
from eventbus_prometheus import PrometheusPlugin
from eventbus_sse import SSEPlugin
from tests.support import wait_until
from tests.test_demo import DemoProcess, start_demo


def _balance(user: object = None) -> AccountBalanceUpdated:
    return AccountBalanceUpdated(
        user_id=user or uuid4(),  # type: ignore[arg-type]
        account_id=uuid4(),
        previous_balance=Decimal("0"),
        new_balance=Decimal("10"),
        delta=Decimal("10"),
        currency="USD",
    )


def samples(text: str) -> Iterator[Sample]:
    """Every sample of a Prometheus text exposition, parsed by prometheus-client."""
    for family in text_string_to_metric_families(text):
        yield from family.samples


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` whose labels include ``labels``, if any."""
    for sample in samples(text):
        if sample.name == name and labels.items() <= sample.labels.items():
            return sample.value
    return None


async def _scrape(plugin: PrometheusPlugin) -> str:
    transport = httpx.ASGITransport(app=plugin.asgi_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


class TestDispatchMetrics:
    """Counters and the histogram, fed by the plugin's observer."""

    async def test_published_durations_failures(self) -> None:
        """Publishes by wire name, durations by handler, failures by handler and event."""
        bus = EventBus()
        plugin = PrometheusPlugin(enabled=True)
        bus.register_plugin(plugin, name="prometheus")
        bus.register_plugin(NetWorthPlugin())

        def broken(event: AccountBalanceUpdated) -> None:
            raise ValueError("no")

        bus.subscribe(AccountBalanceUpdated, broken)
        for _ in range(3):
            await bus.publish(_balance())
        text = await _scrape(plugin)
        assert (
            value(text, "eventbus_events_published_total", event="portfolio.balance.updated") == 3
        )
        assert (
            value(text, "eventbus_events_published_total", event="portfolio.networth.updated") == 3
        )
        on_balance = "eventbus_networth._plugin.NetWorthPlugin.on_balance"
        assert value(text, "eventbus_handler_duration_seconds_count", handler=on_balance) == 3
        failures = value(
            text,
            "eventbus_handler_failures_total",
            event="portfolio.balance.updated",
            handler=f"{__name__}.TestDispatchMetrics.test_published_durations_failures.<locals>.broken",
        )
        assert failures == 3
        # Bounded labels: no user id appears anywhere.
        assert all("user" not in key for s in samples(text) for key in s.labels)

    async def test_sse_and_redis_figures(self) -> None:
        """The SSE gauges come from the SSE plugin's statistics(); no Redis bridge, no Redis figures."""
        bus = EventBus()
        plugin = PrometheusPlugin(enabled=True)
        bus.register_plugin(plugin, name="prometheus")
        sse = SSEPlugin()
        bus.register_plugin(sse)
        text = await _scrape(plugin)
        assert value(text, "eventbus_sse_clients") == sse.broadcaster.statistics()["clients"]
        assert value(text, "eventbus_sse_dropped_total") == 0
        assert value(text, "eventbus_redis_buffered") is None

    def test_inert_until_enabled(self) -> None:
        """Loaded but not enabled: no observer, so dispatch stays on the fast paths."""
        bus = EventBus()
        plugin = PrometheusPlugin()
        bus.register_plugin(plugin, name="prometheus")
        assert bus.observers() == ()
        assert plugin.registry is None
        with pytest.raises(RuntimeError, match="enable"):
            plugin.asgi_app()
        plugin.enable()
        assert len(bus.observers()) == 1
        plugin.disable()
        assert bus.observers() == ()

    def test_loaded_by_entry_point(self) -> None:
        """The distribution declares it in the eventbus entry-point group."""
        from importlib.metadata import entry_points

        names = {ep.name: ep.value for ep in entry_points(group="eventbus")}
        assert names["prometheus"] == "eventbus_prometheus:PrometheusPlugin"
        assert names["otel"] == "eventbus_otel:OTelPlugin"


@pytest.fixture(name="demo_process")
def _demo_process() -> Iterator[list[DemoProcess]]:
    started: list[DemoProcess] = []
    yield started
    for demo in started:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait(10)


class TestDemoEndpoint:
    """``eventbus demo`` serves /metrics."""

    def test_scrape_a_running_demo(self, demo_process: list[DemoProcess]) -> None:
        """Over real HTTP, parsed with prometheus-client's parser, while the demo publishes."""
        demo = start_demo(demo_process, "--duration", "20", "--interval", "0.1", "--users", "2")
        demo.urls(2)
        base = f"http://127.0.0.1:{demo.port}"
        text = ""

        def published() -> bool:
            nonlocal text
            text = httpx.get(f"{base}/metrics", timeout=10).text
            count = value(
                text, "eventbus_events_published_total", event="portfolio.networth.updated"
            )
            return bool(count)

        wait_until(published, timeout=15, what="net-worth events counted on /metrics")
        families = {family.name for family in text_string_to_metric_families(text)}
        assert {
            "eventbus_events_published",
            "eventbus_handler_duration_seconds",
            "eventbus_handler_failures",
            "eventbus_sse_clients",
            "eventbus_sse_dropped",
        } <= families
        assert value(text, "eventbus_sse_clients") == 0
        response = httpx.get(f"{base}/metrics", timeout=10)
        assert response.headers["content-type"].startswith("text/plain")
        demo.proc.terminate()
        assert demo.wait() == 0, demo.diagnostics()
