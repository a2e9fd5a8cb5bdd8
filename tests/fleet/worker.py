"""One worker of the fleet, as its own OS process, for the two-process tests.

Usage::

    python -m tests.fleet.worker --redis URL [--port P] [--bootstrap-timeout S]
        [--snapshot-every N] [--block PLUGIN ...]

It builds an `EventBus`, registers the ``networth`` plugin with the test rates
(USD base, ``EUR:USD=1.08``), loads every other entry point (logging, sse,
redis), configures the Redis bridge with ``URL``, starts the bus (which returns
once the bridge has caught up with the stream) and only then serves on
127.0.0.1 with uvicorn, printing ``ready <port>`` on stdout. ``--port 0`` (the
default) lets the OS pick the port.

Routes of the plain ASGI router:

* ``GET /events``: the SSE broadcaster's stream app (`SignedTokenAuth` with
  `SECRET`, so a token is valid on every worker);
* ``POST /publish``: a JSON balance update, or a list of them, each
  ``{"user", "account", "previous", "new", "currency"}``; each becomes an
  `AccountBalanceUpdated` (``from_change``) and is ``await bus.publish``-ed in
  order. Answers ``{"event_ids": [...]}``;
* ``GET /networth?user=U``: ``{"net_worth": "<the aggregator's figure>"}``;
* ``GET /stats``: ``{"redis": {...}, "sse": {...}}`` (the plugins' statistics);
* ``GET /ready``: 200 once serving.

It stops (closing the streams, then the bus, then the server) when its stdin
is closed, or on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from decimal import Decimal
from typing import Any, Final
from urllib.parse import parse_qs
from uuid import UUID

import uvicorn

from eventbus import EventBus
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_networth import NetWorthPlugin
from eventbus_redis import RedisBridgePlugin
from eventbus_sse import SignedTokenAuth, SSEPlugin

__all__ = ["RATES", "SECRET", "Router", "main"]

#: The HMAC secret every worker verifies tokens with.
SECRET: Final = b"fleet-test-secret-0123456789abcdef"

#: The net-worth rates of every worker: base USD, one euro is 1.08 dollars.
RATES: Final = {("EUR", "USD"): Decimal("1.08")}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger("tests.fleet.worker")


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, value: object, status: int = 200) -> None:
    await _respond(send, status, json.dumps(value).encode(), b"application/json")


async def _text(send: Send, status: int, text: str) -> None:
    await _respond(send, status, text.encode(), b"text/plain; charset=utf-8")


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def balance_update(spec: dict[str, str]) -> AccountBalanceUpdated:
    """The `AccountBalanceUpdated` a ``/publish`` item describes."""
    return AccountBalanceUpdated.from_change(
        user_id=UUID(spec["user"]),
        account_id=UUID(spec["account"]),
        previous_balance=Decimal(spec.get("previous", "0")),
        new_balance=Decimal(spec["new"]),
        currency=spec.get("currency", "USD"),
    )


class Router:
    """A plain ASGI router: the SSE app at ``/events`` beside the control endpoints.

    Args:
        bus: The worker's bus (``/publish``).
        events: The broadcaster's SSE app.
        networth: The ``networth`` plugin, or ``None`` when it is blocked.
        redis: The ``redis`` plugin (``/stats``).
        sse: The ``sse`` plugin (``/stats``).
    """

    def __init__(
        self,
        bus: EventBus,
        events: ASGIApp,
        networth: NetWorthPlugin | None,
        redis: RedisBridgePlugin,
        sse: SSEPlugin,
    ) -> None:
        self._bus = bus
        self._events = events
        self._networth = networth
        self._redis = redis
        self._sse = sse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one HTTP request (lifespan is off)."""
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/events":
            await self._events(scope, receive, send)
        elif path == "/ready":
            await _text(send, 200, "ready\n")
        elif path == "/publish" and method == "POST":
            await self._publish(await _body(receive), send)
        elif path == "/networth" and method == "GET":
            await self._net_worth(scope, send)
        elif path == "/stats" and method == "GET":
            redis, sse = self._redis.statistics(), self._sse.broadcaster.statistics()
            await _json(send, {"redis": redis, "sse": sse})
        else:
            await _text(send, 404, f"no route {method} {path}\n")

    async def _publish(self, body: bytes, send: Send) -> None:
        try:
            raw = json.loads(body)
            specs: list[dict[str, str]] = raw if isinstance(raw, list) else [raw]
            events = [balance_update(spec) for spec in specs]
        except (ValueError, KeyError, TypeError) as exc:
            await _text(send, 400, f"bad balance update: {exc}\n")
            return
        for event in events:
            await self._bus.publish(event)
        await _json(send, {"event_ids": [str(e.event_id) for e in events]})

    async def _net_worth(self, scope: Scope, send: Send) -> None:
        if self._networth is None:
            await _text(send, 404, "the networth plugin is blocked on this worker\n")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            user = UUID(query["user"][0])
        except (KeyError, ValueError) as exc:
            await _text(send, 400, f"?user=<uuid> required: {exc}\n")
            return
        await _json(send, {"net_worth": str(self._networth.aggregator.net_worth(user))})


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (the worker owns them), telling when it serves."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.serving = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.serving.set()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fleet.worker", description=__doc__)
    parser.add_argument("--redis", required=True, help="the Redis URL of the fleet")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: any free one)")
    parser.add_argument("--bootstrap-timeout", type=float, default=10.0)
    parser.add_argument("--snapshot-every", type=int, default=None)
    parser.add_argument("--block", action="append", default=[], help="a plugin not to load")
    parser.add_argument("--heartbeat", type=float, default=15.0)
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[EventBus, Router, SSEPlugin]:
    """The worker's bus, configured as ``args`` say, and its ASGI router."""
    bus = EventBus()
    for name in args.block:
        bus.block_plugin(name)
    networth = None
    if "networth" not in args.block:
        networth = NetWorthPlugin("USD", RATES)
        bus.register_plugin(networth, name="networth")  # the loader skips the name
    bus.load_entry_points()
    redis, sse = bus.get_plugin("redis"), bus.get_plugin("sse")
    if not isinstance(redis, RedisBridgePlugin) or not isinstance(sse, SSEPlugin):
        raise SystemExit(f"entry points did not load redis and sse: {bus.plugins()}")
    options: dict[str, Any] = {"bootstrap_timeout": args.bootstrap_timeout}
    if args.snapshot_every is not None:
        options["snapshot_every"] = args.snapshot_every
    redis.configure(url=args.redis, **options)
    events = sse.broadcaster.asgi_app(
        authenticate=SignedTokenAuth(SECRET), heartbeat=args.heartbeat
    )
    return bus, Router(bus, events, networth, redis, sse), sse


async def _stdin_closed(stop: asyncio.Event) -> None:
    if not stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        return  # not a pipe (a terminal, /dev/null): signals only
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()


async def main(argv: list[str] | None = None) -> None:
    """Start the bus (caught up), serve, print ``ready <port>``, run until told to stop."""
    args = _parse(argv)
    bus, app, sse = build(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(_stdin_closed(stop))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    server = _Server(config)
    async with bus:  # returns once the Redis bridge has caught up (or timed out)
        _log.info("bus started: serving on port %d", port)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        started = asyncio.create_task(server.serving.wait())
        await asyncio.wait({started, serving}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()
            raise SystemExit("uvicorn stopped before it started")
        print(f"ready {port}", flush=True)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({stopped, serving}, return_when=asyncio.FIRST_COMPLETED)
        # End the streams first: uvicorn's graceful shutdown waits for open responses.
        await sse.broadcaster.aclose()
        server.should_exit = True
        await serving
        stopped.cancel()
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("eventbus.events").setLevel(logging.WARNING)
    asyncio.run(main())
