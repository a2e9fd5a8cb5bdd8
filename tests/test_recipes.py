"""The recipes in the docs, run: docs/examples/fastapi_app.py (shown in docs/fastapi.md).

The FastAPI app is driven through FastAPI's TestClient (lifespan included) for
its HTTP behaviour, and served by a real uvicorn on a loopback port for its
SSE stream.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from eventbus import EventBus, InvalidEventError
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus.testing import capture_events
from eventbus_sse import SignedTokenAuth, SSEPlugin
from tests.support import free_port, wait_until_async

RECIPE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "fastapi_app.py"
SECRET = b"a test secret of 32 bytes, fixed"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app", RECIPE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: pydantic resolves names through it
    spec.loader.exec_module(module)
    return module


recipe = _load()


def _body(**changes: Any) -> dict[str, Any]:
    body = {
        "user_id": str(uuid4()),
        "account_id": str(uuid4()),
        "previous_balance": "100.00",
        "new_balance": "142.50",
        "currency": "EUR",
    }
    return body | changes


@pytest.fixture(name="bus")
def _bus() -> EventBus:
    """A bus with the SSE plugin only (the recipe mounts its stream)."""
    bus = EventBus(raise_errors=True)
    bus.register_plugin(SSEPlugin(), name="sse")
    return bus


@pytest.fixture(name="client")
def _client(bus: EventBus) -> Iterator[TestClient]:
    """The recipe's app, its lifespan running (so the bus is started)."""
    with TestClient(recipe.create_app(bus, secret=SECRET)) as client:
        yield client


class TestPublishing:
    """``POST /balances`` publishes an `AccountBalanceUpdated`."""

    def test_a_valid_change_is_published(self, bus: EventBus, client: TestClient) -> None:
        """202, with the id of the event every handler received, amounts exact."""
        with capture_events(bus, AccountBalanceUpdated) as events:
            response = client.post("/balances", json=_body())
        assert response.status_code == 202, response.text
        (event,) = events
        assert response.json() == {"event_id": str(event.event_id)}
        assert (event.previous_balance, event.new_balance) == (Decimal("100.00"), Decimal("142.50"))
        assert event.delta == Decimal("42.50")

    def test_the_default_bus_loads_the_installed_plugins(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``create_app()`` as uvicorn's factory calls it: every plugin, the secret from env."""
        monkeypatch.setenv("TOKEN_SECRET", SECRET.decode())
        monkeypatch.delenv("EVENTBUS_REDIS_URL", raising=False)
        app = recipe.create_app()
        with TestClient(app) as client:
            response = client.post("/balances", json=_body(new_balance="7"))
        assert response.status_code == 202, response.text


class TestInvalidEvents:
    """An event that fails its own validation is answered 422, naming the field."""

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"currency": "eur"}, "currency"),  # 3 uppercase letters
            ({"new_balance": "1" * 41}, "new_balance"),  # more digits than exact money allows
        ],
    )
    def test_invalid_event_is_422(
        self, bus: EventBus, client: TestClient, change: dict[str, str], field: str
    ) -> None:
        """The body has FastAPI's shape; nothing is published."""
        with capture_events(bus) as events:
            response = client.post("/balances", json=_body(**change))
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["type"] == "invalid_event"
        assert error["loc"] == ["body", field]
        assert error["msg"].startswith(f"AccountBalanceUpdated.{field}: ")
        assert events == []

    def test_a_malformed_body_is_still_fastapis_422(self, client: TestClient) -> None:
        """A body that is not a balance change at all never reaches the event."""
        response = client.post("/balances", json=_body(user_id="not a uuid"))
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "user_id"]
        assert error["type"] != "invalid_event"

    def test_without_the_handler_it_would_be_a_500(self, bus: EventBus) -> None:
        """The recipe's exception handler is what turns the error into a 422."""
        app = recipe.create_app(bus, secret=SECRET)
        assert app.exception_handlers.pop(InvalidEventError) is not None
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.post("/balances", json=_body(currency="eur"))
        assert response.status_code == 500


class TestStream:
    """The mounted SSE stream, served by uvicorn, carries what the endpoint publishes."""

    async def test_a_published_change_reaches_its_users_stream(self, bus: EventBus) -> None:
        """``GET /events/?token=`` (the recipe's URL) streams the user's balance update."""
        app: FastAPI = recipe.create_app(bus, secret=SECRET)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        try:
            await wait_until_async(lambda: server.started, timeout=20, what="uvicorn")
            user = uuid4()
            token = SignedTokenAuth(SECRET).issue(user)
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                async with client.stream("GET", f"/events/?token={token}") as stream:
                    assert stream.status_code == 200
                    assert stream.headers["content-type"].startswith("text/event-stream")
                    lines = stream.aiter_lines()
                    assert (await anext(lines)).startswith("retry:")  # connected
                    posted = await client.post("/balances", json=_body(user_id=str(user)))
                    assert posted.status_code == 202, posted.text
                    event_id = UUID(posted.json()["event_id"])
                    seen: list[str] = []
                    async for line in lines:
                        seen.append(line)
                        if line.startswith("data:"):
                            break
                assert "event: portfolio.balance.updated" in seen
                assert str(event_id) in seen[-1]
                unauthorized = await client.get("/events/?token=forged")
                assert unauthorized.status_code == 401
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 20)


def test_networth_follows_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the installed plugins, a balance posted over HTTP is followed by net worth."""
    monkeypatch.delenv("EVENTBUS_REDIS_URL", raising=False)
    bus = EventBus(raise_errors=True)
    bus.load_entry_points()
    with (
        TestClient(recipe.create_app(bus, secret=SECRET)) as client,
        capture_events(bus) as events,
    ):
        assert client.post("/balances", json=_body(currency="USD")).status_code == 202
    assert [type(e) for e in events] == [AccountBalanceUpdated, PortfolioNetWorthRecalculated]
