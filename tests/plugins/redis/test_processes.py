"""Two real processes on one redis-server: 10,000 events, one order, exactly once.

The fleet's two-process tests with SSE and uvicorn are in tests/fleet/; this
one checks the bridge alone at volume.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from tests.plugins.redis.conftest import MakeWorker, RedisServer
from tests.plugins.redis.helpers import numbered

ROOT = Path(__file__).resolve().parents[3]
COUNT = 10_000


class TestTwoProcesses:
    """Process A (this one) publishes; process B (a subprocess) runs a fleet handler."""

    async def test_ten_thousand_events_in_one_order_exactly_once(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """B's and A's fleet handlers get all 10,000 in the same order; locals run on A only."""
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.plugins.redis.worker",
            redis_server.url,
            str(COUNT),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=2**24,  # the report is one line of 20,000 strings
        )
        assert worker.stdout is not None
        assert worker.stdin is not None
        try:
            async with asyncio.timeout(30):
                assert (await worker.stdout.readline()).strip() == b"ready"
            a = await workers()
            events = numbered(COUNT)
            for event in events:
                await a.bus.publish(event)
            async with asyncio.timeout(60):
                report = json.loads(await worker.stdout.readline())
            await a.delivered(COUNT)
            assert report["ids"] == [str(e.event_id) for e in events]
            assert report["positions"] == a.positions
            assert report["local"] == 0
            assert report["stats"]["received"] == COUNT
            assert report["stats"]["own"] == 0
            assert a.fleet_events == events
            assert a.local == events
            assert a.stats()["own"] == COUNT
        finally:
            worker.stdin.close()
            async with asyncio.timeout(30):
                await worker.wait()
