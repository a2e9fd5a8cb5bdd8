"""The screenshots of docs/observability.md, taken in a real headless Chromium from real output.

* **trace**: one balance update published on a bus with the logging,
  net-worth, SSE and otel plugins; the spans of the OpenTelemetry SDK's
  in-memory exporter are drawn as a tree and timeline on a self-made page
  (no external service, no network) and screenshotted;
* **metrics**: a real ``eventbus demo``, bridged to a real redis-server and
  with a browser on its page (an SSE client), is scraped at ``/metrics`` over
  HTTP; the samples, parsed with prometheus-client's parser, are shown on a
  small dashboard page next to the raw exposition text.

Each test checks what its page shows. With
``EVENTBUS_OBSERVABILITY_SCREENSHOTS=docs/img`` they also write
``observability-trace.png`` and ``observability-metrics.png`` there, the
images the docs show.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("prometheus_client")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families

from eventbus import EventBus
from eventbus_logging import LoggingPlugin
from eventbus_networth import NetWorthPlugin
from eventbus_otel import OTelPlugin
from eventbus_sse import SSEPlugin
from tests.plugins.otel.spans import CollectingExporter, Span, children, roots
from tests.plugins.otel.test_tracing import _balance
from tests.support import CHROMIUM_ARGS, RedisServer, require_binary, wait_until
from tests.test_demo import DemoProcess, start_demo

pytestmark = pytest.mark.browser

#: Set to a directory (``docs/img``) to write the docs' screenshots there.
ENV_TARGET = "EVENTBUS_OBSERVABILITY_SCREENSHOTS"

_STYLE = """
body { font: 14px/1.45 "DejaVu Sans", sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 18px; margin: 0 0 4px; }
.sub { color: #59636e; margin-bottom: 16px; font-size: 13px; }
code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-weight: 600; color: #59636e; font-size: 12px;
     border-bottom: 1px solid #d1d9e0; padding: 6px 8px; }
td { border-bottom: 1px solid #eef1f4; padding: 5px 8px; vertical-align: middle; }
.kind { font-size: 11px; padding: 1px 6px; border-radius: 10px; color: #fff; }
.PRODUCER { background: #8250df; } .CONSUMER { background: #0969da; }
.INTERNAL { background: #59636e; }
.lane { position: relative; height: 14px; background: #f6f8fa; border-radius: 3px; }
.bar { position: absolute; top: 2px; height: 10px; border-radius: 2px; min-width: 2px; }
.bar.publish { background: #8250df; } .bar.process { background: #0969da; }
.bar.receive { background: #1a7f37; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.guide { color: #afb8c1; white-space: pre; }
.muted { color: #59636e; }
.panel { margin-top: 18px; border: 1px solid #d1d9e0; border-radius: 6px; padding: 10px 14px; }
.panel h2 { font-size: 14px; margin: 0 0 6px; }
.grid { display: grid; grid-template-columns: 1.25fr 1fr; gap: 18px; }
.cards { display: flex; gap: 12px; margin-bottom: 14px; }
.card { flex: 1; border: 1px solid #d1d9e0; border-radius: 6px; padding: 8px 12px; }
.card .v { font-size: 22px; font-weight: 600; }
.card .n { font-size: 11.5px; color: #59636e; font-family: "DejaVu Sans Mono", monospace; }
pre { background: #f6f8fa; border-radius: 6px; padding: 10px; margin: 0; font-size: 11px;
      line-height: 1.35; white-space: pre-wrap; word-break: break-all; }
.hbar { background: #0969da; height: 10px; border-radius: 2px; display: inline-block; }
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _screenshot(markup: str, path: Path, width: int) -> dict[str, Any]:
    """Render ``markup`` (no network) in headless Chromium; save a full-page PNG; facts read back."""
    chromium = require_binary("chromium", "chromium-browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 400})
            page.route("**/*", lambda route: route.abort())  # nothing leaves the page
            page.set_content(markup)
            page.screenshot(path=str(path), full_page=True)
            facts: dict[str, Any] = page.evaluate(
                "() => ({rows: document.querySelectorAll('tr.row').length,"
                " text: document.body.innerText})"
            )
        finally:
            browser.close()
    assert path.stat().st_size > 10_000
    return facts


def _publish(path: Path, name: str) -> None:
    target = os.environ.get(ENV_TARGET)
    if target:
        shutil.copyfile(path, Path(target) / name)


# ------------------------------------------------------------------ trace


def _short(handler: str) -> str:
    """``eventbus_sse._broadcaster.Broadcaster.handle`` -> ``Broadcaster.handle``."""
    return ".".join(handler.split(".")[-2:])


def trace_page(spans: list[Span]) -> str:
    """A tree and timeline of one trace's spans, with the attributes of two of them."""
    [root] = roots(spans)
    begin = root["start"]
    total = max(s["end"] for s in spans) - begin
    rows: list[str] = []

    def walk(span: Span, prefix: str, last: bool, depth: int) -> None:
        guide = "" if depth == 0 else prefix + ("└─ " if last else "├─ ")
        operation = span["name"].split(" ", 1)[0]
        handler = span["attributes"].get("eventbus.handler")
        left = 100 * (span["start"] - begin) / total
        width = 100 * (span["end"] - span["start"]) / total
        rows.append(
            "<tr class='row'>"
            f"<td class='mono'><span class='guide'>{html.escape(guide)}</span>"
            f"{html.escape(span['name'])}</td>"
            f"<td><span class='kind {span['kind']}'>{span['kind'].lower()}</span></td>"
            f"<td class='mono muted'>{html.escape(_short(handler)) if handler else ''}</td>"
            f"<td style='width:32%'><div class='lane'><div class='bar {operation}' "
            f"style='left:{left:.2f}%;width:{width:.2f}%'></div></div></td>"
            f"<td class='num mono'>{(span['end'] - span['start']) / 1000:,.0f} µs</td></tr>"
        )
        below = children(spans, span)
        inner = "" if depth == 0 else prefix + ("   " if last else "│  ")
        for i, child in enumerate(below):
            walk(child, inner, i == len(below) - 1, depth + 1)

    walk(root, "", True, 0)

    def attributes(span: Span) -> str:
        cells = "".join(
            f"<tr><td class='mono muted'>{html.escape(k)}</td>"
            f"<td class='mono'>{html.escape(str(v))}</td></tr>"
            for k, v in span["attributes"].items()
        )
        return (
            f"<div class='panel'><h2>{html.escape(span['name'])}</h2><table>{cells}</table></div>"
        )

    routing = next(
        s
        for s in spans
        if s["name"] == "process portfolio.networth.updated"
        and "Broadcaster" in s["attributes"].get("eventbus.handler", "")
    )
    body = (
        "<h1>Trace of one balance update</h1>"
        f"<div class='sub'>trace id <code>{root['trace_id']}</code> · {len(spans)} spans · "
        f"{total / 1000:,.0f} µs · OpenTelemetry SDK, in-memory exporter · plugins: "
        "otel, logging, networth, sse</div>"
        "<table><tr><th>span</th><th>kind</th><th>eventbus.handler</th><th>timeline</th>"
        f"<th class='num'>duration</th></tr>{''.join(rows)}</table>"
        f"<div class='grid'>{attributes(root)}{attributes(routing)}</div>"
    )
    return _page("eventbus trace", body)


# ------------------------------------------------------------------ metrics


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def metrics_page(text: str, url: str) -> str:
    """A dashboard of the parsed samples, next to the start of the raw exposition."""
    families = _families(text)

    def total(name: str, **labels: str) -> float:
        family = families.get(name)
        if family is None:
            return 0.0
        return sum(
            s.value
            for s in family.samples
            if s.name.endswith("_total") or s.name == name
            if labels.items() <= s.labels.items()
        )

    def card(label: str, metric: str, value: float, fmt: str = "{:,.0f}") -> str:
        return (
            f"<div class='card'><div class='v'>{fmt.format(value)}</div>"
            f"<div>{html.escape(label)}</div><div class='n'>{html.escape(metric)}</div></div>"
        )

    cards = "".join(
        [
            card("SSE clients", "eventbus_sse_clients", total("eventbus_sse_clients")),
            card("SSE dropped", "eventbus_sse_dropped_total", total("eventbus_sse_dropped")),
            card("Redis buffered", "eventbus_redis_buffered", total("eventbus_redis_buffered")),
            card(
                "Redis lag",
                "eventbus_redis_lag_seconds",
                total("eventbus_redis_lag_seconds") * 1000,
                "{:,.1f} ms",
            ),
        ]
    )
    published = [
        (s.labels["event"], s.value)
        for s in families["eventbus_events_published"].samples
        if s.name.endswith("_total")
    ]
    top = max(v for _, v in published)
    published_rows = "".join(
        f"<tr><td class='mono'>{html.escape(event)}</td>"
        f"<td style='width:40%'><span class='hbar' style='width:{100 * v / top:.1f}%'></span></td>"
        f"<td class='num'>{v:,.0f}</td></tr>"
        for event, v in sorted(published)
    )
    histogram: dict[str, dict[str, Any]] = {}
    for s in families["eventbus_handler_duration_seconds"].samples:
        entry = histogram.setdefault(s.labels["handler"], {"buckets": []})
        if s.name.endswith("_count"):
            entry["count"] = s.value
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
        elif s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
    failures = total("eventbus_handler_failures")

    def quantile(entry: dict[str, Any], q: float) -> str:
        for le, count in sorted(entry["buckets"]):
            if count >= q * entry["count"]:
                return "+Inf" if le == float("inf") else f"≤ {le * 1e3:g} ms"
        return "-"

    handler_rows = "".join(
        f"<tr><td class='mono'>{html.escape(_short(handler))}</td>"
        f"<td class='num'>{entry['count']:,.0f}</td>"
        f"<td class='num'>{1e6 * entry['sum'] / max(entry['count'], 1):,.0f} µs</td>"
        f"<td class='num'>{quantile(entry, 0.5)}</td><td class='num'>{quantile(entry, 0.99)}</td>"
        "</tr>"
        for handler, entry in sorted(histogram.items())
    )
    raw = "\n".join(line for line in text.splitlines() if line.startswith(("# TYPE", "eventbus_")))
    raw_lines = [
        line for line in raw.splitlines() if "_bucket{" not in line and "_created" not in line
    ]
    body = (
        f"<h1>eventbus demo: <code>GET {html.escape(url)}</code></h1>"
        f"<div class='sub'>scraped over HTTP at {time.strftime('%H:%M:%S')}, parsed with "
        f"prometheus-client's parser · {sum(len(f.samples) for f in families.values())} samples ·"
        f" handler failures: {failures:,.0f}</div>"
        f"<div class='grid'><div><div class='cards'>{cards}</div>"
        "<div class='panel'><h2>eventbus_events_published_total{event}</h2>"
        f"<table>{published_rows}</table></div>"
        "<div class='panel'><h2>eventbus_handler_duration_seconds{handler}</h2><table>"
        "<tr><th>handler</th><th class='num'>calls</th><th class='num'>mean</th>"
        f"<th class='num'>p50</th><th class='num'>p99</th></tr>{handler_rows}</table></div></div>"
        "<div class='panel'><h2>raw exposition (buckets and _created left out)</h2>"
        f"<pre>{html.escape(chr(10).join(raw_lines))}</pre></div></div>"
    )
    return _page("eventbus metrics", body)


# ------------------------------------------------------------------ the tests


@pytest.fixture(name="redis_server")
def _redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_binary("redis-server"), tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture(name="demo_process")
def _demo_process() -> Iterator[list[DemoProcess]]:
    started: list[DemoProcess] = []
    yield started
    for demo in started:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait(10)


class TestObservabilityScreenshots:
    """The docs' trace and metrics screenshots, from real spans and a real scrape."""

    def test_trace_of_a_balance_update(self, tmp_path: Path) -> None:
        """The page shows the balance update's seven spans as one tree."""
        exporter = CollectingExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        bus = EventBus()
        bus.register_plugin(OTelPlugin(provider), name="otel")
        for plugin in (LoggingPlugin(), NetWorthPlugin(), SSEPlugin()):
            bus.register_plugin(plugin)

        async def publish() -> None:
            async with bus:
                await bus.publish(_balance())

        asyncio.run(publish())  # the browser's sync API below runs outside any loop
        provider.shutdown()
        path = tmp_path / "observability-trace.png"
        facts = _screenshot(trace_page(exporter.spans), path, width=1180)
        assert facts["rows"] == 7
        assert "publish portfolio.networth.updated" in facts["text"]
        assert "Broadcaster.handle" in facts["text"]
        _publish(path, "observability-trace.png")

    def test_metrics_of_a_running_demo(
        self,
        demo_process: list[DemoProcess],
        redis_server: RedisServer,
        tmp_path: Path,
    ) -> None:
        """A scrape of a demo with a browser connected: SSE clients, publishes, handlers, Redis."""
        chromium = require_binary("chromium", "chromium-browser")
        from playwright.sync_api import expect, sync_playwright

        demo = start_demo(
            demo_process, "--interval", "0.2", "--users", "3", "--redis", redis_server.url
        )
        page_url = next(iter(demo.urls(3).values()))
        url = f"http://127.0.0.1:{demo.port}/metrics"
        text = ""

        def scraped() -> bool:
            nonlocal text
            text = httpx.get(url, timeout=10).text
            families = _families(text)
            clients = families["eventbus_sse_clients"].samples[0].value
            published = [
                s.value
                for s in families["eventbus_events_published"].samples
                if s.labels.get("event") == "portfolio.networth.updated"
            ]
            return clients == 1 and published and published[0] >= 40

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(page_url)  # an SSE client for the gauges
                expect(page.locator("#status")).to_have_text("live", timeout=15_000)
                wait_until(scraped, timeout=30, what="a demo with 40 net-worth updates, 1 client")
            finally:
                browser.close()
        demo.proc.send_signal(signal.SIGINT)
        assert demo.wait() == 0, demo.diagnostics()
        path = tmp_path / "observability-metrics.png"
        facts = _screenshot(metrics_page(text, "/metrics"), path, width=1280)
        for shown in ("portfolio.networth.updated", "NetWorthPlugin.on_balance", "SSE clients"):
            assert shown in facts["text"]
        assert re.search(r"eventbus_redis_lag_seconds \d", facts["text"])
        _publish(path, "observability-metrics.png")
