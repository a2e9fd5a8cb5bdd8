"""An `OrderGap` in the fleet's order: every client is reset, and no resume crosses the gap.

The gap reaches the broadcaster as the Redis bridge delivers it: through
``bus.deliver`` at the position just below the entry that showed it (here the
test plays the stream by hand). Clients are real HTTP clients of a real
uvicorn server.
"""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

import httpx
import pytest

from eventbus import DomainEvent, EventBus
from eventbus.events import OrderGap
from eventbus.portfolio import PortfolioNetWorthRecalculated
from eventbus_sse import Broadcaster, SignedTokenAuth, Subscriber
from tests.plugins.networth.helpers import STREAM_MS, Stream
from tests.plugins.sse.conftest import Serve
from tests.plugins.sse.helpers import (
    SSEFrame,
    balance,
    broadcaster_of,
    clients_become,
    frames,
    holdings,
    listen,
    networth,
    take,
    worker,
)


def at(index: int) -> str:
    """The stream id of entry ``index``."""
    return f"{STREAM_MS}-{index}"


def reason(frame: SSEFrame) -> str:
    """The reason a ``stream.reset`` frame gives."""
    assert frame.event == "stream.reset", frame
    return str(json.loads(frame.data or "")["reason"])


async def resume(
    client: httpx.AsyncClient, url: str, token: str, last_id: str, count: int
) -> list[SSEFrame]:
    """Reconnect with ``Last-Event-ID: last_id``; the first ``count`` event frames."""
    headers = {"Last-Event-ID": last_id}
    async with client.stream("GET", url, params={"token": token}, headers=headers) as response:
        assert response.status_code == 200
        return await take(frames(response), count)


class TestLiveClients:
    """Clients connected when the gap is delivered."""

    async def test_every_client_gets_one_reset_and_never_the_gap_itself(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """Three clients of two users, one filtering types: each gets ``stream.reset`` in order."""
        alice, bob = uuid4(), uuid4()
        only_networth = {"types": "portfolio.networth.updated"}
        async with (
            listen(client, url, params={"token": auth.issue(alice)}) as first,
            listen(client, url, params={"token": auth.issue(bob)}) as second,
            listen(client, url, params={"token": auth.issue(bob), **only_networth}) as third,
        ):
            await clients_become(broadcaster, 3)
            bus.publish_sync(networth(alice, "1"))
            bus.publish_sync(networth(bob, "1"))
            bus.publish_sync(OrderGap(origin="worker-a", missing=12))
            bus.publish_sync(networth(alice, "2"))
            bus.publish_sync(networth(bob, "2"))
            got = [await take(stream, 3) for stream in (first, second, third)]
        for seen in got:
            assert [f.event for f in seen] == [
                "portfolio.networth.updated",
                "stream.reset",
                "portfolio.networth.updated",
            ]
            assert reason(seen[1]) == "gap"
            assert seen[1].id  # the client's next reconnect resumes from the gap
        stats = broadcaster.statistics()
        assert stats["resets_sent"] == 3
        assert stats["order_gaps"] == 1
        assert stats["events_encoded"] == 4  # the gap was never encoded as an event

    async def test_a_gap_delivered_from_another_thread_keeps_its_place(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """Handled off the loop, the reset is handed to the loop in order, like any frame."""
        user = uuid4()
        async with listen(client, url, broadcaster, params={"token": auth.issue(user)}) as stream:

            def publish_all() -> None:
                bus.publish_sync(balance(user, "1"))
                bus.publish_sync(OrderGap(origin="worker-a", missing=1))
                bus.publish_sync(holdings(user))

            await asyncio.to_thread(publish_all)
            got = await take(stream, 3)
        assert [f.event for f in got] == [
            "portfolio.balance.updated",
            "stream.reset",
            "portfolio.holdings.updated",
        ]


class TestResumeAcrossTheGap:
    """A ``Last-Event-ID`` from before the gap gets a reset, never a replay with holes."""

    async def test_local_ids(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """An id before the gap resets; the gap's own id replays exactly what followed it."""
        user = uuid4()
        token = auth.issue(user)
        async with listen(client, url, broadcaster, params={"token": token}) as stream:
            for i in range(3):
                bus.publish_sync(balance(user, str(i)))
            bus.publish_sync(OrderGap(origin="worker-a", missing=5))
            after = [balance(user, "10"), balance(user, "11")]
            for event in after:
                bus.publish_sync(event)
            seen = await take(stream, 6)
        before_gap, gap = seen[1].id or "", seen[3].id or ""
        (reset,) = await resume(client, url, token, before_gap, 1)
        assert reason(reset) == "gap"
        assert reset.id == seen[-1].id  # the newest frame: resume from there next time
        replayed = await resume(client, url, token, gap, 2)
        assert [json.loads(f.data or "")["event_id"] for f in replayed] == [
            str(e.event_id) for e in after
        ]
        assert broadcaster.statistics()["frames_replayed"] == 2

    async def test_positions(
        self, auth: SignedTokenAuth, serve: Serve, client: httpx.AsyncClient
    ) -> None:
        """Before the gap (routed, or lost here): reset; after it: replay; ahead: nothing yet."""
        stream = Stream()
        bus = worker(stream, Broadcaster(buffer_size=64))
        broadcaster = broadcaster_of(bus)
        url = await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
        user = uuid4()
        token = auth.issue(user)
        for index in range(3):
            await bus.deliver(balance(user, str(index + 1)), at(index), local=False)
        # Entries 3 and 4 were trimmed before this worker read them; entry 5 shows it.
        await bus.deliver(OrderGap(origin="worker-a", missing=2), at(4), local=False)
        await bus.deliver(balance(user, "5"), at(5), local=False)
        await bus.deliver(balance(user, "6"), at(6), local=False)
        for last_id in (at(1), f"{at(2)}.1", at(3), at(4)):
            (reset,) = await resume(client, url, token, last_id, 1)
            assert reason(reset) == "gap", last_id
        replayed = await resume(client, url, token, at(5), 3)  # what followed, net worths too
        assert [f.id for f in replayed] == [f"{at(5)}.1", at(6), f"{at(6)}.1"]
        headers = {"Last-Event-ID": at(9)}  # seen on a worker ahead of this one: no reset
        async with listen(client, url, params={"token": token}, headers=headers) as ahead:
            await clients_become(broadcaster, 1)
            await bus.deliver(balance(user, "10"), at(10), local=False)
            (frame,) = await take(ahead, 1)
        assert frame.id == at(10)


def preamble_events(sub: Subscriber) -> list[bytes]:
    """The ``event:`` lines of a subscriber's preamble."""
    return [line for chunk in sub.preamble for line in chunk.split(b"\n") if line[:6] == b"event:"]


class TestGapBookkeeping:
    """The broadcaster alone: what the buffers keep across gaps."""

    def test_a_second_gap_resets_the_first_gaps_id(self) -> None:
        """Only the newest gap's id resumes; the older one is from before a gap too."""
        broadcaster = Broadcaster()
        user = uuid4()
        live = broadcaster.connect(user)
        broadcaster.handle(OrderGap(origin="a", missing=1))
        broadcaster.handle(balance(user, "1"))
        broadcaster.handle(OrderGap(origin="a", missing=1))
        first, _, second = (f.id for f in live._frames)  # test-only peek
        assert preamble_events(broadcaster.connect(user, last_event_id=first)) == [
            b"event: stream.reset"
        ]
        assert broadcaster.connect(user, last_event_id=second).preamble == []

    def test_an_evicted_gap_id_resets(self) -> None:
        """Once the ring has dropped the gap's frame, its id can no longer tell what followed."""
        broadcaster = Broadcaster(buffer_size=2)
        user = uuid4()
        live = broadcaster.connect(user)
        broadcaster.handle(OrderGap(origin="a", missing=1))
        gap = live._frames[0].id  # test-only peek
        for i in range(2):
            broadcaster.handle(balance(user, str(i)))
        assert preamble_events(broadcaster.connect(user, last_event_id=gap)) == [
            b"event: stream.reset"
        ]

    def test_a_connected_user_without_frames_resumes_from_the_gap(self) -> None:
        """A user who had no buffer but got the reset live can resume from it: nothing missed."""
        broadcaster = Broadcaster()
        user, other = uuid4(), uuid4()
        live = broadcaster.connect(user)
        broadcaster.handle(OrderGap(origin="a", missing=1))
        gap = live._frames[0].id  # test-only peek
        broadcaster.handle(balance(other, "1"))
        assert broadcaster.connect(user, last_event_id=gap).preamble == []
        assert broadcaster.statistics()["resets_sent"] == 1

    def test_a_gap_is_never_streamed_under_a_catch_all_mapping(self) -> None:
        """Even mapped through DomainEvent itself, an OrderGap reaches clients as a reset only."""
        broadcaster = Broadcaster(encoder=lambda event: b"{}")
        user = uuid4()
        broadcaster.register_mapping(DomainEvent, name="everything", user=lambda _: user)
        live = broadcaster.connect(user)
        broadcaster.handle(OrderGap(origin="a", missing=3))
        assert [f.name for f in live._frames] == ["stream.reset"]  # test-only peek

    def test_the_reset_name_is_reserved(self) -> None:
        """No mapping may be called ``stream.reset``."""
        with pytest.raises(ValueError, match="reserved"):
            Broadcaster().register_mapping(
                PortfolioNetWorthRecalculated, name="stream.reset", user=lambda e: e.user_id
            )
