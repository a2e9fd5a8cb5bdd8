"""The event stream over real HTTP: frames, ids, heartbeats, errors, isolation."""

from __future__ import annotations

import contextlib
import json
from uuid import uuid4

import httpx
import pytest

from eventbus import EventBus
from eventbus_sse import Broadcaster, SignedTokenAuth
from tests.plugins.sse.conftest import Serve
from tests.plugins.sse.helpers import (
    balance,
    clients_become,
    frames,
    holdings,
    listen,
    networth,
    take,
)


class TestFrames:
    """What a client receives on a healthy stream."""

    async def test_retry_first_then_frames_with_ids_names_and_codec_data(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        serve: Serve,
        client: httpx.AsyncClient,
    ) -> None:
        """The first frame is retry:, then one frame per event with id, event name and codec JSON."""
        url = await serve(broadcaster.asgi_app(authenticate=auth, retry_ms=1234), broadcaster)
        user = uuid4()
        headers = {"Authorization": f"Bearer {auth.issue(user)}"}
        async with client.stream("GET", url + "/", headers=headers) as response:
            assert response.status_code == 200
            stream = frames(response)
            first = (await take(stream, 1, events_only=False))[0]
            assert first.retry == 1234
            assert first.event is None
            await clients_become(broadcaster, 1)
            sent = [balance(user, "10.50"), holdings(user), networth(user, "10.50")]
            for event in sent:
                bus.publish_sync(event)
            got = await take(stream, 3)
        assert [f.event for f in got] == [
            "portfolio.balance.updated",
            "portfolio.holdings.updated",
            "portfolio.networth.updated",
        ]
        ids = [f.id for f in got]
        assert all(i and i.startswith(broadcaster.epoch + "-") for i in ids)
        seqs = [int(i.rsplit("-", 1)[1]) for i in ids if i]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 3
        payload = json.loads(got[0].data or "")
        assert payload["type"] == "portfolio.balance.updated"
        assert payload["event_id"] == str(sent[0].event_id)
        assert payload["data"]["new_balance"] == "10.50"

    async def test_heartbeat_comments_while_idle(
        self,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        serve: Serve,
        client: httpx.AsyncClient,
    ) -> None:
        """An idle stream gets a heartbeat comment every ``heartbeat`` seconds."""
        url = await serve(broadcaster.asgi_app(authenticate=auth, heartbeat=0.02), broadcaster)
        async with client.stream("GET", url, params={"token": auth.issue(uuid4())}) as response:
            got = await take(frames(response), 4, events_only=False)
        assert got[0].retry is not None
        assert [f.comment for f in got[1:]] == ["heartbeat"] * 3
        assert broadcaster.statistics()["heartbeats_sent"] >= 3

    async def test_headers_are_exactly_the_streaming_ones(
        self,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """text/event-stream, no-cache, X-Accel-Buffering: no, and no Connection header."""
        async with client.stream("GET", url, params={"token": auth.issue(uuid4())}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            assert "connection" not in response.headers


class TestRefusals:
    """Errors are answered before any streaming starts."""

    def test_app_without_authenticator_cannot_be_built(self, broadcaster: Broadcaster) -> None:
        """There is no allow-all default: authenticate is required."""
        with pytest.raises(TypeError, match="authenticate is required"):
            broadcaster.asgi_app(authenticate=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            broadcaster.asgi_app()  # type: ignore[call-arg]

    def test_bad_settings_name_the_parameter(
        self, broadcaster: Broadcaster, auth: SignedTokenAuth
    ) -> None:
        """A non-positive heartbeat or a negative retry is refused, naming the parameter."""
        with pytest.raises(ValueError, match="heartbeat"):
            broadcaster.asgi_app(authenticate=auth, heartbeat=0)
        with pytest.raises(ValueError, match="retry_ms"):
            broadcaster.asgi_app(authenticate=auth, retry_ms=-1)

    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"token": "garbage"},
            {"token": SignedTokenAuth(b"another-secret-0123456").issue(uuid4())},
        ],
        ids=["missing", "garbage", "wrong-secret"],
    )
    async def test_401_without_a_valid_token(
        self,
        params: dict[str, str],
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """No or a bad token: 401 with WWW-Authenticate, a plain body, no stream."""
        response = await client.get(url, params=params)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"].startswith("text/plain")
        assert broadcaster.statistics()["clients"] == 0

    async def test_400_for_unknown_event_names(
        self,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """types= naming an unknown event is a 400 that names it; no stream starts."""
        params = {"token": auth.issue(uuid4()), "types": "portfolio.balance.updated,nope.nope"}
        response = await client.get(url, params=params)
        assert response.status_code == 400
        assert "nope.nope" in response.text
        empty = await client.get(url, params={"token": auth.issue(uuid4()), "types": ""})
        assert empty.status_code == 400
        assert "no event name" in empty.text
        assert broadcaster.statistics()["clients"] == 0

    async def test_only_get(
        self,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """Other methods get a 405 naming GET."""
        response = await client.post(url, params={"token": auth.issue(uuid4())})
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"


class TestAuthentication:
    """The three ways a token may arrive."""

    @pytest.mark.parametrize("how", ["bearer", "query", "cookie"])
    async def test_token_from_header_query_or_cookie(
        self,
        how: str,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """Each of bearer header, ?token= and the cookie authenticates the stream."""
        user = uuid4()
        token = auth.issue(user)
        kwargs: dict[str, dict[str, str]] = {
            "bearer": {"headers": {"Authorization": f"Bearer {token}"}},
            "query": {"params": {"token": token}},
            "cookie": {"headers": {"Cookie": f"eventbus_token={token}"}},
        }[how]
        async with listen(client, url, broadcaster, **kwargs) as stream:  # type: ignore[arg-type]
            bus.publish_sync(balance(user, "1"))
            (frame,) = await take(stream, 1)
        assert frame.event == "portfolio.balance.updated"


class TestFiltering:
    """types= selects event names."""

    async def test_types_filter(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """Only the named events reach the client; the others are skipped."""
        user = uuid4()
        params = {
            "token": auth.issue(user),
            "types": "portfolio.networth.updated, portfolio.holdings.updated",
        }
        async with listen(client, url, broadcaster, params=params) as stream:
            for i in range(3):
                bus.publish_sync(balance(user, str(i)))
                bus.publish_sync(holdings(user, i))
                bus.publish_sync(networth(user, str(i)))
            got = await take(stream, 6)
        assert [f.event for f in got] == [
            "portfolio.holdings.updated",
            "portfolio.networth.updated",
        ] * 3


class TestIsolation:
    """A user's events go to that user's clients only."""

    async def test_many_mixed_events_never_cross_users(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """Three users, two clients each, 600 interleaved events: each client gets exactly its user's."""
        users = [uuid4() for _ in range(3)]
        makers = (
            lambda u, i: balance(u, str(i)),
            lambda u, i: holdings(u, i),
            lambda u, i: networth(u, str(i)),
        )
        sent: dict[object, list[str]] = {u: [] for u in users}
        async with contextlib.AsyncExitStack() as stack:
            streams = []
            for user in users * 2:
                opened = listen(client, url, params={"token": auth.issue(user)})
                streams.append((user, await stack.enter_async_context(opened)))
            await clients_become(broadcaster, 6)
            for i in range(600):
                user = users[(i * 7 + i // 5) % 3]
                event = makers[i % 3](user, i)
                sent[user].append(str(event.event_id))
                bus.publish_sync(event)
            for user, stream in streams:
                got = await take(stream, len(sent[user]))
                assert [json.loads(f.data or "")["event_id"] for f in got] == sent[user]
                assert {json.loads(f.data or "")["data"]["user_id"] for f in got} == {str(user)}
        assert broadcaster.statistics()["frames_routed"] == 1200
