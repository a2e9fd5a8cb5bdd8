"""Redis down, Redis restarting, buffer overflow: local dispatch never stops."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest

from eventbus import EventBus
from eventbus.portfolio import AccountHoldingsUpdated
from eventbus_redis import RedisBridgePlugin
from tests.plugins.redis.conftest import Bridged, RedisServer
from tests.plugins.redis.test_bridge import arrived, collect
from tests.plugins.sse.helpers import holdings
from tests.support import wait_until_async


def numbered(count: int, start: int = 0) -> list[AccountHoldingsUpdated]:
    """Holdings updates whose ``holdings_count`` numbers them."""
    return [holdings(uuid4(), i) for i in range(start, start + count)]


class TestRestart:
    """Stopping and restarting redis-server mid-stream loses nothing within the buffer."""

    async def test_events_published_during_the_outage_arrive_after_restart(
        self, bridged: Bridged, redis_server: RedisServer
    ) -> None:
        """Local handlers run throughout; B gets every event, in order, exactly once."""
        a, bridge_a = await bridged(backoff_max=0.2)
        b, bridge_b = await bridged(backoff_max=0.2)
        seen_a, seen_b = collect(a), collect(b)
        before, during, after = numbered(100), numbered(100, 100), numbered(100, 200)
        for event in before:
            await a.publish(event)
        await arrived(seen_b, 100)

        redis_server.stop()
        for event in during:
            await a.publish(event)  # local dispatch does not wait for Redis
        assert seen_a == before + during
        await wait_until_async(
            lambda: bridge_a.statistics()["buffered"] == 100, what="outage events buffered"
        )

        redis_server.start()
        for event in after:
            await a.publish(event)
        await arrived(seen_b, 300)
        assert seen_b == before + during + after
        assert seen_a == before + during + after
        assert bridge_b.statistics()["reconnects"] >= 1
        assert bridge_a.statistics()["dropped"] == 0

    async def test_redis_down_at_startup(self, bridged: Bridged, redis_server: RedisServer) -> None:
        """A bus starts without Redis, buffers, and flushes once Redis is up."""
        redis_server.stop()
        a, bridge_a = await bridged(backoff_max=0.2)
        events = numbered(20)
        seen_a = collect(a)
        for event in events:
            a.publish_sync(event)
        assert seen_a == events
        redis_server.start()
        await wait_until_async(lambda: bridge_a.statistics()["sent"] == 20, what="flushed")
        with redis_server.client() as client:
            assert client.xlen("eventbus:events") == 20


class TestOverflow:
    """A full buffer drops the oldest events, counts and logs them."""

    async def test_oldest_dropped_and_newest_flushed_in_order(
        self, bridged: Bridged, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With ``buffer_size=50`` and 80 events during an outage, B gets the newest 50."""
        a, bridge_a = await bridged(buffer_size=50, backoff_max=0.2)
        b, _ = await bridged(backoff_max=0.2)
        seen_b = collect(b)
        redis_server.stop()
        events = numbered(80)
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            for event in events:
                a.publish_sync(event)
            stats = bridge_a.statistics()
            assert stats["dropped"] + stats["buffered"] == 80
            assert stats["buffered"] <= 50 + 512  # the bound, plus one batch in flight
            redis_server.start()
            await wait_until_async(
                lambda: bridge_a.statistics()["buffered"] == 0, what="buffer flushed"
            )
        dropped = bridge_a.statistics()["dropped"]
        assert dropped >= 30
        await arrived(seen_b, 80 - dropped)
        assert seen_b == events[dropped:]
        assert "buffer full" in caplog.text
        assert f"{dropped} event(s) were dropped" in caplog.text


class TestShutdownWithoutRedis:
    """Closing while Redis is down gives up after ``drain_timeout``."""

    async def test_close_gives_up_and_logs(
        self, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """aclose() returns, and the unsent count is logged."""
        bus = EventBus()
        plugin = RedisBridgePlugin(redis_server.url, drain_timeout=0.2, backoff_max=0.05)
        bus.register_plugin(plugin, name="redis")
        await bus.start()
        redis_server.stop()
        for event in numbered(5):
            bus.publish_sync(event)
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            await bus.aclose()
        assert "5 event(s) not sent" in caplog.text
        assert plugin.statistics()["buffered"] == 5
