"""Shared helpers for the test suite: free ports, condition waits, required binaries.

Tests never sleep to synchronise; they wait on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import redis

__all__ = [
    "CHROMIUM_ARGS",
    "RedisServer",
    "free_port",
    "require_binary",
    "wait_until",
    "wait_until_async",
]

#: Headless Chromium flags for a container: no sandbox (root), no GPU, and no
#: background traffic off the loopback interface.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition!r}")
        time.sleep(0.005)


async def wait_until_async(
    condition: Callable[[], object] | Callable[[], Awaitable[object]],
    timeout: float = 10.0,  # noqa: ASYNC109  # a deadline that fails the test, not a cancel
    what: str = "",
) -> None:
    """Async twin of `wait_until`; ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition!r}")
        await asyncio.sleep(0.005)


def require_binary(name: str, *candidates: str) -> str:
    """Return the path of an executable, or skip (fail under CI) when it is missing.

    In CI (``CI`` set in the environment) a missing binary is a failure, never a
    skip: ``.ci/run`` installs everything the suite needs.
    """
    for candidate in (name, *candidates):
        path = shutil.which(candidate)
        if path:
            return path
    message = f"{name!r} is not installed (apt-get install it, as .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must have it")
    pytest.skip(message)


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
        import redis  # only the Redis tests need the redis extra

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
        import redis  # only the Redis tests need the redis extra

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
