"""Two real processes on one redis-server: 10,000 events, in order, exactly once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

from eventbus.portfolio import AccountHoldingsUpdated
from tests.plugins.redis.conftest import Bridged, RedisServer
from tests.plugins.redis.test_bridge import collect
from tests.plugins.sse.helpers import holdings
from tests.support import wait_until_async

ROOT = Path(__file__).resolve().parents[3]
COUNT = 10_000


class TestTwoProcesses:
    """Process A (this one) publishes; process B (a subprocess) receives."""

    async def test_ten_thousand_events_in_order_exactly_once(
        self, bridged: Bridged, redis_server: RedisServer
    ) -> None:
        """B's handler gets all 10,000 in order; A's handler sees each of its own once."""
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.plugins.redis.worker",
            redis_server.url,
            str(COUNT),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=2**24,  # the report is one line of 10,000 ids
        )
        assert worker.stdout is not None
        assert worker.stdin is not None
        try:
            async with asyncio.timeout(30):
                assert (await worker.stdout.readline()).strip() == b"ready"
            a, bridge_a = await bridged()
            seen_a = collect(a)
            events: list[AccountHoldingsUpdated] = [holdings(uuid4(), i) for i in range(COUNT)]
            for event in events:
                await a.publish(event)
            async with asyncio.timeout(60):
                report = json.loads(await worker.stdout.readline())
            assert report["ids"] == [str(e.event_id) for e in events]
            assert report["stats"]["received"] == COUNT
            await wait_until_async(
                lambda: bridge_a.statistics()["echoes"] == COUNT, what="A read its own entries"
            )
            assert seen_a == events
            assert bridge_a.statistics()["received"] == 0
        finally:
            worker.stdin.close()
            async with asyncio.timeout(30):
                await worker.wait()
