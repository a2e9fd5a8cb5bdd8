"""``eventbus demo``: simulated account syncs feeding a live SSE dashboard.

The demo is the first-party plugins working together, wired only through the
public API: `EventBus.load_entry_points` loads them and `EventBus.get_plugin`
hands back the loaded objects. The core never imports a plugin package: the
SSE helpers the demo needs (``SignedTokenAuth``, ``demo_app``) are looked up in
the package of the plugin object the bus loaded (`plugin_api`).

On a timer, the runner publishes what the `Simulator` (module ``_simulator``)
reports for each user's account syncs; the net-worth plugin derives
`PortfolioNetWorthRecalculated`, and the SSE plugin streams all three event
types to that user's browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any, final
from uuid import UUID

from eventbus._bus import EventBus
from eventbus._priority import Priority
from eventbus.cli._demo_secret import SecretError, demo_secret
from eventbus.cli._simulator import BASE_CURRENCY, DEMO_RATES, Simulator
from eventbus.events import DomainEvent
from eventbus.exceptions import PluginError
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)

if TYPE_CHECKING:
    import uvicorn

__all__ = ["DemoError", "DemoOptions", "plugin_api", "run_demo"]

_log = logging.getLogger("eventbus.demo")


class DemoError(Exception):
    """The demo cannot run: a plugin is missing, the port is taken, ..."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Settings of one demo run (the ``eventbus demo`` flags)."""

    host: str = "127.0.0.1"
    port: int = 8000
    users: int = 3
    duration: float | None = None
    interval: float = 1.0
    redis_url: str | None = None
    seed: int | None = None
    verbose: bool = False
    token_ttl: float = 86400.0
    secret: str | None = None


# ---------------------------------------------------------------------- plugins


def plugin_api(bus: EventBus, name: str, *attrs: str) -> tuple[object, list[Any]]:
    """Return a loaded plugin and public names from that plugin's own package.

    The core never imports a plugin, so the demo asks the bus for the object it
    loaded and reads ``attrs`` from the top-level package that defined it.

    Raises:
        DemoError: The plugin is not loaded, or its package lacks a name.
    """
    plugin = bus.get_plugin(name)
    if plugin is None:
        raise DemoError(
            f"the {name!r} plugin is not loaded (is it blocked by EVENTBUS_BLOCK_PLUGINS, "
            "or is its extra not installed? try: pip install -e '.[sse]')"
        )
    package = sys.modules.get(type(plugin).__module__.partition(".")[0])
    found = []
    for attr in attrs:
        if not hasattr(package, attr):
            raise DemoError(f"the {name!r} plugin's package has no {attr!r}")
        found.append(getattr(package, attr))
    return plugin, found


def _configure_plugins(options: DemoOptions) -> None:
    # The plugins' own settings, read when load_entry_points() creates them: the
    # demo configures them the way a deployment would, never by importing them.
    os.environ["EVENTBUS_NETWORTH_BASE"] = BASE_CURRENCY
    os.environ["EVENTBUS_NETWORTH_RATES"] = ",".join(
        f"{currency}:{BASE_CURRENCY}={rate}"
        for currency, rate in DEMO_RATES.items()
        if currency != BASE_CURRENCY
    )
    if options.redis_url:
        os.environ["EVENTBUS_REDIS_URL"] = options.redis_url


def with_metrics(bus: EventBus, app: Any) -> Any:
    """``app`` plus ``GET /metrics`` from the ``prometheus`` plugin (issue 13), if it can run.

    The plugin is loaded inert; the demo enables it (it needs the
    ``prometheus`` extra: without it the demo serves no /metrics).
    """
    plugin: Any = bus.get_plugin("prometheus")
    try:
        plugin.enable()
        metrics = plugin.asgi_app()
    except (AttributeError, ImportError) as exc:
        _log.info("no /metrics: %s", exc)
        return app

    async def with_metrics(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == "/metrics":
            await metrics(scope, receive, send)
        else:
            await app(scope, receive, send)

    return with_metrics


# ----------------------------------------------------------------------- runner


def _fmt(value: Decimal, currency: str, sign: bool = False) -> str:
    return f"{value:{'+' if sign else ''},.{0 if currency == 'JPY' else 2}f} {currency}"


def _bind(host: str, port: int) -> socket.socket:
    # Bind before starting uvicorn, so a taken port is a clear error, not an exit
    # from inside the server task.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DemoError(f"cannot listen on {host}:{port} ({exc.strerror}); try --port") from exc
    return sock


@final
class _Demo:
    __slots__ = (
        "aggregator",
        "bus",
        "labels",
        "names",
        "opening",
        "options",
        "out",
        "published",
        "sim",
        "stop",
        "worth",
    )

    def __init__(self, options: DemoOptions, out: IO[str]) -> None:
        self.options = options
        self.out = out
        self.bus = EventBus()
        self.sim = Simulator(options.users, random.Random(options.seed))
        self.labels = {a.account_id: (u.name, a.label) for u in self.sim.users for a in u.accounts}
        self.names = {u.user_id: u.name for u in self.sim.users}
        self.aggregator: Any = None
        self.opening = False
        self.published = 0
        self.worth: dict[UUID, PortfolioNetWorthRecalculated] = {}
        self.stop = asyncio.Event()

    def _count(self, event: DomainEvent) -> None:
        self.published += 1

    def _remember(self, event: PortfolioNetWorthRecalculated) -> None:
        # A fleet handler: with --redis it runs on every worker, in the stream's
        # order, when the net worth is derived there (after the balance's round
        # trip through Redis); without Redis, inline, depth first.
        self.worth[event.user_id] = event
        if self.opening:
            return
        _log.info(
            "%-6s net worth %s (%s)",
            self.names.get(event.user_id, str(event.user_id)[:8]),
            _fmt(event.new_net_worth, event.currency),
            _fmt(event.delta, event.currency, sign=True),
        )

    async def _publish(self, event: DomainEvent, quiet: bool = False) -> None:
        if not quiet:
            self._log_sync(event)
        await self.bus.publish(event)

    def _log_sync(self, event: DomainEvent) -> None:
        if not isinstance(event, AccountBalanceUpdated | AccountHoldingsUpdated):
            return
        name, label = self.labels[event.account_id]
        if isinstance(event, AccountHoldingsUpdated):
            _log.info(
                "%-6s %-11s %d holdings (%d new, %d updated, %d closed)",
                *(name, label, event.holdings_count, event.created_count),
                *(event.updated_count, event.deactivated_count),
            )
            return
        _log.info(
            "%-6s %-11s %s -> %s",
            *(name, label, _fmt(event.previous_balance, event.currency)),
            _fmt(event.new_balance, event.currency),
        )

    def _load(self) -> tuple[Any, Any, Any]:
        """Load the plugins; return the SSE broadcaster, ``SignedTokenAuth`` and ``demo_app``."""
        try:
            import uvicorn  # noqa: F401  # the sse extra: fail early, with the fix
        except ImportError as exc:
            raise DemoError("the demo needs uvicorn: pip install -e '.[sse]'") from exc
        _configure_plugins(self.options)
        try:
            self.bus.load_entry_points()
        except PluginError as exc:
            raise DemoError(str(exc)) from exc
        networth, _ = plugin_api(self.bus, "networth")  # fail early and clearly if missing
        self.aggregator = getattr(networth, "aggregator", None)
        sse, (token_auth, demo_app) = plugin_api(self.bus, "sse", "SignedTokenAuth", "demo_app")
        broadcaster: Any = getattr(sse, "broadcaster", None)
        if broadcaster is None:
            raise DemoError("the 'sse' plugin has no broadcaster")
        self.bus.subscribe(DomainEvent, self._count, priority=Priority.LAST)
        self.bus.subscribe(
            PortfolioNetWorthRecalculated, self._remember, priority=Priority.LAST, fleet=True
        )
        return broadcaster, token_auth, demo_app

    async def _auth(self, token_auth: Any) -> Any:
        """The token auth, with the fleet's secret (module ``_demo_secret``); checks --token-ttl."""
        redis_url = self.options.redis_url or os.environ.get("EVENTBUS_REDIS_URL")
        try:
            auth = token_auth(await demo_secret(self.options.secret, redis_url))
            auth.issue(UUID(int=0), ttl=self.options.token_ttl)
        except (SecretError, ValueError) as exc:
            raise DemoError(str(exc)) from exc
        return auth

    def _with_state(self, app: Any, auth: Any) -> Any:
        """The demo app plus ``GET /networth?token=``: the user's figure, for the page's first paint.

        On a worker that joined late this is already the fleet's figure: the
        Redis bridge restored the aggregator from a snapshot and caught up
        before the bus's startup returned.
        """

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope.get("path") != "/networth":
                await app(scope, receive, send)
                return
            user = await auth(scope)
            if user is None or self.aggregator is None:
                status, body = 401, b'{"error":"unauthorized"}'
            else:
                status = 200
                body = b'{"net_worth":"%s","currency":"%s"}' % (
                    str(self.aggregator.net_worth(user)).encode(),
                    str(self.aggregator.base_currency).encode(),
                )
            headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return with_state

    async def run(self) -> int:
        broadcaster, token_auth, demo_app = self._load()
        sock = _bind(self.options.host, self.options.port)
        try:
            await self.bus.start()
        except Exception as exc:  # e.g. --redis without redis-py installed
            sock.close()
            raise DemoError(f"a plugin failed to start: {exc}") from exc
        try:
            auth = await self._auth(token_auth)
        except BaseException:
            sock.close()
            await self.bus.aclose()
            raise
        ready = asyncio.Event()
        app = with_metrics(self.bus, self._with_state(demo_app(broadcaster, auth), auth))
        server = _server(app, ready)
        try:
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            waiting = asyncio.create_task(ready.wait())
            await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if not ready.is_set():
                raise DemoError(f"the HTTP server failed to start: {serving.exception()!r}")
            self._listen_for_signals()
            await self._open_accounts()
            self._print_urls(auth)
            simulating = asyncio.create_task(self._simulate())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.options.duration)
            _log.info("shutting down")
            simulating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await simulating
            server.should_exit = True
        finally:
            await self.bus.aclose()  # the SSE plugin ends the streams here
        await serving
        stats = broadcaster.statistics()
        self.out.write(
            f"demo finished: {self.published} events published, "
            f"{stats.get('frames_sent', 0)} SSE frames sent, "
            f"{stats.get('dropped_clients', 0)} dropped clients\n"
        )
        self.out.flush()
        return 0

    async def _open_accounts(self) -> None:
        self.opening = True
        try:
            for event in self.sim.opening_sync():
                await self._publish(event, quiet=True)
        finally:
            self.opening = False
        for user in self.sim.users:
            _log.info("%-6s linked %d accounts", user.name, len(user.accounts))

    async def _simulate(self) -> None:
        while True:
            await asyncio.sleep(self.options.interval)
            for event in self.sim.tick():
                await self._publish(event)

    def _listen_for_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def first(sig: signal.Signals) -> None:
            # A second Ctrl-C gets the default behaviour: stop at once.
            loop.remove_signal_handler(sig)
            self.stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, first, sig)

    def _print_urls(self, auth: Any) -> None:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        base = f"http://{host}:{self.options.port}"
        self.out.write(f"eventbus demo: serving {len(self.sim.users)} users on {base}\n")
        for user in self.sim.users:
            token = auth.issue(user.user_id, ttl=self.options.token_ttl)
            self.out.write(f"  {user.name:<8} {base}/?token={token}\n")
        until = f"for {self.options.duration:g}s" if self.options.duration else "until Ctrl-C"
        if self.sim.users:
            valid = f"{self.options.token_ttl / 3600:g}h"
            self.out.write(f"Open a URL in your browser (valid for {valid}). Running {until}.\n")
        else:  # a serving-only worker: another demo on the same Redis publishes
            self.out.write(f"Open another worker's URL with port {self.options.port}. ")
            self.out.write(f"Running {until}.\n")
        self.out.flush()


def _server(app: Any, ready: asyncio.Event) -> uvicorn.Server:
    import uvicorn

    class DemoServer(uvicorn.Server):
        """uvicorn without its own signal handlers (the demo owns Ctrl-C), telling when ready."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            ready.set()

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    return DemoServer(config)


def run_demo(options: DemoOptions, out: IO[str] | None = None) -> int:
    """Run the demo until Ctrl-C or ``options.duration``; return the exit code.

    Args:
        options: The settings (see ``eventbus demo --help``).
        out: Where the URLs and the summary line go (default: standard output).
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
    # The demo logs one readable line per sync itself; the logging plugin's
    # per-event records (wire name + structured extras) are for --verbose.
    events_level = logging.DEBUG if options.verbose else logging.WARNING
    logging.getLogger("eventbus.events").setLevel(events_level)
    try:
        return asyncio.run(_Demo(options, out or sys.stdout).run())
    except DemoError as exc:
        _log.error("%s", exc)
        return 2
