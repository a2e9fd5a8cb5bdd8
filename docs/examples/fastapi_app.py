"""eventbus in a FastAPI app: the bus in the lifespan, an endpoint that publishes, SSE.

An event that fails its own validation (`InvalidEventError`) is the client's
mistake, so it is answered 422 like any other invalid request body, never 500.

Run it with ``TOKEN_SECRET=... uvicorn --factory fastapi_app:create_app``.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from eventbus import EventBus, InvalidEventError
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_sse import SignedTokenAuth, SSEPlugin


class BalanceChange(BaseModel):
    """The request body. Send amounts as strings ("12.50") to keep them exact."""

    user_id: UUID
    account_id: UUID
    previous_balance: Decimal
    new_balance: Decimal
    currency: str


class Accepted(BaseModel):
    """The response: the id of the event that was published."""

    event_id: UUID


def create_app(bus: EventBus | None = None, *, secret: bytes | None = None) -> FastAPI:
    """Build the app around ``bus`` (by default, a new one with every installed plugin).

    ``secret`` signs the stream's tokens (default: ``$TOKEN_SECRET``, 16 bytes or more).
    """
    if secret is None:
        secret = os.environ["TOKEN_SECRET"].encode()
    if bus is None:
        bus = EventBus()
        bus.load_entry_points()  # every installed plugin; redis stays inert unless configured

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bus:  # plugins start here and stop (streams end) on shutdown
            yield

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(InvalidEventError)
    async def invalid_event(request: Request, exc: InvalidEventError) -> JSONResponse:
        # The same shape as FastAPI's own validation errors.
        error = {"type": "invalid_event", "loc": ["body", exc.field], "msg": str(exc)}
        return JSONResponse({"detail": [error]}, status_code=422)

    @app.post("/balances", status_code=202)
    async def update_balance(change: BalanceChange) -> Accepted:
        event = AccountBalanceUpdated.from_change(**change.model_dump())  # may raise 422
        await bus.publish(event)
        return Accepted(event_id=event.event_id)

    # Live updates: a browser opens new EventSource("/events/?token=" + token).
    auth = SignedTokenAuth(secret)  # tokens: auth.issue(user_id)
    app.mount("/events", bus.get_plugin(SSEPlugin).broadcaster.asgi_app(authenticate=auth))
    return app
