"""The stream's URL under Starlette and FastAPI, exactly as the docs write it.

A ``Mount("/events")`` serves the paths under ``/events/``; Starlette answers
``/events`` itself with a 307 before the app is called. A ``Route("/events")``
serves ``/events`` itself. docs/sse.md shows both recipes, each with its URL;
these tests serve both with a real uvicorn and request every ``EventSource``
URL the README and the docs show, as written.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from eventbus import EventBus
from eventbus_sse import Broadcaster, SignedTokenAuth
from tests.plugins.sse.conftest import Serve

ROOT = Path(__file__).resolve().parents[3]

#: The URL a browser opens, per recipe.
MOUNTED = "/events/?token="
ROUTED = "/events?token="

_EVENT_SOURCE = re.compile(r"""EventSource\(\s*["']([^"']*)["']""")


def _shown_urls() -> list[tuple[str, str, str]]:
    """Every ``EventSource("...")`` URL in the README and docs: (where, recipe, url).

    The recipe is ``route`` when the code block the URL is in routes with
    ``Route(``, else ``mount``.
    """
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text()
        line = 1
        for block in re.split(r"^[ \t]*```", text, flags=re.MULTILINE):
            recipe = "route" if "Route(" in block else "mount"
            for match in _EVENT_SOURCE.finditer(block):
                where = f"{page.relative_to(ROOT)}:{line + block[: match.start()].count(chr(10))}"
                found.append((where, recipe, match[1]))
            line += block.count("\n")
    return found


def _mounted(broadcaster: Broadcaster, auth: SignedTokenAuth, bus: EventBus) -> FastAPI:
    """docs/sse.md's first recipe (and docs/fastapi.md's): the stream mounted at /events."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bus:
            yield

    api = FastAPI(lifespan=lifespan)
    api.mount("/events", broadcaster.asgi_app(authenticate=auth, heartbeat=3600))
    return api


def _routed(broadcaster: Broadcaster, auth: SignedTokenAuth, bus: EventBus) -> FastAPI:
    """docs/sse.md's second recipe: the stream routed at /events."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bus:
            yield

    stream = broadcaster.asgi_app(authenticate=auth, heartbeat=3600)
    return FastAPI(lifespan=lifespan, routes=[Route("/events", stream)])


async def _opens(client: httpx.AsyncClient, url: str) -> None:
    """``url`` answers 200 with an event stream, no redirect followed."""
    async with client.stream("GET", url) as response:
        assert response.status_code == 200, (url, response.status_code)
        assert response.headers["content-type"] == "text/event-stream"
        assert not response.history
        chunks = response.aiter_raw()
        assert (await anext(chunks)).startswith(b"retry: ")


class TestDocumentedURLs:
    """What the README and docs show works exactly as written."""

    def test_every_url_shown_is_one_tested_here(self) -> None:
        """Each ``EventSource`` URL in the README and docs is the one its recipe serves."""
        shown = _shown_urls()
        assert {recipe for _, recipe, _ in shown} == {"mount", "route"}
        wrong = [
            f"{where}: {url!r} with a {recipe}"
            for where, recipe, url in shown
            if url != {"mount": MOUNTED, "route": ROUTED}[recipe]
        ]
        assert wrong == []

    async def test_mounted_url(
        self,
        serve: Serve,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        bus: EventBus,
        client: httpx.AsyncClient,
    ) -> None:
        """Mounted: ``/events/?token=`` streams; ``/events?token=`` is Starlette's 307."""
        base = await serve(_mounted(broadcaster, auth, bus), broadcaster)
        token = auth.issue(uuid4())
        await _opens(client, f"{base}{MOUNTED}{token}")
        redirect = await client.get(f"{base}{ROUTED}{token}")
        assert redirect.status_code == 307
        assert redirect.headers["location"] == f"{base}{MOUNTED}{token}"

    async def test_routed_url(
        self,
        serve: Serve,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        bus: EventBus,
        client: httpx.AsyncClient,
    ) -> None:
        """Routed: ``/events?token=`` streams; ``/events/?token=`` is the one that redirects."""
        base = await serve(_routed(broadcaster, auth, bus), broadcaster)
        token = auth.issue(uuid4())
        await _opens(client, f"{base}{ROUTED}{token}")
        redirect = await client.get(f"{base}{MOUNTED}{token}")
        assert redirect.status_code == 307
        assert redirect.headers["location"] == f"{base}{ROUTED}{token}"

    @pytest.mark.parametrize("method", ["POST", "DELETE"])
    async def test_routed_app_still_answers_other_methods_itself(
        self,
        serve: Serve,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        bus: EventBus,
        client: httpx.AsyncClient,
        method: str,
    ) -> None:
        """A Route to an ASGI app passes every method on: the stream app's own 405."""
        base = await serve(_routed(broadcaster, auth, bus), broadcaster)
        response = await client.request(method, f"{base}{ROUTED}{auth.issue(uuid4())}")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"

    async def test_starlette_mount(
        self,
        serve: Serve,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        client: httpx.AsyncClient,
    ) -> None:
        """``Starlette(routes=[Mount("/events", app=stream_app)])``, as docs/sse.md writes it."""
        stream_app = broadcaster.asgi_app(authenticate=auth, heartbeat=3600)
        base = await serve(Starlette(routes=[Mount("/events", app=stream_app)]), broadcaster)
        await _opens(client, f"{base}{MOUNTED}{auth.issue(uuid4())}")
