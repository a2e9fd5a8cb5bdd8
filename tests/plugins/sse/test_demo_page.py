"""The demo app: its routes over HTTP, and the page in a real headless Chromium."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from uuid import uuid4

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from eventbus import EventBus
from eventbus_sse import Broadcaster, SignedTokenAuth, demo_app
from tests.plugins.sse.conftest import Serve
from tests.plugins.sse.helpers import balance, clients_become, holdings, networth
from tests.support import CHROMIUM_ARGS, require_binary


class TestDemoRoutes:
    """GET / is the page, /events the stream, anything else 404."""

    async def test_routes(
        self,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        serve: Serve,
        client: httpx.AsyncClient,
    ) -> None:
        """The page carries the element ids the contract names; /events authenticates."""
        url = await serve(demo_app(broadcaster, auth), broadcaster)
        page = await client.get(url + "/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        for element in ('id="networth"', 'id="networth-delta"', 'id="updates"', 'id="status"'):
            assert element in page.text
        assert "./events?token=" in page.text
        assert (await client.get(url + "/events")).status_code == 401
        assert (await client.get(url + "/elsewhere")).status_code == 404
        assert (await client.post(url + "/")).status_code == 405

    async def test_mounted_under_a_prefix(
        self, broadcaster: Broadcaster, auth: SignedTokenAuth
    ) -> None:
        """Mounted at /demo (root_path set, full path kept, as Starlette does), / is still the page."""
        app = demo_app(broadcaster, auth)
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/demo/", "root_path": "/demo"}
        await app(scope, receive, send)
        assert sent[0]["status"] == 200
        assert b'id="networth"' in sent[1]["body"]


@pytest.mark.browser
class TestDemoInBrowser:
    """Headless Chromium renders live updates."""

    async def test_page_shows_the_new_net_worth(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        serve: Serve,
    ) -> None:
        """Publishing events updates #networth, #networth-delta and #updates; others' events never show."""
        chromium = require_binary("chromium", "chromium-browser")
        url = await serve(demo_app(broadcaster, auth), broadcaster)
        user, stranger = uuid4(), uuid4()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{url}/?token={auth.issue(user)}")
                await expect(page.locator("#status")).to_have_text("live")
                await clients_become(broadcaster, 1)
                bus.publish_sync(networth(stranger, "999999"))
                bus.publish_sync(balance(user, "1234567.5", "1000"))
                bus.publish_sync(holdings(user, 4))
                bus.publish_sync(networth(user, "1234567.50", "1000"))
                await expect(page.locator("#networth")).to_have_text("$1,234,567.50")
                await expect(page.locator("#networth-delta")).to_have_text("+$1,233,567.50")
                await expect(page.locator("#updates li")).to_have_count(2)
                # Exact to the last digit: more digits than a float holds.
                bus.publish_sync(networth(user, "12345678901234567.89", "1234567.50"))
                await expect(page.locator("#networth")).to_have_text("$12,345,678,901,234,567.89")
                bus.publish_sync(networth(user, "-20.1", "12345678901234567.89"))
                await expect(page.locator("#networth")).to_have_text("-$20.10")
                # Shown in the currency's minor unit, rounded half-up; exact in data-value.
                bus.publish_sync(networth(user, "999.995", "-20.1"))
                await expect(page.locator("#networth")).to_have_text("$1,000.00")
                await expect(page.locator("#networth")).to_have_attribute("data-value", "999.995")
                bus.publish_sync(networth(user, "1234.5649", "999.995"))
                await expect(page.locator("#networth")).to_have_text("$1,234.56")
                bus.publish_sync(balance(user, "1234.5", "0", "JPY"))
                await expect(page.locator("#updates li").first).to_contain_text("¥1,235 (+¥1,235)")
            finally:
                await browser.close()
