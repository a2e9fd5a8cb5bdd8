"""Redis down, restarting, unreachable at startup, a full buffer: what each handler sees.

Local handlers never wait for Redis. Fleet handlers wait for the stream: the
outbox buffers (bounded) and, once Redis is back, every worker delivers the
entries in stream order. A reader that first reaches Redis late still reads
from the moment its worker started.
"""

from __future__ import annotations

import logging

import pytest

from eventbus import EventBus
from eventbus_redis import RedisBridgePlugin
from tests.plugins.redis.conftest import MakeWorker, RedisServer
from tests.plugins.redis.helpers import STREAM, numbered, publish_all
from tests.support import wait_until_async


class TestOutage:
    """Stopping and restarting redis-server mid-stream loses nothing within the buffer."""

    async def test_local_at_once_fleet_after_the_outage_in_order(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """During the outage only local handlers run; afterwards every worker gets it all."""
        a = await workers(backoff_max=0.2)
        b = await workers(backoff_max=0.2)
        before, during, after = numbered(100), numbered(100, 100), numbered(100, 200)
        await publish_all(a, before)
        await a.delivered(100)
        await b.delivered(100)

        redis_server.stop()
        await publish_all(a, during)  # local dispatch does not wait for Redis
        assert a.local == before + during
        await wait_until_async(lambda: a.stats()["buffered"] == 100, what="outage buffered")
        assert a.fleet_events == before  # fleet handlers wait for the stream

        redis_server.start()
        await publish_all(a, after)
        for worker in (a, b):
            await worker.delivered(300)
            assert worker.fleet_events == before + during + after
        assert a.fleet == b.fleet  # same positions: the entry ids
        assert a.local == before + during + after
        assert b.local == []
        assert b.stats()["reconnects"] >= 1
        assert a.stats()["dropped"] == 0

    async def test_redis_down_at_startup(
        self, workers: MakeWorker, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Startup gives up waiting after ``bootstrap_timeout``; the events follow later."""
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            a = await workers(backoff_max=0.2, bootstrap_timeout=0.2)
        assert "not caught up" in caplog.text
        events = numbered(20)
        await publish_all(a, events)
        assert a.local == events
        redis_server.start()
        await a.delivered(20)
        assert a.fleet_events == events
        with redis_server.client() as client:
            assert client.xlen(STREAM) == 20


class TestLateFirstConnection:
    """A reader that first connects after an outage reads from its start, not the tail."""

    async def test_another_workers_flushed_buffer_is_delivered(
        self, workers: MakeWorker, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """B starts during an outage; A flushes its buffer before B ever connects; B gets it.

        B logs in as a user that does not exist yet, so it first connects
        exactly when the test creates that user, after A's flush.
        """
        a = await workers(backoff_max=0.1)
        redis_server.stop()
        during = numbered(50)
        await publish_all(a, during)
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            late = f"redis://late:pw@127.0.0.1:{redis_server.port}/0"
            b = await workers(url=late, backoff_max=0.1, bootstrap_timeout=0.1)
        assert "not caught up" in caplog.text
        redis_server.start()
        await wait_until_async(lambda: a.stats()["sent"] == 50, what="A's buffer flushed")
        assert b.fleet == []
        with redis_server.client() as admin:
            admin.execute_command("ACL", "SETUSER", "late", "on", ">pw", "~*", "+@all")
        await b.delivered(50)
        assert b.fleet_events == during
        await a.delivered(50)
        assert a.fleet == b.fleet

    async def test_entries_before_the_start_are_not_delivered(self, workers: MakeWorker) -> None:
        """Without projections, a worker reads from the moment it started."""
        a = await workers()
        await publish_all(a, numbered(10))
        await a.delivered(10)
        b = await workers()
        later = numbered(5, 10)
        await publish_all(a, later)
        await b.delivered(5)
        assert b.fleet_events == later


class TestOverflow:
    """A full buffer drops the oldest events, counts and logs them."""

    async def test_oldest_dropped_and_newest_flushed_in_order(
        self, workers: MakeWorker, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With ``buffer_size=50`` and 80 events during an outage, B gets the newest ones."""
        a = await workers(buffer_size=50, backoff_max=0.2)
        b = await workers(backoff_max=0.2)
        redis_server.stop()
        events = numbered(80)
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            for event in events:
                a.bus.publish_sync(event)
            stats = a.stats()
            assert stats["dropped"] + stats["buffered"] == 80
            assert stats["buffered"] <= 50 + 512  # the bound, plus one batch in flight
            redis_server.start()
            await wait_until_async(lambda: a.stats()["buffered"] == 0, what="buffer flushed")
        dropped = a.stats()["dropped"]
        assert dropped >= 30
        await b.delivered(80 - dropped)
        assert b.fleet_events == events[dropped:]
        assert a.local == events
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
        assert bus.sequencer is None
