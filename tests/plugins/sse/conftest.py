"""Fixtures for the SSE plugin tests: a real uvicorn server, a real HTTP client.

`serve` starts uvicorn on a socket bound to a free 127.0.0.1 port, as a task on
the test's own event loop, and waits for ``server.started``; teardown closes
the broadcasters (ending every stream) and stops the server cleanly.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import uvicorn

from eventbus import EventBus
from eventbus_sse import Broadcaster, SignedTokenAuth, SSEPlugin
from tests.support import wait_until_async

Serve = Callable[..., Awaitable[str]]

SECRET = b"test-secret-0123456789abcdef"


@pytest.fixture(name="auth")
def _auth() -> SignedTokenAuth:
    return SignedTokenAuth(SECRET)


@pytest.fixture(name="broadcaster")
def _broadcaster() -> Broadcaster:
    return Broadcaster(buffer_size=64, queue_size=4096)


@pytest.fixture(name="bus")
def _bus(broadcaster: Broadcaster) -> EventBus:
    bus = EventBus(raise_errors=True)
    bus.register_plugin(SSEPlugin(broadcaster), name="sse")
    return bus


@pytest.fixture(name="serve")
async def _serve() -> AsyncIterator[Serve]:
    """Start an ASGI app on a free loopback port; returns its base URL."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None], Broadcaster | None]] = []

    async def serve(app: object, broadcaster: Broadcaster | None = None) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        running.append((server, task, broadcaster))
        await wait_until_async(lambda: server.started or task.done(), what="uvicorn started")
        if task.done():
            task.result()
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, _task, broadcaster in running:
        if broadcaster is not None:
            await broadcaster.aclose()
        server.should_exit = True
    for _, task, _ in running:
        await asyncio.wait_for(task, 15)


@pytest.fixture(name="client")
async def _client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        yield client


@pytest.fixture(name="url")
async def _url(serve: Serve, broadcaster: Broadcaster, auth: SignedTokenAuth) -> str:
    """The base URL of ``broadcaster``'s stream app (default settings) on a live server."""
    return await serve(broadcaster.asgi_app(authenticate=auth), broadcaster)
