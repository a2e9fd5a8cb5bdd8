"""Shared helpers for the test suite: free ports, condition waits, required binaries.

Tests never sleep to synchronise; they wait on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

__all__ = ["free_port", "require_binary", "wait_until", "wait_until_async"]


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
