"""Fixtures for the Redis bridge tests: a real redis-server, buses bridged to it.

`redis_server` runs ``redis-server`` on a free 127.0.0.1 port with persistence
off and its own temp dir; it can be stopped and started again on the same port
(the restart tests). `bridged` builds started buses whose bridges point at it;
teardown closes them, then the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventbus import EventBus
from eventbus_redis import RedisBridgePlugin
from tests.plugins.sse.conftest import _client, _serve  # noqa: F401  # SSE across workers
from tests.support import RedisServer, require_binary

Bridged = Callable[..., Awaitable[tuple[EventBus, RedisBridgePlugin]]]


@pytest.fixture(name="redis_binary")
def _redis_binary() -> str:
    return require_binary("redis-server")


@pytest.fixture(name="redis_server")
def _redis_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(name="bridged")
async def _bridged(redis_server: RedisServer) -> AsyncIterator[Bridged]:
    """Factory: a started bus (``raise_errors=True``) with a bridge to ``redis_server``.

    Keyword arguments go to `RedisBridgePlugin` (settings); ``plugins`` is a list of
    (name, plugin) registered before the bridge.
    """
    buses: list[EventBus] = []

    async def make(
        *, plugins: tuple[tuple[str, object], ...] = (), url: str | None = None, **options: Any
    ) -> tuple[EventBus, RedisBridgePlugin]:
        bus = EventBus(raise_errors=True)
        for name, plugin in plugins:
            bus.register_plugin(plugin, name=name)
        bridge = RedisBridgePlugin(url or redis_server.url, **options)
        bus.register_plugin(bridge, name="redis")
        await bus.start()
        buses.append(bus)
        return bus, bridge

    yield make
    for bus in reversed(buses):
        await bus.aclose()
