"""A trace that crosses two worker processes over a real redis-server.

Worker A is this process: its bus traces to the in-memory exporter and
bridges to Redis. Worker B is a subprocess (`tests.plugins.otel.worker`),
configured as deployed workers are (``EVENTBUS_OTEL=1``,
``EVENTBUS_REDIS_URL``, ``load_entry_points()``), that reports its spans as
JSON. One balance update published on A is one trace on both workers: the
``receive`` span on each worker is a *child* of A's ``publish`` span (the
documented choice: child, not link), and the fleet handlers, the derived
net-worth publish and its SSE routing hang below it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventbus import EventBus
from eventbus_logging import LoggingPlugin
from eventbus_networth import NetWorthPlugin
from eventbus_otel import OTelPlugin
from eventbus_redis import RedisBridgePlugin
from eventbus_sse import SSEPlugin
from tests.plugins.otel.spans import as_dict, children, roots, tree
from tests.plugins.otel.test_tracing import _balance
from tests.support import RedisServer, require_binary, wait_until_async

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.redis


@pytest.fixture(name="redis_server")
def _redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_binary("redis-server"), tmp_path)
    server.start()
    yield server
    server.stop()


def _worker_a(provider: TracerProvider, url: str) -> EventBus:
    bus = EventBus(raise_errors=True)
    bus.register_plugin(OTelPlugin(provider), name="otel")
    bus.register_plugin(LoggingPlugin(), name="logging")
    bus.register_plugin(NetWorthPlugin(), name="networth")
    bus.register_plugin(SSEPlugin(), name="sse")
    bus.register_plugin(RedisBridgePlugin(url), name="redis")
    return bus


class TestTraceAcrossWorkers:
    """One balance update published on worker A, traced on A and on worker B."""

    async def test_receive_spans_are_children_of_the_remote_publish(
        self,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        redis_server: RedisServer,
    ) -> None:
        """B's receive span: same trace as A's publish, its child (remote parent), no link."""
        env = {**os.environ, "EVENTBUS_OTEL": "1", "EVENTBUS_REDIS_URL": redis_server.url}
        env.pop("EVENTBUS_DISABLE_PLUGIN_AUTOLOAD", None)
        env.pop("EVENTBUS_BLOCK_PLUGINS", None)
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.plugins.otel.worker",
            "1",
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=2**22,
        )
        assert worker.stdout is not None
        assert worker.stdin is not None
        try:
            async with asyncio.timeout(30):
                assert (await worker.stdout.readline()).strip() == b"ready"
            a = _worker_a(provider, redis_server.url)
            event = _balance()
            async with a:
                await a.publish(event)
                async with asyncio.timeout(30):
                    report: dict[str, Any] = json.loads(await worker.stdout.readline())

                def received_on_a() -> bool:
                    return any(s.name.startswith("receive") for s in exporter.get_finished_spans())

                await wait_until_async(received_on_a, what="A's own receive span")
        finally:
            worker.stdin.close()
            async with asyncio.timeout(30):
                await worker.wait()
        on_a = [as_dict(s) for s in exporter.get_finished_spans()]
        on_b: list[dict[str, Any]] = report["spans"]

        # A: the publish is the root; its own entry's receive is its child too.
        [publish] = roots(on_a)
        assert publish["name"] == "publish portfolio.balance.updated"
        assert publish["kind"] == "PRODUCER"
        assert publish["attributes"]["messaging.message.id"] == str(event.event_id)
        assert tree(on_a) == [
            "publish portfolio.balance.updated",
            "  process portfolio.balance.updated [LoggingPlugin]",
            "  receive portfolio.balance.updated",
            "    process portfolio.balance.updated [Broadcaster]",
            "    process portfolio.balance.updated [NetWorthPlugin]",
            "      publish portfolio.networth.updated",
            "        process portfolio.networth.updated [LoggingPlugin]",
            "        process portfolio.networth.updated [Broadcaster]",
        ]
        [receive_a] = [s for s in on_a if s["name"].startswith("receive")]
        assert receive_a["attributes"]["eventbus.local"] is True
        assert receive_a["parent_remote"]  # from the entry's traceparent, not the context

        # B: one trace with A's, under A's publish span: a child, not a link.
        assert {s["trace_id"] for s in on_b} == {publish["trace_id"]}
        [receive_b] = roots(on_b)
        assert receive_b["name"] == "receive portfolio.balance.updated"
        assert receive_b["kind"] == "CONSUMER"
        assert receive_b["parent_id"] == publish["span_id"]
        assert receive_b["parent_remote"]
        assert receive_b["links"] == []
        assert receive_b["attributes"]["eventbus.local"] is False
        position = receive_a["attributes"]["eventbus.position"]
        assert receive_b["attributes"]["eventbus.position"] == position
        assert receive_b["attributes"]["messaging.message.id"] == str(event.event_id)
        # Fleet handlers only on B: the local logging handler ran on A alone.
        assert tree(on_b) == [
            "receive portfolio.balance.updated",
            "  process portfolio.balance.updated [Broadcaster]",
            "  process portfolio.balance.updated [NetWorthPlugin]",
            "    publish portfolio.networth.updated",
            "      process portfolio.networth.updated [Broadcaster]",
        ]
        processes = [s for s in on_b if s["name"].startswith("process")]
        assert all(s["kind"] == "CONSUMER" for s in processes)
        [derived] = [s for s in on_b if s["name"] == "publish portfolio.networth.updated"]
        [aggregator] = children(on_b, receive_b)[1:]
        assert derived["parent_id"] == aggregator["span_id"]
        assert all(s["status"] == "UNSET" for s in on_a + on_b)
