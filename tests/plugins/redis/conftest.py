"""Fixtures for the Redis bridge tests: a real redis-server, buses bridged to it.

`redis_server` runs ``redis-server`` on a free 127.0.0.1 port with persistence
off and its own temp dir; it can be stopped and started again on the same port
(the restart tests). `bridged` builds started buses whose bridges point at it;
teardown closes them, then the server.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from eventbus import EventBus
from eventbus_redis import RedisBridgePlugin
from tests.plugins.sse.conftest import _client, _serve  # noqa: F401  # SSE across workers
from tests.support import free_port, require_binary, wait_until

Bridged = Callable[..., Awaitable[tuple[EventBus, RedisBridgePlugin]]]


class RedisServer:
    """A real redis-server process on a fixed loopback port."""

    def __init__(self, binary: str, workdir: Path, *extra: str) -> None:
        self.binary, self.workdir, self.extra = binary, workdir, extra
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A sync redis-py client (test-side inspection and raw commands)."""
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=10, what=f"redis-server answering on {self.port}")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"redis-server exited with {self.process.returncode}")
        try:
            with self.client(password=self._password(), socket_timeout=1) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def _password(self) -> str | None:
        args = list(self.extra)
        return args[args.index("--requirepass") + 1] if "--requirepass" in args else None

    def stop(self) -> None:
        """Stop the server (SIGTERM) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


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
