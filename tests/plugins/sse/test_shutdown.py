"""Stopping the server ends every open stream at once, with a complete body.

An ASGI server finishes open responses before it runs the lifespan shutdown,
and tells the app nothing in between, so the broadcaster chains onto the
server's SIGINT and SIGTERM handlers (module ``eventbus_sse._shutdown``). The
end-to-end tests run the ``uvicorn`` command as users do, in a process of its
own, send it the signal and read the stream with httpx: the body must be
complete (the chunked terminator arrives; httpx raises on a truncated body)
within a second, and uvicorn must log no error and no traceback. The unit
tests check which handlers are chained, and that they are put back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import uuid4

import httpx
import pytest

from eventbus_sse import Broadcaster, SignedTokenAuth
from eventbus_sse._shutdown import ShutdownSignals
from tests.plugins.sse.conftest import SECRET, Serve
from tests.plugins.sse.helpers import clients_become
from tests.support import free_port, wait_until, wait_until_async

ROOT = Path(__file__).resolve().parents[3]

#: How long after the signal the stream must have ended, completely.
WITHIN = 1.0


class _Uvicorn:
    """``python -m uvicorn ARGS --port P`` from the repository root, stderr collected."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTBUS_")}
        env |= {"TOKEN_SECRET": SECRET.decode(), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *args, "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        wait_until(self._started, 30, "uvicorn to start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            self._pump.join(5)
            pytest.fail("uvicorn exited early:\n" + self.output)
        return any("Application startup complete" in line for line in list(self.lines))

    @property
    def output(self) -> str:
        """Everything uvicorn printed so far."""
        return "\n".join(self.lines)

    def wait(self) -> int:
        """Wait for the process to exit (it must, promptly), and for its last output."""
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail("uvicorn did not exit after the signal:\n" + self.output)
        self._pump.join(5)
        return code

    def kill(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def _uvicorn(*args: str) -> Iterator[_Uvicorn]:
    server = _Uvicorn(*args)
    try:
        yield server
    finally:
        server.kill()


def _stop_with_a_stream_open(server: _Uvicorn, path: str, sig: signal.Signals) -> None:
    """Open a stream at ``path``, signal the server, and check how the stream ended."""
    token = SignedTokenAuth(SECRET).issue(uuid4())
    url = f"http://127.0.0.1:{server.port}{path}?token={token}"
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200, response.read()
        chunks = response.iter_raw()
        body = next(chunks)
        assert body.startswith(b"retry: "), body  # the stream is open
        signalled = time.monotonic()
        server.proc.send_signal(sig)
        try:
            body += b"".join(chunks)  # raises RemoteProtocolError if the body is cut
        except httpx.HTTPError as exc:
            pytest.fail(f"the stream did not end cleanly: {exc!r}\n{server.output}")
        ended = time.monotonic() - signalled
    assert ended < WITHIN, f"the stream ended {ended:.2f}s after {sig.name}"
    assert body == b"retry: 3000\n\n"
    # uvicorn exits 0, or re-raises SIGTERM once it has shut down: killed by it, cleanly.
    assert server.wait() in (0, -sig), server.output
    assert "ERROR" not in server.output
    assert "Traceback" not in server.output
    assert "Application shutdown complete" in server.output


class TestUvicornCommand:
    """``uvicorn ...`` stopped by a signal with a stream open: a complete body, no error."""

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
    def test_fastapi_recipe(self, sig: signal.Signals) -> None:
        """docs/fastapi.md's app, run as it says, with ``--timeout-graceful-shutdown 5``.

        The stream is mounted; the bus is started and closed in FastAPI's lifespan.
        """
        app = ("--factory", "fastapi_app:create_app", "--app-dir", "docs/examples")
        with _uvicorn(*app, "--timeout-graceful-shutdown", "5") as server:
            _stop_with_a_stream_open(server, "/events/", sig)

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
    def test_plain_app_without_a_timeout(self, sig: signal.Signals) -> None:
        """The stream app alone, ``uvicorn module:app``, and no graceful-shutdown timeout.

        Without the signal, uvicorn would wait for the stream for ever.
        """
        with _uvicorn("tests.plugins.sse.plain_app:app") as server:
            _stop_with_a_stream_open(server, "/", sig)

    def test_worker_processes(self) -> None:
        """``--workers 2``: the parent relays the signal to its workers; the stream completes."""
        with _uvicorn("tests.plugins.sse.plain_app:app", "--workers", "2") as server:
            _stop_with_a_stream_open(server, "/", signal.SIGTERM)


class TestInProcess:
    """Which handlers the broadcaster chains onto while a server streams from it."""

    async def test_chains_onto_the_servers_handlers_and_puts_them_back(
        self, serve: Serve, auth: SignedTokenAuth, client: httpx.AsyncClient
    ) -> None:
        """From the first stream the server's handlers are wrapped; `aclose` restores them.

        ``serve`` runs uvicorn on this (the main) thread, so uvicorn has
        installed its own SIGINT and SIGTERM handlers.
        """
        broadcaster = Broadcaster()
        url = await serve(broadcaster.asgi_app(authenticate=auth, heartbeat=3600), broadcaster)
        servers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        assert all(callable(handler) for handler in servers.values())  # uvicorn's
        async with client.stream("GET", url, params={"token": auth.issue(uuid4())}):
            await clients_become(broadcaster, 1)
            for sig, handler in servers.items():
                assert signal.getsignal(sig) is not handler
            await broadcaster.aclose()
        for sig, handler in servers.items():
            assert signal.getsignal(sig) is handler

    async def test_opted_out(
        self, serve: Serve, auth: SignedTokenAuth, client: httpx.AsyncClient
    ) -> None:
        """``Broadcaster(shutdown_signals=())`` leaves the server's handlers alone."""
        broadcaster = Broadcaster(shutdown_signals=())
        url = await serve(broadcaster.asgi_app(authenticate=auth, heartbeat=3600), broadcaster)
        servers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        async with client.stream("GET", url, params={"token": auth.issue(uuid4())}):
            await clients_become(broadcaster, 1)
            assert {sig: signal.getsignal(sig) for sig in servers} == servers

    async def test_the_signal_ends_streams_and_refuses_new_ones(
        self, serve: Serve, auth: SignedTokenAuth, client: httpx.AsyncClient, usr: list[int]
    ) -> None:
        """On the signal, open streams complete, new ones get 503, the old handler runs.

        SIGUSR1 stands for the server's signal (the ``usr`` fixture installs a
        recording handler for it), so that delivering it here stops nothing else.
        """
        broadcaster = Broadcaster(shutdown_signals=[signal.SIGUSR1])
        url = await serve(broadcaster.asgi_app(authenticate=auth, heartbeat=3600), broadcaster)
        async with client.stream("GET", url, params={"token": auth.issue(uuid4())}) as response:
            await clients_become(broadcaster, 1)
            signal.raise_signal(signal.SIGUSR1)
            assert usr == [signal.SIGUSR1]
            async with asyncio.timeout(WITHIN):
                body = b"".join([chunk async for chunk in response.aiter_raw()])
        assert body == b"retry: 3000\n\n"
        assert broadcaster.closed
        late = await client.get(url, params={"token": auth.issue(uuid4())})
        assert late.status_code == 503

    @pytest.mark.parametrize("bad", [["SIGTERM"], [True], [-1]])
    def test_bad_signals_are_refused(self, bad: list[Any]) -> None:
        """A signal that is not a signal number of this platform is refused at once."""
        with pytest.raises((TypeError, ValueError), match="shutdown_signals"):
            Broadcaster(shutdown_signals=bad)


@pytest.fixture(name="usr")
def _usr() -> Iterator[list[int]]:
    """SIGUSR1 with a recording Python handler, SIGUSR2 left at its default; restored after."""
    seen: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    signal.signal(signal.SIGUSR1, record)
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        yield seen
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class TestShutdownSignals:
    """The chaining itself, on signals nothing else uses (SIGUSR1, SIGUSR2)."""

    async def test_runs_on_the_loop_then_the_previous_handler(self, usr: list[int]) -> None:
        """A delivered signal calls the previous handler, and ``on_signal`` on the loop."""
        called: list[bool] = []
        watch = ShutdownSignals([signal.SIGUSR1], lambda: called.append(True))
        watch.install(asyncio.get_running_loop())
        signal.raise_signal(signal.SIGUSR1)
        assert usr == [signal.SIGUSR1]  # the previous handler, at once
        await wait_until_async(lambda: called, 5, "on_signal on the loop")
        watch.uninstall()
        signal.raise_signal(signal.SIGUSR1)
        assert usr == [signal.SIGUSR1, signal.SIGUSR1]
        assert called == [True]

    async def test_with_asyncios_signal_handlers(self, usr: list[int]) -> None:
        """``loop.add_signal_handler`` (as ``eventbus demo`` uses) still runs, and ours too."""
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        loop.add_signal_handler(signal.SIGUSR2, seen.append, "asyncio")
        try:
            watch = ShutdownSignals([signal.SIGUSR2], lambda: seen.append("ours"))
            watch.install(loop)
            signal.raise_signal(signal.SIGUSR2)
            await wait_until_async(lambda: len(seen) == 2, 5, "both handlers")
            assert sorted(seen) == ["asyncio", "ours"]
            watch.uninstall()
        finally:
            loop.remove_signal_handler(signal.SIGUSR2)

    async def test_only_handlers_someone_installed(self, usr: list[int]) -> None:
        """``SIG_DFL``, ``SIG_IGN`` and Python's KeyboardInterrupt handler are left alone."""
        loop = asyncio.get_running_loop()
        for default in (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler):
            signal.signal(signal.SIGUSR2, default)
            watch = ShutdownSignals([signal.SIGUSR2], lambda: None)
            watch.install(loop)
            assert signal.getsignal(signal.SIGUSR2) is default
            watch.uninstall()

    async def test_not_off_the_main_thread(self, usr: list[int]) -> None:
        """A loop in another thread (a server run in a thread) installs nothing."""
        record = signal.getsignal(signal.SIGUSR1)
        watch = ShutdownSignals([signal.SIGUSR1], lambda: None)
        loop = asyncio.get_running_loop()
        thread = threading.Thread(target=watch.install, args=(loop,))
        thread.start()
        thread.join(5)
        assert signal.getsignal(signal.SIGUSR1) is record

    async def test_chained_over_stays_inert(self, usr: list[int]) -> None:
        """If another handler was chained over ours, ours stays, only delegating."""
        called: list[bool] = []
        watch = ShutdownSignals([signal.SIGUSR1], lambda: called.append(True))
        watch.install(asyncio.get_running_loop())
        ours = signal.getsignal(signal.SIGUSR1)
        assert callable(ours)
        later: list[int] = []

        def over(signum: int, frame: FrameType | None) -> None:
            later.append(signum)
            ours(signum, frame)

        signal.signal(signal.SIGUSR1, over)
        watch.uninstall()
        assert signal.getsignal(signal.SIGUSR1) is over  # not ours to take back
        signal.raise_signal(signal.SIGUSR1)
        assert later == [signal.SIGUSR1]
        assert usr == [signal.SIGUSR1]  # still reaches the first handler
        after = asyncio.Event()
        asyncio.get_running_loop().call_soon(after.set)  # runs after anything scheduled before
        await after.wait()
        assert called == []
