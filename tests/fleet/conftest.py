"""Fixtures for the fleet tests: a real redis-server, worker processes, an HTTP client.

`redis_server` runs ``redis-server`` on a free 127.0.0.1 port (persistence off,
its own temp dir); it can be stopped and started again on the same port.
`fleet` starts worker processes (``python -m tests.fleet.worker``) bridged to
it and stops every one at teardown, failing the test if one did not exit
cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fleet.helpers import WorkerProcess, spawn_worker
from tests.support import RedisServer, require_binary


class Fleet:
    """Starts workers on one Redis; `stop_all` ends them.

    Args:
        redis_url: The URL workers get unless told otherwise.
        log_dir: Where each worker's log goes (``worker-<name>.log``).
    """

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    async def spawn(self, name: str, *args: str, url: str | None = None) -> WorkerProcess:
        """Start worker ``name`` with extra CLI ``args``; it is not ready yet."""
        worker = await spawn_worker(name, url or self.redis_url, self.log_dir, *args)
        self.workers.append(worker)
        return worker

    async def start(self, name: str, *args: str, url: str | None = None) -> WorkerProcess:
        """Start worker ``name`` and wait until it prints ``ready``."""
        worker = await self.spawn(name, *args, url=url)
        await worker.wait_ready()
        return worker

    async def start_many(self, *names: str, args: tuple[str, ...] = ()) -> list[WorkerProcess]:
        """Start several workers at once (in parallel); every one ready."""
        workers = [await self.spawn(name, *args) for name in names]
        await asyncio.gather(*(w.wait_ready() for w in workers))
        return workers

    async def stop_all(self) -> list[tuple[WorkerProcess, int]]:
        """Stop every worker (in parallel); the ones that exited with a non-zero code."""
        codes = await asyncio.gather(*(w.stop() for w in self.workers))
        return [(w, c) for w, c in zip(self.workers, codes, strict=True) if c != 0]


@pytest.fixture(name="redis_server")
def _redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_binary("redis-server"), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(name="fleet")
async def _fleet(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Fleet]:
    fleet = Fleet(redis_server.url, tmp_path)
    try:
        yield fleet
    finally:
        failed = await fleet.stop_all()
    for worker, code in failed:
        worker.fail(f"exited with {code} at shutdown")


@pytest.fixture(name="client")
async def _client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        yield client
