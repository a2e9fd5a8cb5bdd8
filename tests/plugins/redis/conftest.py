"""Fixtures for the Redis bridge tests: a real redis-server, workers bridged to it.

`redis_server` runs ``redis-server`` on a free 127.0.0.1 port with persistence
off and its own temp dir; it can be stopped and started again on the same port
(the outage tests). `workers` builds buses whose bridges point at it, each one
a worker of the fleet as far as Redis can tell (its own origin id and
connections); teardown closes them, then the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventbus import DomainEvent, EventBus
from eventbus_redis import RedisBridgePlugin
from tests.plugins.redis.helpers import History, Worker
from tests.support import RedisServer, require_binary

__all__ = ["MakeWorker", "RedisServer"]

#: ``await make(...)``: see `_workers`.
MakeWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture(name="redis_binary")
def _redis_binary() -> str:
    return require_binary("redis-server")


@pytest.fixture(name="redis_server")
def _redis_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(name="workers")
async def _workers(redis_server: RedisServer) -> AsyncIterator[MakeWorker]:
    """Factory: a started worker (bus with ``raise_errors=True``) bridged to ``redis_server``.

    Keywords: ``url`` (default the server's), ``history`` (a `History`
    projection to register, with its fleet handler on every event),
    ``record`` (subscribe the catch-all local and fleet handlers, default
    True), ``setup`` (called with the bus before it starts), ``start``
    (default True); any other keyword is a `RedisBridgePlugin` setting.
    """
    made: list[EventBus] = []

    async def make(
        *,
        url: str | None = None,
        history: History | None = None,
        record: bool = True,
        setup: Callable[[EventBus], None] | None = None,
        start: bool = True,
        **options: Any,
    ) -> Worker:
        bus = EventBus(raise_errors=True)
        plugin = RedisBridgePlugin(url or redis_server.url, **options)
        worker = Worker(bus, plugin, history=history)
        if record:
            worker.record()
        if history is not None:
            bus.register_projection(history)
            bus.subscribe(DomainEvent, history.on_event, fleet=True)
        if setup is not None:
            setup(bus)
        bus.register_plugin(plugin, name="redis")
        made.append(bus)  # closing a bus that never started is harmless
        if start:
            await bus.start()
        return worker

    yield make
    for bus in reversed(made):
        await bus.aclose()
