"""Memory, measured with tracemalloc: per subscription, per SSE client, and leaks.

These are not timings, so they run (and assert their bounds) under
``--benchmark-disable`` too. The bounds are generous regression guards; the
measured figures are printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import pytest

from benchmarks.ratios import RatioBook
from eventbus import EventBus
from eventbus.cli._bench import noop_handlers
from eventbus.portfolio import AccountBalanceUpdated
from tests.support import wait_until_async

#: Publishes in the leak check.
PUBLISHES: Final = 1_000_000
#: Most the traced memory may grow over `PUBLISHES` publishes (bytes): ~0.06 byte each.
LEAK_BOUND: Final = 64 * 1024


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Trace allocations; yields a function returning the bytes allocated since entry."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]

        def grown() -> int:
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - base

        yield grown
    finally:
        tracemalloc.stop()


class TestSubscriptions:
    """What a subscription costs, including its share of the bus's tuples and plans."""

    def test_bytes_per_subscription(self, ratios: RatioBook, event: AccountBalanceUpdated) -> None:
        """2000 subscriptions of one handler, then one publish (so the plan exists)."""
        count = 2000
        bus = EventBus()
        (handler,) = noop_handlers(1)
        bus.publish_sync(event)  # the empty plan for the type exists before we start
        with traced() as grown:
            subs = [bus.subscribe(AccountBalanceUpdated, handler) for _ in range(count)]
            bus.publish_sync(event)  # compile the plan: part of what a subscription costs
            per_sub = (grown() - sys.getsizeof(subs)) / count  # our list is not the bus's cost
        ratios.notes.append(f"{per_sub:.0f} bytes per subscription (tuple and plan share included)")
        assert 0 < per_sub < 1024


class TestNoGrowth:
    """A bounded leak check: 1M publishes leave traced memory where it was."""

    @pytest.mark.parametrize("mode", ["fast path", "tracked path"])
    def test_publish_sync(self, ratios: RatioBook, event: AccountBalanceUpdated, mode: str) -> None:
        """1M ``publish_sync`` to 3 handlers; tracked = after ``current_event()`` switched tracking on."""
        bus = EventBus()
        for handler in noop_handlers(3):
            bus.subscribe(AccountBalanceUpdated, handler)
        if mode == "tracked path":
            bus.current_event()
        publish = bus.publish_sync
        publish(event)  # warm: plan compiled, caches filled
        with traced() as grown:
            for _ in itertools.repeat(None, PUBLISHES):
                publish(event)
            growth = grown()
        ratios.notes.append(
            f"publish_sync ({mode}): {growth} bytes growth over {PUBLISHES:,} publishes"
        )
        assert growth < LEAK_BOUND

    def test_await_publish(self, ratios: RatioBook, event: AccountBalanceUpdated) -> None:
        """1M ``await publish`` to 2 async and 1 sync handler."""
        bus = EventBus()
        for handler in [*noop_handlers(2, is_async=True), *noop_handlers(1)]:
            bus.subscribe(AccountBalanceUpdated, handler)

        async def publish_many(n: int) -> None:
            for _ in itertools.repeat(None, n):
                await bus.publish(event)

        with asyncio.Runner() as runner:
            runner.run(publish_many(1))
            with traced() as grown:
                runner.run(publish_many(PUBLISHES))
                growth = grown()
        ratios.notes.append(f"await publish: {growth} bytes growth over {PUBLISHES:,} publishes")
        assert growth < LEAK_BOUND


def _http_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


class TestSSEClients:
    """What one connected SSE client costs the broadcaster (skipped until the plugin exists)."""

    async def test_bytes_per_connected_client(self, ratios: RatioBook) -> None:
        """200 clients connected to the broadcaster's ASGI app, in-process."""
        sse = pytest.importorskip("eventbus_sse")
        if not hasattr(sse, "Broadcaster") or not hasattr(sse, "SSEPlugin"):
            pytest.skip("eventbus_sse.Broadcaster is not built yet")
        count = 200
        user = uuid.UUID(int=1)

        async def authenticate(scope: object) -> uuid.UUID:
            return user

        bus = EventBus()
        plugin = sse.SSEPlugin(sse.Broadcaster(max_clients_per_user=None))
        bus.register_plugin(plugin, name="sse")
        async with bus:
            broadcaster = plugin.broadcaster
            app = broadcaster.asgi_app(authenticate=authenticate)
            gone = asyncio.Event()

            async def receive() -> dict[str, Any]:
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                return (
                    None  # frames are dropped: the client's own buffers are not the server's cost
                )

            def connected() -> bool:
                return int(broadcaster.statistics()["clients"]) >= count

            with traced() as grown:
                tasks = [
                    asyncio.ensure_future(app(_http_scope(), receive, send)) for _ in range(count)
                ]
                await wait_until_async(connected, what=f"{count} SSE clients connected")
                per_client = grown() / count
            gone.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=10)
        ratios.notes.append(f"{per_client:.0f} bytes per connected SSE client (broadcaster side)")
        assert 0 < per_client < 64 * 1024
