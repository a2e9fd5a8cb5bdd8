"""Helpers for the fleet tests: worker processes, SSE streams read raw, a TCP proxy.

Every wait has a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import httpx
import pytest

from eventbus_sse import SignedTokenAuth
from tests.fleet.worker import RATES, SECRET
from tests.support import wait_until_async

__all__ = [
    "AUTH",
    "ROOT",
    "EventStream",
    "Frame",
    "TcpProxy",
    "WorkerProcess",
    "expected_net_worth",
    "open_stream",
    "spawn_worker",
    "update",
]

#: The repository root: workers run ``python -m tests.fleet.worker`` from here.
ROOT: Final = Path(__file__).resolve().parents[2]

#: Issues tokens every worker accepts.
AUTH: Final = SignedTokenAuth(SECRET)

#: Seconds a worker may take to print ``ready`` (imports, bootstrap, uvicorn).
READY_TIMEOUT: Final = 20.0

#: The environment variables that would change what a worker loads.
_SCRUBBED: Final = (
    "EVENTBUS_DISABLE_PLUGIN_AUTOLOAD",
    "EVENTBUS_BLOCK_PLUGINS",
    "EVENTBUS_REDIS_URL",
)


def update(
    user: UUID,
    account: UUID,
    new: str | int | Decimal,
    previous: str | int | Decimal = 0,
    currency: str = "USD",
) -> dict[str, str]:
    """One balance update as ``POST /publish`` takes it."""
    return {
        "user": str(user),
        "account": str(account),
        "previous": str(previous),
        "new": str(new),
        "currency": currency,
    }


def expected_net_worth(balances: dict[UUID, tuple[Decimal, str]]) -> Decimal:
    """The true net worth in USD of ``{account: (balance, currency)}``."""
    total = Decimal(0)
    for amount, currency in balances.values():
        total += amount if currency == "USD" else amount * RATES[(currency, "USD")]
    return total


# ------------------------------------------------------------------ workers


class WorkerProcess:
    """A running ``tests.fleet.worker`` process and its HTTP address.

    Attributes:
        name: A label for messages (``"A"``, ``"B"``...).
        process: The OS process.
        log_path: Where its stderr (its log) goes.
        port: The port it serves on, once `wait_ready` returned.
    """

    def __init__(self, name: str, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.port = 0

    def __repr__(self) -> str:
        return f"<worker {self.name} pid={self.process.pid} port={self.port}>"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the worker logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def fail(self, message: str) -> None:
        """Fail the test with ``message`` and the tail of this worker's log."""
        tail = "\n".join(self.log().splitlines()[-40:])
        pytest.fail(f"worker {self.name}: {message}\n--- its log (tail) ---\n{tail}")

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:  # noqa: ASYNC109
        """Wait for its ``ready <port>`` line; fail if it exits or takes too long."""
        stdout = self.process.stdout
        assert stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = (await stdout.readline()).decode().strip()
                    if not line:
                        await self.process.wait()
                        self.fail(f"exited with {self.process.returncode} before it was ready")
                    if line.startswith("ready "):
                        self.port = int(line.split()[1])
                        return
        except TimeoutError:
            self.fail(f"not ready after {timeout}s")

    async def stop(self, timeout: float = 15.0) -> int:  # noqa: ASYNC109
        """Close its stdin (it shuts down cleanly); kill it after ``timeout``. Its exit code."""
        process = self.process
        if process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGKILL)
                await process.wait()
                return -signal.SIGKILL
        assert process.returncode is not None
        return process.returncode

    async def publish(self, client: httpx.AsyncClient, *updates: dict[str, str]) -> list[str]:
        """``POST /publish`` the updates (published in order); their event ids."""
        response = await client.post(f"{self.url}/publish", json=list(updates))
        if response.status_code != 200:
            self.fail(f"/publish answered {response.status_code}: {response.text}")
        ids: list[str] = response.json()["event_ids"]
        return ids

    async def net_worth(self, client: httpx.AsyncClient, user: UUID) -> Decimal:
        """The worker's aggregator figure for ``user`` (``GET /networth``)."""
        response = await client.get(f"{self.url}/networth", params={"user": str(user)})
        if response.status_code != 200:
            self.fail(f"/networth answered {response.status_code}: {response.text}")
        return Decimal(response.json()["net_worth"])

    async def stats(self, client: httpx.AsyncClient) -> dict[str, dict[str, int]]:
        """``{"redis": {...}, "sse": {...}}``: the plugins' statistics."""
        response = await client.get(f"{self.url}/stats")
        response.raise_for_status()
        stats: dict[str, dict[str, int]] = response.json()
        return stats

    async def wait_net_worth(
        self,
        client: httpx.AsyncClient,
        user: UUID,
        value: Decimal,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until the worker's figure for ``user`` is ``value``."""
        seen: list[Decimal] = []

        async def reached() -> bool:
            seen.append(await self.net_worth(client, user))
            return seen[-1] == value

        await self._poll(reached, timeout, lambda: f"net worth of {user} = {value} ({seen[-1:]})")

    async def wait_stat(
        self,
        client: httpx.AsyncClient,
        section: str,
        key: str,
        value: int,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until ``stats()[section][key] >= value``."""
        seen: list[int] = []

        async def reached() -> bool:
            seen.append((await self.stats(client))[section][key])
            return seen[-1] >= value

        await self._poll(reached, timeout, lambda: f"{section}.{key} >= {value} ({seen[-1:]})")

    async def _poll(
        self,
        condition: Callable[[], Awaitable[bool]],
        timeout: float,  # noqa: ASYNC109
        what: Callable[[], str],
    ) -> None:
        try:
            await wait_until_async(condition, timeout, what="")
        except pytest.fail.Exception:
            self.fail(f"timed out after {timeout}s waiting for {what()}")


async def spawn_worker(name: str, redis_url: str, log_dir: Path, *args: str) -> WorkerProcess:
    """Start ``python -m tests.fleet.worker --redis URL --port 0 ARGS`` (not yet ready)."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONUNBUFFERED"] = "1"
    log_path = log_dir / f"worker-{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.fleet.worker",
            *("--redis", redis_url, "--port", "0", *args),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    return WorkerProcess(name, process, log_path)


# ------------------------------------------------------------------ SSE


@dataclass(frozen=True, slots=True)
class Frame:
    """One SSE event frame as the client received it.

    Attributes:
        raw: The frame's exact bytes, up to and including the blank line.
        id: Its ``id:`` value (``None`` if it had none).
        event: Its ``event:`` name.
        data: Its ``data:`` payload (JSON text).
    """

    raw: bytes
    id: str | None
    event: str | None
    data: str | None

    def json(self) -> Any:
        """The ``data:`` payload, decoded."""
        return json.loads(self.data or "null")

    @property
    def net_worth(self) -> Decimal:
        """``new_net_worth`` of a ``portfolio.networth.updated`` frame."""
        return Decimal(self.json()["data"]["new_net_worth"])

    @classmethod
    def parse(cls, raw: bytes) -> Frame | None:
        """Parse one frame; ``None`` for a comment (heartbeat) or a ``retry:`` frame."""
        fields: dict[str, str] = {}
        for line in raw.decode().split("\n"):
            name, _, value = line.partition(":")
            if name:
                fields[name] = value.removeprefix(" ")
        if "event" not in fields:
            return None
        return cls(raw, fields.get("id"), fields["event"], fields.get("data"))


#: The SSE name of the net-worth event.
NET_WORTH: Final = "portfolio.networth.updated"


class EventStream:
    """A client's open event stream: its frames, parsed as they arrive, raw bytes kept.

    Args:
        response: The streaming ``GET /events`` response.
        label: For messages.
    """

    def __init__(self, response: httpx.Response, label: str) -> None:
        self.label = label
        self.frames: list[Frame] = []
        self.preamble_seen = asyncio.Event()
        self._response = response
        self._arrived = asyncio.Event()
        self._ended = False
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        buffer = b""
        try:
            async for chunk in self._response.aiter_bytes():
                buffer += chunk
                while b"\n\n" in buffer:
                    raw, buffer = buffer.split(b"\n\n", 1)
                    raw += b"\n\n"
                    frame = Frame.parse(raw)
                    if frame is None:
                        self.preamble_seen.set()  # the retry: frame comes first
                        continue
                    self.frames.append(frame)
                    self._arrived.set()
        finally:
            self._ended = True
            self._arrived.set()

    async def wait_for(
        self,
        condition: Callable[[list[Frame]], bool],
        what: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[Frame]:
        """Wait until ``condition(frames)`` holds; the frames received so far."""
        try:
            async with asyncio.timeout(timeout):
                while not condition(self.frames):
                    if self._ended:
                        failure = self._task.exception() if self._task.done() else None
                        if failure is not None:
                            raise failure
                        pytest.fail(f"stream {self.label} ended waiting for {what}")
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            got = "\n".join(repr(f.raw) for f in self.frames[-10:])
            pytest.fail(
                f"stream {self.label}: timed out after {timeout}s waiting for {what}; "
                f"{len(self.frames)} frames, the last ones:\n{got}"
            )
        return list(self.frames)

    async def take(self, count: int, timeout: float = 10.0) -> list[Frame]:  # noqa: ASYNC109
        """Wait for ``count`` frames in all; the first ``count``."""
        frames = await self.wait_for(lambda f: len(f) >= count, f"{count} frames", timeout)
        return frames[:count]

    async def aclose(self) -> None:
        """Stop reading (the caller closes the response)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    worker: WorkerProcess,
    user: UUID,
    *,
    last_event_id: str | None = None,
    label: str = "",
) -> AsyncIterator[EventStream]:
    """Open ``user``'s stream on ``worker`` and wait until it is subscribed.

    The app subscribes the client before it sends the ``retry:`` frame, so
    once that frame arrived, every event routed later reaches this stream.
    """
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    params = {"token": AUTH.issue(user)}
    async with client.stream(
        "GET", f"{worker.url}/events", params=params, headers=headers
    ) as response:
        if response.status_code != 200:
            await response.aread()
            worker.fail(f"/events answered {response.status_code}: {response.text}")
        stream = EventStream(response, label or f"{worker.name}/{user}")
        try:
            async with asyncio.timeout(10):
                await stream.preamble_seen.wait()
            yield stream
        finally:
            await stream.aclose()


# ------------------------------------------------------------------ Redis reachability


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a Redis server; refuses connections until `start`.

    A worker whose URL points here cannot reach Redis until the test says so,
    while the other workers, connected directly, can. `pause` holds Redis's
    replies (the worker falls behind the stream) until `resume`.
    """

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        """The Redis URL through this proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Accept connections from now on."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def pause(self) -> None:
        """Hold every reply from Redis (requests still go through)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Pass the held replies on, and every later one."""
        self._flowing.set()

    async def aclose(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        for source, sink, gate in ((reader, up_writer, None), (up_reader, writer, self._flowing)):
            task = asyncio.create_task(self._pipe(source, sink, gate))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, gate: asyncio.Event | None
    ) -> None:
        try:
            while data := await source.read(65536):
                if gate is not None:
                    await gate.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()
