"""``eventbus demo``: the simulator, and the real command end to end.

The end-to-end tests run ``eventbus demo`` as a real subprocess on a free
loopback port, read the URLs it prints, and connect a real HTTP client (httpx,
streaming) and a real headless Chromium to it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from eventbus import DomainEvent, EventBus, codec
from eventbus.cli._demo import DemoError, plugin_api
from eventbus.cli._demo_secret import SECRET_KEY
from eventbus.cli._simulator import DEMO_RATES, Simulator
from eventbus.portfolio import AccountBalanceUpdated, AccountHoldingsUpdated
from eventbus_sse import SignedTokenAuth
from tests.support import CHROMIUM_ARGS, RedisServer, free_port, require_binary, wait_until

URL = re.compile(r"^\s+(\S+)\s+(http://\S+/\?token=\S+)$")
SUMMARY = re.compile(
    r"^demo finished: (\d+) events published, (\d+) SSE frames sent, (\d+) dropped clients$"
)


class TestSimulator:
    """The simulated users and their syncs."""

    def test_users_have_mixed_currencies_with_demo_rates(self) -> None:
        """Every user has several accounts, in at least two currencies, all with a rate."""
        sim = Simulator(5, random.Random(7))
        assert len({user.user_id for user in sim.users}) == 5
        for user in sim.users:
            currencies = {account.currency for account in user.accounts}
            assert len(user.accounts) >= 3
            assert len(currencies) >= 2
            assert currencies <= set(DEMO_RATES)

    def test_opening_sync_starts_every_account_from_zero(self) -> None:
        """The first sync reports each account once, from 0, and the brokerage's holdings."""
        sim = Simulator(2, random.Random(1))
        events = sim.opening_sync()
        balances = [e for e in events if isinstance(e, AccountBalanceUpdated)]
        holdings = [e for e in events if isinstance(e, AccountHoldingsUpdated)]
        assert len(balances) == sum(len(user.accounts) for user in sim.users)
        assert all(e.previous_balance == 0 and e.delta == e.new_balance for e in balances)
        assert len(holdings) == 2
        assert all(e.created_count == e.holdings_count > 0 for e in holdings)

    def test_ticks_chain_balances_and_always_change_something(self) -> None:
        """Each tick syncs one account per user; previous balances chain, deltas are non-zero."""
        sim = Simulator(3, random.Random(3))
        last = {e.account_id: e for e in sim.opening_sync() if isinstance(e, AccountBalanceUpdated)}
        for _ in range(300):
            balances = [e for e in sim.tick() if isinstance(e, AccountBalanceUpdated)]
            assert len({e.user_id for e in balances}) == len(balances) == 3
            for event in balances:
                assert event.previous_balance == last[event.account_id].new_balance
                assert event.delta != 0
                if event.currency == "JPY":
                    assert event.new_balance == event.new_balance.to_integral_value()
                else:
                    assert event.new_balance.as_tuple().exponent == -2
                last[event.account_id] = event

    def test_holdings_counts_stay_consistent(self) -> None:
        """created/updated/deactivated never exceed what the account holds."""
        sim = Simulator(2, random.Random(5))
        sim.opening_sync()
        for _ in range(300):
            for event in sim.tick():
                if isinstance(event, AccountHoldingsUpdated):
                    assert event.holdings_count >= 1
                    assert event.created_count + event.updated_count <= event.holdings_count

    def test_a_seed_repeats_the_run(self) -> None:
        """The same seed gives the same users, accounts and balances."""
        first, second = Simulator(3, random.Random(42)), Simulator(3, random.Random(42))
        assert [u.user_id for u in first.users] == [u.user_id for u in second.users]
        first.opening_sync()
        second.opening_sync()
        a, b = first.tick(), second.tick()
        assert [strip(e) for e in a] == [strip(e) for e in b]


def strip(event: DomainEvent) -> dict[str, object]:
    """An event's fields without its id and timestamp (which differ run to run)."""
    fields = codec.encode_payload(event)["data"]
    assert isinstance(fields, dict)
    return {"type": type(event).__name__, **fields}


class TestPluginApi:
    """How the demo reaches plugins without importing them."""

    def test_a_missing_plugin_is_a_clear_error(self) -> None:
        """A plugin that is not loaded is named, with the likely causes."""
        with pytest.raises(DemoError, match=r"'sse' plugin is not loaded.*EVENTBUS_BLOCK_PLUGINS"):
            plugin_api(EventBus(), "sse", "demo_app")

    def test_names_come_from_the_plugins_own_package(self) -> None:
        """Public names are read from the package of the loaded plugin object."""
        bus = EventBus()
        bus.load_entry_points()
        plugin, (broadcaster_cls, demo_app) = plugin_api(bus, "sse", "Broadcaster", "demo_app")
        assert isinstance(plugin.broadcaster, broadcaster_cls)  # type: ignore[attr-defined]
        assert callable(demo_app)


# ------------------------------------------------------------------ end to end


class DemoProcess:
    """A running ``eventbus demo`` subprocess and the lines it printed."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTBUS_")} | (env or {})
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eventbus.cli", "demo", "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        # Reader threads, so neither pipe can fill up and block the demo.
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _pump(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))

    def urls(self, count: int) -> dict[str, str]:
        """Wait for the per-user URLs; return them by user name."""
        found: dict[str, str] = {}

        def printed() -> bool:  # the banner's last line starts with "Open "
            lines = list(self.out)
            found.update((m[1], m[2]) for line in lines if (m := URL.match(line)))
            return any(line.startswith("Open ") for line in lines) or self.proc.poll() is not None

        wait_until(printed, timeout=30, what="the demo's URLs")
        assert len(found) == count, self.diagnostics()
        return found

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to exit; return its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"the demo did not exit within {timeout}s\n{self.diagnostics()}")

    def summary(self) -> tuple[int, int, int]:
        """The numbers on the summary line (after exit)."""
        wait_until(lambda: any(SUMMARY.match(line) for line in self.out), timeout=5)
        (match,) = [m for line in self.out if (m := SUMMARY.match(line))]
        published, frames, dropped = (int(g) for g in match.groups())
        return published, frames, dropped

    def diagnostics(self) -> str:
        """Everything the demo printed, for failure messages."""
        return "stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err)


@pytest.fixture(name="demo_process")
def _demo_process() -> Iterator[list[DemoProcess]]:
    started: list[DemoProcess] = []
    yield started
    for demo in started:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait(10)


def start_demo(
    registry: list[DemoProcess], *args: str, env: dict[str, str] | None = None
) -> DemoProcess:
    """Start ``eventbus demo`` and remember it, so the fixture can clean up."""
    demo = DemoProcess(*args, env=env)
    registry.append(demo)
    return demo


def events_url(page_url: str) -> str:
    """The stream URL behind a demo page URL (the page's own EventSource target)."""
    return page_url.replace("/?token=", "/events?token=")


def token_of(page_url: str) -> str:
    """The token in a printed demo URL."""
    return page_url.partition("/?token=")[2]


def expiry_of(token: str) -> int:
    """The expiry (unix seconds, 0 for never) signed into a `SignedTokenAuth` token."""
    head = token.partition(".")[0]
    _, expires = struct.unpack(">16sQ", base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return int(expires)


def stream_status(url: str) -> int:
    """The status a GET of a stream URL gets (the stream, if any, is closed at once)."""
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", url) as response,
    ):
        return response.status_code


class TestDemoCommand:
    """``eventbus demo`` as a newcomer runs it."""

    def test_runs_for_a_duration_and_streams_net_worth(
        self, demo_process: list[DemoProcess]
    ) -> None:
        """A client on a printed URL receives a net-worth frame; the demo exits 0 with a summary."""
        demo = start_demo(demo_process, "--duration", "5", "--interval", "0.3", "--users", "2")
        urls = demo.urls(2)
        frames: list[str] = []
        with (
            httpx.Client(timeout=httpx.Timeout(10.0)) as client,
            client.stream("GET", events_url(next(iter(urls.values())))) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                frames.append(line)
                if line == "event: portfolio.networth.updated":
                    break
        assert "event: portfolio.networth.updated" in frames
        assert demo.wait() == 0, demo.diagnostics()
        published, sent, dropped = demo.summary()
        assert published > 0
        assert sent >= 1
        assert dropped == 0

    def test_logs_are_readable(self, demo_process: list[DemoProcess]) -> None:
        """INFO logs name the user and show the money (not just wire names)."""
        demo = start_demo(demo_process, "--duration", "1.5", "--interval", "0.2", "--seed", "1")
        assert demo.wait() == 0, demo.diagnostics()
        logs = "\n".join(demo.err)
        assert re.search(r"alice\s+linked 4 accounts", logs), logs
        sync = r"alice\s+[A-Z][\w ]+\s+-?[\d,.]+ [A-Z]{3} -> -?[\d,.]+ [A-Z]{3}"
        assert re.search(sync, logs), logs
        worth = r"alice\s+net worth [\d,]+\.\d\d USD \([+-][\d,]+\.\d\d USD\)"
        assert re.search(worth, logs), logs
        assert "portfolio.networth.updated" not in logs  # the plugin's records need --verbose

    def test_ctrl_c_shuts_down_cleanly(self, demo_process: list[DemoProcess]) -> None:
        """SIGINT stops the demo with exit code 0 and the summary line."""
        demo = start_demo(demo_process, "--interval", "0.2", "--users", "1")
        demo.urls(1)
        demo.proc.send_signal(signal.SIGINT)
        assert demo.wait() == 0, demo.diagnostics()
        assert demo.summary()[0] > 0
        assert not any("Traceback" in line for line in demo.err), demo.diagnostics()

    def test_a_taken_port_is_a_clear_error(self, demo_process: list[DemoProcess]) -> None:
        """When the port is in use the demo says so and exits 2."""
        first = start_demo(demo_process, "--users", "1")
        first.urls(1)
        clash = subprocess.run(
            [sys.executable, "-m", "eventbus.cli", "demo", "--port", str(first.port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("EVENTBUS_")},
        )
        assert clash.returncode == 2
        assert f"cannot listen on 127.0.0.1:{first.port}" in clash.stderr
        assert "--port" in clash.stderr

    def test_printed_tokens_expire_in_a_day(self, demo_process: list[DemoProcess]) -> None:
        """The URLs carry tokens with a finite lifetime, a day by default, and say so."""
        before = time.time()
        demo = start_demo(demo_process, "--users", "1", "--duration", "30")
        (page,) = demo.urls(1).values()
        assert before + 86400 <= expiry_of(token_of(page)) <= time.time() + 86400 + 2
        assert "valid for 24h" in "\n".join(demo.out)

    def test_token_ttl_sets_the_lifetime(self, demo_process: list[DemoProcess]) -> None:
        """--token-ttl 90: the printed token expires 90 s after it was issued, and works now."""
        before = time.time()
        demo = start_demo(demo_process, "--users", "1", "--token-ttl", "90", "--duration", "30")
        (page,) = demo.urls(1).values()
        assert before + 90 <= expiry_of(token_of(page)) <= time.time() + 90 + 2
        assert stream_status(events_url(page)) == 200

    def test_a_bad_token_ttl_is_a_clear_error(self, demo_process: list[DemoProcess]) -> None:
        """A lifetime past a year is refused before serving, naming ttl; exit code 2."""
        demo = start_demo(demo_process, "--users", "1", "--token-ttl", "1e30")
        assert demo.wait() == 2, demo.diagnostics()
        assert "ttl" in "\n".join(demo.err)

    def test_a_bad_redis_url_is_a_clear_error(self, demo_process: list[DemoProcess]) -> None:
        """The Redis plugin's own validation message reaches the user; exit code 2."""
        demo = start_demo(demo_process, "--redis", "http://127.0.0.1:1")
        assert demo.wait() == 2, demo.diagnostics()
        errors = "\n".join(demo.err)
        assert "EVENTBUS_REDIS_URL" in errors
        assert "redis://" in errors
        assert "Traceback" not in errors


@pytest.mark.redis
class TestDemoWithRedis:
    """``eventbus demo --redis``: two workers share one Redis stream."""

    def test_a_second_worker_streams_the_first_workers_users(
        self, demo_process: list[DemoProcess], tmp_path: Path
    ) -> None:
        """A client on worker B, holding worker A's URL, receives A's users' events."""
        server = RedisServer(require_binary("redis-server"), tmp_path)
        server.start()
        try:
            serving = start_demo(demo_process, "--redis", server.url, "--users", "0")
            serving.urls(0)  # listening and bridged before A's first sync
            syncing = start_demo(
                demo_process, "--redis", server.url, "--users", "1", "--interval", "0.3"
            )
            (page,) = syncing.urls(1).values()
            url = events_url(page).replace(f":{syncing.port}/", f":{serving.port}/")
            seen: set[str] = set()
            wanted = {"event: portfolio.balance.updated", "event: portfolio.networth.updated"}
            with (
                httpx.Client(timeout=httpx.Timeout(10.0)) as client,
                client.stream("GET", url) as response,
            ):
                assert response.status_code == 200
                for line in response.iter_lines():
                    seen.add(line)
                    if wanted <= seen:
                        break
            for demo in (syncing, serving):
                demo.proc.send_signal(signal.SIGINT)
                assert demo.wait() == 0, demo.diagnostics()
            assert serving.summary()[1] >= 2  # frames sent by B
        finally:
            server.stop()

    def test_a_late_worker_shows_the_fleets_figure_at_once(
        self, demo_process: list[DemoProcess], tmp_path: Path
    ) -> None:
        """A worker started after a user's syncs serves that user's true net worth at once.

        Its aggregator is restored from the fleet's snapshot plus a replay of
        the stream before its startup returns, so the figure its page paints
        first (``/networth``) equals the publishing worker's.
        """
        server = RedisServer(require_binary("redis-server"), tmp_path)
        server.start()
        try:
            syncing = start_demo(
                demo_process, "--redis", server.url, "--users", "1", "--interval", "3600"
            )
            (page,) = syncing.urls(1).values()  # opening syncs published; no tick for an hour
            first = page.replace("/?token=", "/networth?token=")
            with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
                expected: dict[str, str] = {}

                def derived() -> bool:
                    expected.update(client.get(first).json())
                    return Decimal(expected["net_worth"]) != 0

                wait_until(derived, timeout=20, what="the first worker's net worth")
                late = start_demo(demo_process, "--redis", server.url, "--users", "0")
                late.urls(0)  # printed only after the bus's startup returned
                url = first.replace(f":{syncing.port}/", f":{late.port}/")
                assert client.get(url).json() == expected
            for demo in (syncing, late):
                demo.proc.send_signal(signal.SIGINT)
                assert demo.wait() == 0, demo.diagnostics()
            assert "not caught up" not in "\n".join(late.err), late.diagnostics()
        finally:
            server.stop()


@pytest.mark.redis
class TestDemoSecret:
    """The demo's signing secret: random per fleet, shared through Redis, never from the URL."""

    def test_workers_share_a_random_secret_kept_in_redis(
        self, demo_process: list[DemoProcess], tmp_path: Path
    ) -> None:
        """A token forged from the URL is refused; the secret stored in Redis signs for both."""
        server = RedisServer(require_binary("redis-server"), tmp_path)
        server.start()
        try:
            first = start_demo(demo_process, "--redis", server.url, "--users", "1")
            second = start_demo(demo_process, "--redis", server.url, "--users", "0")
            (page,) = first.urls(1).values()
            second.urls(0)
            user = UUID(bytes=base64.urlsafe_b64decode(token_of(page).partition(".")[0])[:16])
            from_url = hashlib.sha256(b"eventbus-demo:" + server.url.encode()).digest()
            forged = SignedTokenAuth(from_url).issue(user)  # what knowing the URL used to give
            for demo in (first, second):
                base = f"http://127.0.0.1:{demo.port}/events?token="
                assert stream_status(base + forged) == 401
                assert stream_status(base + token_of(page)) == 200  # the printed one, anywhere
            with server.client() as redis:
                stored = redis.get(SECRET_KEY)
            assert isinstance(stored, bytes)
            assert len(stored) >= 32
            signed = SignedTokenAuth(stored).issue(user)
            for demo in (first, second):
                assert stream_status(f"http://127.0.0.1:{demo.port}/events?token={signed}") == 200
            for demo in (first, second):
                demo.proc.send_signal(signal.SIGINT)
                assert demo.wait() == 0, demo.diagnostics()
        finally:
            server.stop()

    @pytest.mark.parametrize("how", ["flag", "env"])
    def test_a_given_secret_wins(
        self, how: str, demo_process: list[DemoProcess], tmp_path: Path
    ) -> None:
        """--secret or EVENTBUS_DEMO_SECRET signs the tokens; Redis is not asked for one."""
        secret = "a shared secret, long enough"
        server = RedisServer(require_binary("redis-server"), tmp_path)
        server.start()
        try:
            args: tuple[str, ...] = ("--redis", server.url, "--users", "1")
            if how == "flag":
                demo = start_demo(demo_process, *args, "--secret", secret)
            else:
                demo = start_demo(demo_process, *args, env={"EVENTBUS_DEMO_SECRET": secret})
            (page,) = demo.urls(1).values()
            assert SignedTokenAuth(secret.encode()).verify(token_of(page)) is not None
            with server.client() as redis:
                assert redis.get(SECRET_KEY) is None
            demo.proc.send_signal(signal.SIGINT)
            assert demo.wait() == 0, demo.diagnostics()
        finally:
            server.stop()

    def test_a_short_secret_is_a_clear_error(self, demo_process: list[DemoProcess]) -> None:
        """Under 16 bytes: refused before serving, naming the flag and the variable."""
        demo = start_demo(demo_process, "--users", "1", "--secret", "short")
        assert demo.wait() == 2, demo.diagnostics()
        errors = "\n".join(demo.err)
        assert "--secret" in errors
        assert "EVENTBUS_DEMO_SECRET" in errors
        assert "Traceback" not in errors


@pytest.mark.browser
class TestDemoInBrowser:
    """The demo page in a real headless Chromium, against the real ``eventbus demo``."""

    def test_page_shows_a_live_net_worth(
        self, demo_process: list[DemoProcess], tmp_path: Path
    ) -> None:
        """The page goes live, shows a money-formatted net worth and lists updates."""
        chromium = require_binary("chromium", "chromium-browser")
        from playwright.sync_api import expect, sync_playwright

        demo = start_demo(demo_process, "--interval", "0.3", "--users", "2", "--seed", "4")
        url = next(iter(demo.urls(2).values()))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 640})
                page.goto(url)
                expect(page.locator("#status")).to_have_text("live", timeout=15_000)
                expect(page.locator("#networth")).to_have_text(MONEY, timeout=15_000)
                expect(page.locator("#networth-delta")).to_have_text(MONEY, timeout=15_000)
                expect(page.locator("#updates li").nth(5)).to_be_visible(timeout=15_000)
                page.screenshot(path=str(tmp_path / "demo.png"))
            finally:
                browser.close()
        demo.proc.send_signal(signal.SIGINT)
        assert demo.wait() == 0, demo.diagnostics()
        assert demo.summary()[1] >= 1
        # The README's screenshot is this one: EVENTBUS_DOCS_SCREENSHOT=docs/img/demo.png
        target = os.environ.get("EVENTBUS_DOCS_SCREENSHOT")
        if target:
            shutil.copyfile(tmp_path / "demo.png", target)


MONEY = re.compile(r"\d[\d,.\s]*\d")
