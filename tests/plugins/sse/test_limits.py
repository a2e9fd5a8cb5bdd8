"""Caps on concurrent streams: per user (429) and in all (503), so descriptors never run out."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import httpx
import pytest

from eventbus_sse import Broadcaster, ClientLimitError, SignedTokenAuth
from eventbus_sse._clients import descriptor_budget
from tests.plugins.sse.conftest import Serve
from tests.plugins.sse.helpers import clients_become
from tests.support import wait_until_async


@contextlib.asynccontextmanager
async def streams(
    client: httpx.AsyncClient, url: str, tokens: list[str]
) -> AsyncIterator[list[httpx.Response]]:
    """Open one stream per token (each must get its 200) and keep them open."""
    async with contextlib.AsyncExitStack() as stack:
        opened = []
        for token in tokens:
            response = await stack.enter_async_context(
                client.stream("GET", url, params={"token": token})
            )
            assert response.status_code == 200, response.status_code
            opened.append(response)
        yield opened


@pytest.fixture(name="wide_client")
async def _wide_client() -> AsyncIterator[httpx.AsyncClient]:
    """A client allowed many connections at once (httpx's default pool is 100)."""
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), limits=limits) as client:
        yield client


class TestPerUserCap:
    """One user cannot hold more than ``max_clients_per_user`` streams."""

    async def test_on_by_default_answered_429_with_retry_after(
        self, auth: SignedTokenAuth, serve: Serve, wide_client: httpx.AsyncClient
    ) -> None:
        """At the default cap (at most 64) the next stream is a 429; other users still get in."""
        broadcaster = Broadcaster()
        cap = broadcaster.max_clients_per_user
        assert cap is not None
        assert cap <= 64
        url = await serve(broadcaster.asgi_app(authenticate=auth, retry_ms=2500), broadcaster)
        user = uuid4()
        async with streams(wide_client, url, [auth.issue(user)] * cap) as opened:
            await clients_become(broadcaster, cap)
            refused = await wide_client.get(url, params={"token": auth.issue(user)})
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "3"
            other = auth.issue(uuid4())
            async with streams(wide_client, url, [other]):
                await clients_become(broadcaster, cap + 1)
            await opened[0].aclose()  # one of the user's streams ends: room for one more
            await clients_become(broadcaster, cap - 1)
            async with streams(wide_client, url, [auth.issue(user)]):
                await clients_become(broadcaster, cap)
        stats = broadcaster.statistics()
        assert stats["refused_per_user"] == 1
        assert stats["refused_global"] == 0

    async def test_a_malformed_request_still_gets_its_400(
        self, auth: SignedTokenAuth, serve: Serve, client: httpx.AsyncClient
    ) -> None:
        """At the cap, an unknown ``types=`` name is still a 400: parameters are checked first."""
        broadcaster = Broadcaster(max_clients_per_user=1)
        url = await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
        token = auth.issue(uuid4())
        async with streams(client, url, [token]):
            await clients_become(broadcaster, 1)
            bad = await client.get(url, params={"token": token, "types": "nope.nope"})
            assert bad.status_code == 400
            full = await client.get(url, params={"token": token})
            assert full.status_code == 429

    async def test_configurable_and_none_disables_it(self) -> None:
        """``max_clients_per_user`` sets the cap; ``None`` removes it."""
        user = uuid4()
        capped = Broadcaster(max_clients_per_user=2)
        subs = [capped.connect(user) for _ in range(2)]
        with pytest.raises(ClientLimitError, match="2 SSE clients") as refused:
            capped.connect(user)
        assert refused.value.per_user
        assert refused.value.user == user
        capped.disconnect(subs[0])
        capped.disconnect(subs[0])  # idempotent: frees one slot, not two
        subs[1:] += [capped.connect(user)]
        with pytest.raises(ClientLimitError):
            capped.connect(user)
        uncapped = Broadcaster(max_clients_per_user=None, max_clients=None)
        assert len([uncapped.connect(user) for _ in range(200)]) == 200
        assert uncapped.statistics()["clients"] == 200


class TestGlobalCap:
    """The broadcaster holds at most ``max_clients`` streams in all."""

    async def test_answered_503_before_authentication(
        self, auth: SignedTokenAuth, serve: Serve, wide_client: httpx.AsyncClient
    ) -> None:
        """Full: any request gets a 503 with Retry-After, with a valid token or none."""
        broadcaster = Broadcaster(max_clients=3)
        url = await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
        async with streams(wide_client, url, [auth.issue(uuid4()) for _ in range(3)]):
            await clients_become(broadcaster, 3)
            for params in ({"token": auth.issue(uuid4())}, {}):
                refused = await wide_client.get(url, params=params)
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "3"
        await clients_become(broadcaster, 0)
        async with streams(wide_client, url, [auth.issue(uuid4())]):
            pass
        assert broadcaster.statistics()["refused_global"] == 2

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"max_clients": 0},
            {"max_clients": -1},
            {"max_clients": True},
            {"max_clients": "all"},
            {"max_clients_per_user": 0},
            {"max_clients_per_user": 1.5},
        ],
    )
    def test_bad_caps_name_the_parameter(self, kwargs: dict[str, object]) -> None:
        """A cap is an int >= 1 or None; anything else is a ValueError naming it."""
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            Broadcaster(**kwargs)  # type: ignore[arg-type]

    def test_the_default_follows_the_descriptor_limit(self) -> None:
        """``"auto"``: the soft RLIMIT_NOFILE less max(64, an eighth)."""
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert Broadcaster().max_clients == descriptor_budget() == soft - max(64, soft // 8)


class TestDescriptorExhaustion:
    """Under a real descriptor limit, streams past the cap are refused, never left hanging."""

    async def test_a_full_server_still_answers_everyone(self) -> None:
        """Soft limit 256: 192 streams open, every further request gets a prompt 503.

        Without the cap the server runs out of descriptors, ``accept()`` fails
        in a loop, and new clients wait forever.
        """
        server = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.plugins.sse.limited_server", "256"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert server.stdout is not None
        assert server.stderr is not None
        errors: list[bytes] = []
        draining = asyncio.create_task(drain(server.stderr, errors))
        opened: list[asyncio.StreamWriter] = []
        try:
            async with asyncio.timeout(30):
                port, cap = (int(x) for x in (await server.stdout.readline()).split())
            assert cap == 256 - 64
            users = [uuid4() for _ in range(12)]
            statuses: list[int] = []
            for i in range(300):  # past the cap and past the descriptor limit itself
                status, writer = await request(port, users[i % len(users)])
                statuses.append(status)
                if status == 200:
                    opened.append(writer)
                else:
                    writer.close()
            assert statuses.count(200) == cap
            assert set(statuses[cap:]) == {503}
            for writer in opened[:10]:
                writer.close()
            del opened[:10]

            async def admitted() -> bool:
                status, writer = await request(port, uuid4())
                if status == 200:
                    opened.append(writer)
                else:
                    writer.close()
                return status == 200

            await wait_until_async(admitted, what="a stream admitted after 10 closed")
        finally:
            for writer in opened:
                writer.close()
            server.kill()
            await asyncio.wait_for(server.wait(), 10)
            await asyncio.wait_for(draining, 10)
        assert not any(b"out of system resource" in line for line in errors), errors[:5]


async def drain(stream: asyncio.StreamReader, lines: list[bytes]) -> None:
    """Collect a pipe's lines until it closes (so the child never blocks on it)."""
    while line := await stream.readline():
        lines.append(line)


async def request(port: int, user: UUID) -> tuple[int, asyncio.StreamWriter]:
    """Open a raw connection, ask for ``user``'s stream; its status and the open writer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /?user={user} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10):
        line = await reader.readline()
    return int(line.split()[1]), writer
