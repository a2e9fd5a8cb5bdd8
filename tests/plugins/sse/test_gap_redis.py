"""The whole path on a real redis-server: entries trimmed past a slow worker reset its SSE clients.

Worker A publishes into a stream capped at ``maxlen=100``; worker B's reader
is stuck in a fleet handler meanwhile, so most entries are trimmed before B
reads them. B's bridge finds the gap and delivers an `OrderGap`; B's SSE
clients, on a real uvicorn server, get ``stream.reset`` there, and a resume
from before the gap resets too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from uuid import uuid4

import httpx
import pytest

from eventbus import DomainEvent, EventBus
from eventbus_sse import Broadcaster, SignedTokenAuth, SSEPlugin
from tests.plugins.redis.conftest import MakeWorker
from tests.plugins.redis.conftest import _redis_binary as _redis_binary  # the fixtures
from tests.plugins.redis.conftest import _redis_server as _redis_server
from tests.plugins.redis.conftest import _workers as _workers
from tests.plugins.redis.helpers import holdings, publish_all
from tests.plugins.sse.conftest import Serve
from tests.plugins.sse.helpers import SSEFrame, broadcaster_of, frames, listen, take


def slow_web_worker(gate: asyncio.Event) -> Callable[[EventBus], None]:
    """A ``setup``: the SSE plugin, then a fleet handler that waits for ``gate``."""

    def setup(bus: EventBus) -> None:
        bus.register_plugin(SSEPlugin(Broadcaster(queue_size=4096)), name="sse")

        async def wait(event: DomainEvent) -> None:
            await gate.wait()

        bus.subscribe(DomainEvent, wait, fleet=True)

    return setup


def event_id(frame: SSEFrame) -> str | None:
    """The codec event id a frame carries (``None`` for a reset)."""
    data = json.loads(frame.data or "")
    return None if frame.event == "stream.reset" else str(data["event_id"])


@pytest.mark.redis
class TestTrimmedStream:
    """The issue's case, seen by a browser of the slow worker."""

    async def test_clients_of_the_slow_worker_get_a_reset_and_no_replay_across_it(
        self,
        workers: MakeWorker,
        auth: SignedTokenAuth,
        serve: Serve,
        client: httpx.AsyncClient,
    ) -> None:
        """First frame, then ``stream.reset`` (gap), then the tail; a pre-gap resume resets."""
        gate = asyncio.Event()
        a = await workers(maxlen=100)
        b = await workers(maxlen=100, setup=slow_web_worker(gate))
        broadcaster = broadcaster_of(b.bus)
        url = await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
        user = uuid4()
        token = auth.issue(user)
        events = [holdings(i, user) for i in range(2000)]
        async with listen(client, url, broadcaster, params={"token": token}) as stream:
            for start in range(0, len(events), 50):
                await publish_all(a, events[start : start + 50])
                await a.delivered(start + 50)
            (first,) = await take(stream, 1)  # B routed it, then stalled in the gate
            gate.set()
            seen = [first]
            async with asyncio.timeout(30):
                while event_id(seen[-1]) != str(events[-1].event_id):
                    seen += await take(stream, 1)
        names = [f.event for f in seen]
        assert names.count("stream.reset") == 1
        at = names.index("stream.reset")
        assert json.loads(seen[at].data or "") == {"reason": "gap"}
        tail = [event_id(f) for f in seen[at + 1 :]]
        assert tail == [str(e.event_id) for e in events[len(events) - len(tail) :]]
        assert len(seen) - 1 < len(events) // 2  # most of them were lost: hence the reset
        assert b.stats()["trimmed"] > 0
        assert broadcaster.statistics()["order_gaps"] == 1
        headers = {"Last-Event-ID": seen[0].id or ""}
        async with client.stream("GET", url, params={"token": token}, headers=headers) as again:
            (reset,) = await take(frames(again), 1)
        assert reset.event == "stream.reset"
        assert json.loads(reset.data or "") == {"reason": "gap"}
