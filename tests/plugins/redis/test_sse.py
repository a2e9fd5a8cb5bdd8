"""SSE across workers in one process: the stream's ids, the same frames everywhere.

Each worker is a bus with the ``sse``, ``networth`` and ``redis`` plugins and
its own uvicorn server; the workers share one redis-server. The SSE
broadcaster is a fleet handler, so every worker, the publishing one included,
streams an entry's frames under its stream id (``<id>.k`` for derived events)
when it reads the entry. The two-process versions are in tests/fleet/.
"""

from __future__ import annotations

import re
from uuid import uuid4

import httpx
import pytest

from eventbus import EventBus
from eventbus_networth import NetWorthPlugin
from eventbus_sse import Broadcaster, SignedTokenAuth, SSEPlugin
from tests.plugins.redis.conftest import MakeWorker, RedisServer
from tests.plugins.redis.helpers import STREAM, Worker, balance
from tests.plugins.sse.conftest import SECRET, Serve
from tests.plugins.sse.conftest import _client as _client  # the fixtures, for this module
from tests.plugins.sse.conftest import _serve as _serve
from tests.plugins.sse.helpers import broadcaster_of, listen, take
from tests.support import wait_until_async

STREAM_ID = re.compile(r"\d+-\d+")


def web_plugins(bus: EventBus) -> None:
    """The plugins of a web worker, registered before the bridge."""
    bus.register_plugin(SSEPlugin(Broadcaster(buffer_size=64, queue_size=1024)), name="sse")
    bus.register_plugin(NetWorthPlugin("USD", {}), name="networth")


@pytest.fixture(name="auth")
def _auth() -> SignedTokenAuth:
    return SignedTokenAuth(SECRET)


async def served(worker: Worker, serve: Serve, auth: SignedTokenAuth) -> str:
    """Serve ``worker``'s SSE app; its base URL."""
    broadcaster = broadcaster_of(worker.bus)
    return await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)


class TestAcrossWorkers:
    """The publisher's clients and another worker's clients get identical frames."""

    async def test_identical_frames_and_stream_ids_on_every_worker(
        self,
        workers: MakeWorker,
        serve: Serve,
        client: httpx.AsyncClient,
        auth: SignedTokenAuth,
        redis_server: RedisServer,
    ) -> None:
        """Balance then derived net worth: same ids (``<id>``, ``<id>.1``) and bytes on A and B."""
        a, b = await workers(setup=web_plugins), await workers(setup=web_plugins)
        url_a, url_b = await served(a, serve, auth), await served(b, serve, auth)
        user = uuid4()
        params = {"token": auth.issue(user)}
        async with (
            listen(client, url_a, broadcaster_of(a.bus), params=params) as on_a,
            listen(client, url_b, broadcaster_of(b.bus), params=params) as on_b,
        ):
            await a.bus.publish(balance(user, "10"))
            await b.bus.publish(balance(user, "30"))
            seen_a, seen_b = await take(on_a, 4), await take(on_b, 4)
        assert [(f.id, f.event, f.data) for f in seen_a] == [
            (f.id, f.event, f.data) for f in seen_b
        ]
        with redis_server.client() as admin:
            ids = [entry_id.decode() for entry_id, _ in admin.xrange(STREAM)]
        assert [f.id for f in seen_a] == [ids[0], f"{ids[0]}.1", ids[1], f"{ids[1]}.1"]
        assert [f.event for f in seen_a] == [
            "portfolio.balance.updated",
            "portfolio.networth.updated",
        ] * 2

    async def test_resume_on_another_worker(
        self, workers: MakeWorker, serve: Serve, client: httpx.AsyncClient, auth: SignedTokenAuth
    ) -> None:
        """A client of A reconnects to B with its last id: the rest, no reset, no repeat."""
        a, b = await workers(setup=web_plugins), await workers(setup=web_plugins)
        url_a, url_b = await served(a, serve, auth), await served(b, serve, auth)
        user = uuid4()
        params = {"token": auth.issue(user)}
        async with listen(client, url_a, broadcaster_of(a.bus), params=params) as stream:
            await a.bus.publish(balance(user, "10"))
            seen = await take(stream, 2)
        await a.bus.publish(balance(user, "20", "10"))
        await b.delivered(4, what="both changes and their net worth on B")
        headers = {"Last-Event-ID": str(seen[-1].id)}
        async with listen(client, url_b, params=params, headers=headers) as stream:
            resumed = await take(stream, 2)
        assert [f.event for f in resumed] == [
            "portfolio.balance.updated",
            "portfolio.networth.updated",
        ]
        assert resumed[0].id is not None
        assert STREAM_ID.fullmatch(resumed[0].id)
        assert resumed[1].id == f"{resumed[0].id}.1"
        assert broadcaster_of(b.bus).statistics()["resets_sent"] == 0


class TestOutage:
    """During an outage SSE clients wait; afterwards they get the frames under stream ids."""

    async def test_frames_follow_the_outage_under_stream_ids(
        self,
        workers: MakeWorker,
        serve: Serve,
        client: httpx.AsyncClient,
        auth: SignedTokenAuth,
        redis_server: RedisServer,
    ) -> None:
        """The publisher's local handlers ran at once; its SSE frames come once Redis is back."""
        a = await workers(setup=web_plugins, backoff_max=0.1)
        url = await served(a, serve, auth)
        user = uuid4()
        params = {"token": auth.issue(user)}
        async with listen(client, url, broadcaster_of(a.bus), params=params) as stream:
            redis_server.stop()
            event = balance(user, "10")
            await a.bus.publish(event)
            assert a.local == [event]
            await wait_until_async(lambda: a.stats()["buffered"] == 1, what="buffered")
            assert broadcaster_of(a.bus).statistics()["frames_routed"] == 0
            redis_server.start()
            frames = await take(stream, 2)
        assert [f.event for f in frames] == [
            "portfolio.balance.updated",
            "portfolio.networth.updated",
        ]
        assert frames[0].id is not None
        assert STREAM_ID.fullmatch(frames[0].id)
        assert frames[1].id == f"{frames[0].id}.1"
