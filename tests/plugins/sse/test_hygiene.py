"""Connection hygiene: slow clients, disconnects, threads, encode once, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import MutableMapping
from typing import Any
from uuid import uuid4

import httpx

from eventbus import DomainEvent, EventBus, codec
from eventbus_sse import Broadcaster, SignedTokenAuth, SSEPlugin
from tests.plugins.sse.conftest import Serve
from tests.plugins.sse.helpers import balance, clients_become, frames, listen, networth, take
from tests.support import wait_until_async


def plugged(broadcaster: Broadcaster) -> EventBus:
    """A strict bus feeding ``broadcaster``."""
    bus = EventBus(raise_errors=True)
    bus.register_plugin(SSEPlugin(broadcaster), name="sse")
    return bus


class TestSlowClients:
    """A client that does not read is dropped; nobody else notices."""

    async def test_stuck_client_dropped_fast_client_and_publisher_unaffected(
        self, auth: SignedTokenAuth, serve: Serve, client: httpx.AsyncClient
    ) -> None:
        """An ASGI connection whose send() never returns overflows its tiny queue and is dropped."""
        broadcaster = Broadcaster(queue_size=8)
        bus = plugged(broadcaster)
        app = broadcaster.asgi_app(authenticate=auth)
        url = await serve(app, broadcaster)
        user = uuid4()
        token = auth.issue(user)
        sent_to_stuck: list[MutableMapping[str, Any]] = []
        never = asyncio.Event()

        async def stuck_send(message: MutableMapping[str, Any]) -> None:
            sent_to_stuck.append(message)
            if len(sent_to_stuck) > 2:  # headers and retry: went out; then the peer stops reading
                await never.wait()

        requests = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> MutableMapping[str, Any]:
            if requests:
                return requests.pop()
            await never.wait()
            raise AssertionError("unreachable")

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": f"token={token}".encode(),
            "headers": [],
        }
        stuck = asyncio.create_task(app(scope, receive, stuck_send))
        published: list[str] = []
        async with client.stream("GET", url, params={"token": token}) as response:
            fast = frames(response)
            await clients_become(broadcaster, 2)
            received = []
            for batch in range(6):
                for i in range(4):
                    event = balance(user, f"{batch}.{i}")
                    published.append(str(event.event_id))
                    bus.publish_sync(event)  # never waits, whatever the clients do
                received += await take(fast, 4)
            await asyncio.wait_for(stuck, 10)  # the stuck connection's app returned
            stats = broadcaster.statistics()
        assert [json.loads(f.data or "")["event_id"] for f in received] == published
        assert stats["dropped_clients"] == 1
        assert stats["clients"] == 1
        assert len(sent_to_stuck) == 3  # its 3rd send is the one that never finished

    async def test_real_socket_that_never_reads_is_dropped(
        self, auth: SignedTokenAuth, serve: Serve
    ) -> None:
        """Over TCP: once the socket buffers fill, the tiny queue overflows and the server drops it."""
        broadcaster = Broadcaster(queue_size=4, buffer_size=0)
        bus = plugged(broadcaster)
        url = await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
        user = uuid4()
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        request = f"GET /?token={auth.issue(user)} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        await clients_become(broadcaster, 1)
        # Keep publishing (yielding so the server writes) until the kernel and
        # transport buffers are full and the 4-frame queue overflows.
        for i in range(500_000):
            bus.publish_sync(networth(user, str(i)))
            await asyncio.sleep(0)
            if broadcaster.statistics()["dropped_clients"]:
                break
        assert broadcaster.statistics()["dropped_clients"] == 1
        await clients_become(broadcaster, 0)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        del reader


class TestDisconnect:
    """A client that leaves is noticed at once, even on an idle stream."""

    async def test_idle_disconnect_frees_the_client(
        self,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        serve: Serve,
        client: httpx.AsyncClient,
    ) -> None:
        """With no events and no heartbeat due, closing the client brings clients back to 0."""
        url = await serve(broadcaster.asgi_app(authenticate=auth, heartbeat=3600), broadcaster)
        for _ in range(3):
            async with client.stream("GET", url, params={"token": auth.issue(uuid4())}) as response:
                await take(frames(response), 1, events_only=False)  # the retry: frame
                await clients_become(broadcaster, 1)
            await clients_become(broadcaster, 0)
        stats = broadcaster.statistics()
        assert stats["queued"] == 0
        assert stats["users"] == 0


class TestThreads:
    """Events published from other threads reach clients through the loop, in order."""

    async def test_publish_sync_from_a_worker_thread(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """1,000 events from a non-loop thread arrive complete and in order."""
        user = uuid4()
        events = [balance(user, str(i)) for i in range(1000)]
        loop_thread = threading.get_ident()
        threads_seen: set[int] = set()
        bus.subscribe(DomainEvent, lambda e: threads_seen.add(threading.get_ident()))
        async with listen(client, url, broadcaster, params={"token": auth.issue(user)}) as stream:

            def publish_all() -> None:
                for event in events:
                    bus.publish_sync(event)

            worker = threading.Thread(target=publish_all)
            worker.start()
            got = await take(stream, len(events))
            await asyncio.to_thread(worker.join)
        assert loop_thread not in threads_seen
        assert [json.loads(f.data or "")["event_id"] for f in got] == [
            str(e.event_id) for e in events
        ]


class TestEncodeOnce:
    """One encode per event, whatever the number of clients."""

    async def test_encoder_called_once_per_event_with_many_clients(
        self, auth: SignedTokenAuth, serve: Serve, client: httpx.AsyncClient
    ) -> None:
        """Five clients of one user, one of another: 30 events, 30 encodes."""
        encodes: list[DomainEvent] = []

        def counting(event: DomainEvent) -> bytes:
            encodes.append(event)
            return codec.dumps(event)

        broadcaster = Broadcaster(encoder=counting)
        bus = plugged(broadcaster)
        url = await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
        alice, bob = uuid4(), uuid4()
        async with contextlib.AsyncExitStack() as stack:
            streams = []
            for user in [alice] * 5 + [bob]:
                opened = listen(client, url, params={"token": auth.issue(user)})
                streams.append(await stack.enter_async_context(opened))
            await clients_become(broadcaster, 6)
            for i in range(30):
                bus.publish_sync(balance(alice if i % 3 else bob, str(i)))
            for stream in streams[:5]:
                assert len(await take(stream, 20)) == 20
            assert len(await take(streams[5], 10)) == 10
        assert len(encodes) == 30
        assert broadcaster.statistics()["events_encoded"] == 30

    async def test_clients_share_the_same_frame_bytes(self) -> None:
        """Every subscriber's queue holds the very same bytes object."""
        broadcaster = Broadcaster()
        user = uuid4()
        subs = [broadcaster.connect(user) for _ in range(3)]
        broadcaster.handle(balance(user, "1"))
        batches = [await sub.next_batch(1.0) for sub in subs]
        datas = [batch[0].data for batch in batches if batch]
        assert len(datas) == 3
        assert datas[0] is datas[1] is datas[2]
        for sub in subs:
            broadcaster.disconnect(sub)


class TestShutdown:
    """Closing the bus ends every stream cleanly."""

    async def test_bus_shutdown_ends_streams(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        serve: Serve,
        client: httpx.AsyncClient,
    ) -> None:
        """eventbus_shutdown closes all streams (a clean end of body); later clients get 503."""
        await bus.start()
        url = await serve(broadcaster.asgi_app(authenticate=auth, heartbeat=3600), broadcaster)
        async with contextlib.AsyncExitStack() as stack:
            responses = [
                await stack.enter_async_context(
                    client.stream("GET", url, params={"token": auth.issue(uuid4())})
                )
                for _ in range(3)
            ]
            await clients_become(broadcaster, 3)
            await bus.aclose()
            for response in responses:
                async with asyncio.timeout(10):
                    body = b"".join([chunk async for chunk in response.aiter_bytes()])
                assert body.startswith(b"retry:")
        assert broadcaster.statistics()["clients"] == 0
        response = await client.get(url, params={"token": auth.issue(uuid4())})
        assert response.status_code == 503
        await wait_until_async(lambda: broadcaster.closed)
