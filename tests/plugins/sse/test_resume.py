"""Resume through Last-Event-ID: replay without gap or duplicate, and stream.reset."""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

import httpx
import pytest

from eventbus import EventBus
from eventbus_sse import Broadcaster, SignedTokenAuth, SSEPlugin
from tests.plugins.networth.helpers import Stream
from tests.plugins.networth.helpers import balance as account_balance
from tests.plugins.sse.conftest import Serve
from tests.plugins.sse.helpers import (
    SSEFrame,
    balance,
    broadcaster_of,
    clients_become,
    listen,
    take,
    worker,
)
from tests.support import wait_until_async


def event_ids(got: list[SSEFrame]) -> list[str]:
    """The codec event ids carried by frames, in order."""
    return [json.loads(f.data or "")["event_id"] for f in got]


def wire(got: list[SSEFrame]) -> list[tuple[str | None, str | None, str | None]]:
    """What each frame put on the wire: its id, event name and data."""
    return [(f.id, f.event, f.data) for f in got]


class TestResume:
    """Reconnecting with the last id seen continues exactly where the client left."""

    async def test_header_resume_while_events_keep_flowing(
        self, auth: SignedTokenAuth, serve: Serve, client: httpx.AsyncClient
    ) -> None:
        """Events published during the reconnect are replayed: nothing missing, nothing twice."""
        broadcaster = Broadcaster(buffer_size=4096, queue_size=4096)
        bus = EventBus(raise_errors=True)
        bus.register_plugin(SSEPlugin(broadcaster), name="sse")
        url = await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
        user, total = uuid4(), 400
        published: list[str] = []
        params = {"token": auth.issue(user)}

        async def publisher() -> None:
            for i in range(total):
                event = balance(user, str(i))
                published.append(str(event.event_id))
                bus.publish_sync(event)
                await asyncio.sleep(0)  # let the loop serve the clients between events

        received = []
        async with listen(client, url, broadcaster, params=params) as stream:
            task = asyncio.create_task(publisher())
            received += await take(stream, 50)
        # Disconnected: the publisher is still going. Reconnect from the last id.
        await clients_become(broadcaster, 0)
        headers = {"Last-Event-ID": received[-1].id or ""}
        async with listen(client, url, params=params, headers=headers) as stream:
            await wait_until_async(lambda: len(published) > 60, what="events during reconnect")
            await task
            received += await take(stream, total - 50)
        assert task.done()
        assert event_ids(received) == published
        assert len({f.id for f in received}) == total
        assert broadcaster.statistics()["frames_replayed"] > 0

    async def test_query_parameter_resume(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """lastEventId= works like the header, for clients that cannot set it."""
        user = uuid4()
        events = [balance(user, str(i)) for i in range(5)]
        for event in events:
            bus.publish_sync(event)
        # Ids count up from 1 per broadcaster: the second event's is <epoch>-2.
        params = {"token": auth.issue(user), "lastEventId": f"{broadcaster.epoch}-2"}
        async with listen(client, url, params=params) as stream:
            got = await take(stream, 3)
        assert event_ids(got) == [str(e.event_id) for e in events[2:]]


class TestReset:
    """An id the server cannot resume from gets a stream.reset, then live events."""

    @pytest.mark.parametrize("which", ["too-old", "foreign-epoch"])
    async def test_reset_then_live(
        self, which: str, auth: SignedTokenAuth, serve: Serve, client: httpx.AsyncClient
    ) -> None:
        """stream.reset names the reason, carries the newest id, and live frames follow."""
        broadcaster = Broadcaster(buffer_size=4)
        bus = EventBus(raise_errors=True)
        bus.register_plugin(SSEPlugin(broadcaster), name="sse")
        url = await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
        user = uuid4()
        for i in range(10):
            bus.publish_sync(balance(user, str(i)))
        last_id = {
            "too-old": f"{broadcaster.epoch}-1",  # evicted from the 4-frame buffer
            "foreign-epoch": "e0123456789a-9",  # a previous process's id
        }[which]
        newest = f"{broadcaster.epoch}-10"
        params = {"token": auth.issue(user)}
        async with listen(client, url, params=params, headers={"Last-Event-ID": last_id}) as stream:
            (reset,) = await take(stream, 1)
            live = balance(user, "99")
            bus.publish_sync(live)
            (frame,) = await take(stream, 1)
        assert reset.event == "stream.reset"
        assert json.loads(reset.data or "") == {
            "reason": "stale" if which == "too-old" else "epoch"
        }
        assert reset.id == newest
        assert event_ids([frame]) == [str(live.event_id)]
        # The reset's id is resumable: reconnecting with it replays what followed.
        async with listen(client, url, params=params, headers={"Last-Event-ID": newest}) as stream:
            (again,) = await take(stream, 1)
        assert again.event == "portfolio.balance.updated"
        assert event_ids([again]) == [str(live.event_id)]
        assert broadcaster.statistics()["resets_sent"] == 1

    async def test_reset_with_empty_buffer_clears_the_id(
        self,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """With nothing buffered, the reset's empty id tells the browser to forget the stale one."""
        headers = {"Last-Event-ID": "e0123456789a-3"}
        params = {"token": auth.issue(uuid4())}
        async with listen(client, url, params=params, headers=headers) as stream:
            (reset,) = await take(stream, 1)
        assert reset.event == "stream.reset"
        assert reset.id == ""


class TestAcrossWorkers:
    """Two workers fed one stream, each behind its own uvicorn: a client may use either."""

    async def test_same_frames_on_both_and_resume_on_the_other(
        self, auth: SignedTokenAuth, serve: Serve, client: httpx.AsyncClient
    ) -> None:
        """Both streams carry the same frames; the last id read on A resumes on B exactly."""
        stream = Stream()
        workers = [worker(stream), worker(stream)]
        broadcasters = [broadcaster_of(bus) for bus in workers]
        urls = [await serve(b.asgi_app(authenticate=auth), b) for b in broadcasters]
        user, accounts = uuid4(), (uuid4(), uuid4())
        for n in range(6):  # published on A and B in turn, in USD and EUR
            await workers[n % 2].publish(
                account_balance(user, accounts[n % 2], n // 2, n // 2 + 1, ("USD", "EUR")[n % 2])
            )
        params = {"token": auth.issue(user)}
        async with (
            listen(client, urls[0], broadcasters[0], params=params) as on_a,
            listen(client, urls[1], broadcasters[1], params=params) as on_b,
        ):
            for bus in workers:
                await stream.deliver(bus)
            got_a, got_b = await take(on_a, 12), await take(on_b, 12)
        assert wire(got_a) == wire(got_b)
        assert got_a[1].id == f"{Stream.position(0)}.1"
        assert json.loads(got_a[-1].data or "")["data"]["new_net_worth"] == "6.24"
        headers = {"Last-Event-ID": got_a[4].id or ""}  # read five frames on A, then moved
        async with listen(client, urls[1], params=params, headers=headers) as resumed:
            rest = await take(resumed, 7)
        assert wire(rest) == wire(got_a[5:])
        assert broadcasters[1].statistics()["resets_sent"] == 0
