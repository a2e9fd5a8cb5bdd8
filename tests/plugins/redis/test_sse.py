"""SSE across workers: a client on worker B sees what worker A publishes.

Each worker is a bus with the ``sse``, ``networth`` and ``redis`` plugins, and
its own uvicorn server; the workers share one redis-server. The SSE ids of
bridged events are the Redis stream ids (derived events get ``<id>.1``, ...),
the same on every worker, the publishing one included, so a client can resume
on any of them.
"""

from __future__ import annotations

import re
from uuid import uuid4

import httpx
import pytest

from eventbus import EventBus
from eventbus_networth import NetWorthPlugin
from eventbus_redis import RedisBridgePlugin
from eventbus_sse import Broadcaster, SignedTokenAuth, SSEPlugin
from tests.plugins.redis.conftest import Bridged
from tests.plugins.sse.conftest import SECRET, Serve
from tests.plugins.sse.helpers import balance, holdings, listen, take
from tests.support import RedisServer, wait_until_async

STREAM_ID = re.compile(r"\d+-\d+")


class Worker:
    """One worker: bus, bridge, broadcaster and the URL of its event stream."""

    def __init__(self, bus: EventBus, bridge: RedisBridgePlugin, sse: SSEPlugin, url: str) -> None:
        self.bus, self.bridge, self.sse, self.url = bus, bridge, sse, url

    @property
    def broadcaster(self) -> Broadcaster:
        """The worker's SSE broadcaster."""
        return self.sse.broadcaster


@pytest.fixture(name="auth")
def _auth() -> SignedTokenAuth:
    return SignedTokenAuth(SECRET)


@pytest.fixture(name="workers")
async def _workers(
    bridged: Bridged, serve: Serve, auth: SignedTokenAuth, monkeypatch: pytest.MonkeyPatch
) -> list[Worker]:
    """Three started workers on the same stream."""
    monkeypatch.delenv("EVENTBUS_NETWORTH_RATES", raising=False)
    monkeypatch.delenv("EVENTBUS_NETWORTH_BASE", raising=False)
    workers = []
    for _ in range(3):
        sse = SSEPlugin(Broadcaster(buffer_size=64, queue_size=1024))
        bus, bridge = await bridged(plugins=(("sse", sse), ("networth", NetWorthPlugin())))
        url = await serve(sse.broadcaster.asgi_app(authenticate=auth), sse.broadcaster)
        workers.append(Worker(bus, bridge, sse, url))
    return workers


class TestAcrossWorkers:
    """Events published on A stream to clients of B, with stream ids as SSE ids."""

    async def test_balance_then_networth_on_another_worker(
        self, workers: list[Worker], client: httpx.AsyncClient, auth: SignedTokenAuth
    ) -> None:
        """A publishes a balance update; B's client gets it, then B's derived net worth."""
        a, b, _ = workers
        user = uuid4()
        params = {"token": auth.issue(user)}
        async with listen(client, b.url, b.broadcaster, params=params) as stream:
            await a.bus.publish(balance(user, "100"))
            first, second = await take(stream, 2)
        assert (first.event, second.event) == (
            "portfolio.balance.updated",
            "portfolio.networth.updated",
        )
        assert first.id is not None
        assert STREAM_ID.fullmatch(first.id)
        assert second.id == f"{first.id}.1"

    async def test_one_networth_per_change_on_every_worker(
        self, workers: list[Worker], client: httpx.AsyncClient, auth: SignedTokenAuth
    ) -> None:
        """Net worth runs on both workers, yet each client gets exactly one update per change."""
        a, b, _ = workers
        user = uuid4()
        params = {"token": auth.issue(user)}
        async with (
            listen(client, a.url, a.broadcaster, params=params) as on_a,
            listen(client, b.url, b.broadcaster, params=params) as on_b,
        ):
            previous = "0"
            for value in ("10", "25", "7"):
                await a.bus.publish(balance(user, value, previous))
                previous = value
            await a.bus.publish(holdings(user))  # a marker: nothing may come before it
            for stream in (on_a, on_b):
                names = [f.event for f in await take(stream, 7)]
                assert names == [
                    *["portfolio.balance.updated", "portfolio.networth.updated"] * 3,
                    "portfolio.holdings.updated",
                ]

    async def test_resume_on_a_different_worker(
        self, workers: list[Worker], client: httpx.AsyncClient, auth: SignedTokenAuth
    ) -> None:
        """A client that read from B resumes on C with ``Last-Event-ID`` and misses nothing."""
        a, b, c = workers
        await resume_elsewhere(client, auth, publisher=a, first=b, then=c)


async def resume_elsewhere(
    client: httpx.AsyncClient,
    auth: SignedTokenAuth,
    *,
    publisher: Worker,
    first: Worker,
    then: Worker,
) -> None:
    """Read one change on ``first``; resume on ``then`` after a second change: no gap, no reset."""
    user = uuid4()
    params = {"token": auth.issue(user)}
    async with listen(client, first.url, first.broadcaster, params=params) as stream:
        await publisher.bus.publish(balance(user, "10"))
        seen = await take(stream, 2)
    await publisher.bus.publish(balance(user, "20", "10"))
    await wait_until_async(
        lambda: then.bridge.statistics()["received"] == 2, what="both changes reached the worker"
    )
    headers = {"Last-Event-ID": str(seen[-1].id)}
    async with listen(client, then.url, params=params, headers=headers) as stream:
        resumed = await take(stream, 2)
    assert [f.event for f in resumed] == [
        "portfolio.balance.updated",
        "portfolio.networth.updated",
    ]
    assert resumed[0].id is not None
    assert STREAM_ID.fullmatch(resumed[0].id)
    assert resumed[0].id > str(seen[0].id)
    assert then.broadcaster.statistics()["resets_sent"] == 0


class TestThePublishingWorker:
    """A's own clients get A's events under the stream ids too, once A reads them back."""

    async def test_same_ids_on_the_publisher_as_elsewhere(
        self, workers: list[Worker], client: httpx.AsyncClient, auth: SignedTokenAuth
    ) -> None:
        """Balance and derived net worth carry identical ids on A (publisher) and B."""
        a, b, _ = workers
        user = uuid4()
        params = {"token": auth.issue(user)}
        async with (
            listen(client, a.url, a.broadcaster, params=params) as on_a,
            listen(client, b.url, b.broadcaster, params=params) as on_b,
        ):
            await a.bus.publish(balance(user, "10"))
            await a.bus.publish(balance(user, "30", "10"))
            seen_a, seen_b = await take(on_a, 4), await take(on_b, 4)
        assert [(f.event, f.id) for f in seen_a] == [(f.event, f.id) for f in seen_b]
        first = seen_a[0].id
        assert first is not None
        assert STREAM_ID.fullmatch(first)
        assert seen_a[1].id == f"{first}.1"

    async def test_a_publisher_client_resumes_on_another_worker(
        self, workers: list[Worker], client: httpx.AsyncClient, auth: SignedTokenAuth
    ) -> None:
        """A client of A reconnects to B with its last id: the rest, no reset, no repeat."""
        a, b, _ = workers
        await resume_elsewhere(client, auth, publisher=a, first=a, then=b)

    async def test_redis_down_frames_go_out_with_local_ids_after_the_timeout(
        self,
        bridged: Bridged,
        serve: Serve,
        redis_server: RedisServer,
        client: httpx.AsyncClient,
        auth: SignedTokenAuth,
    ) -> None:
        """With no stream id coming back, the held frames are streamed anyway, in order."""
        sse = SSEPlugin(Broadcaster())
        bus, _ = await bridged(
            plugins=(("sse", sse), ("networth", NetWorthPlugin())), sse_hold_timeout=0.2
        )
        url = await serve(sse.broadcaster.asgi_app(authenticate=auth), sse.broadcaster)
        user = uuid4()
        params = {"token": auth.issue(user)}
        async with listen(client, url, sse.broadcaster, params=params) as stream:
            redis_server.stop()
            await bus.publish(balance(user, "10"))
            frames = await take(stream, 2)
        assert [f.event for f in frames] == [
            "portfolio.balance.updated",
            "portfolio.networth.updated",
        ]
        assert all(f.id is not None and f.id.startswith(sse.broadcaster.epoch) for f in frames)
