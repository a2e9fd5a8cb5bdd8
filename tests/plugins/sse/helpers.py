"""Helpers for the SSE tests: portfolio events, workers, a frame parser for raw streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from uuid import UUID, uuid4

import httpx

from eventbus import EventBus
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)
from eventbus_networth import NetWorthPlugin
from eventbus_sse import Broadcaster, SSEPlugin
from tests.plugins.networth.helpers import RATES, Stream
from tests.support import wait_until_async


def balance(
    user: UUID, new: str, previous: str = "0", currency: str = "USD"
) -> AccountBalanceUpdated:
    """A balance update for ``user``."""
    return AccountBalanceUpdated.from_change(
        user_id=user,
        account_id=uuid4(),
        previous_balance=Decimal(previous),
        new_balance=Decimal(new),
        currency=currency,
    )


def holdings(user: UUID, count: int = 3) -> AccountHoldingsUpdated:
    """A holdings update for ``user``."""
    return AccountHoldingsUpdated(
        user_id=user,
        account_id=uuid4(),
        holdings_count=count,
        created_count=count,
        updated_count=0,
        deactivated_count=0,
    )


def networth(user: UUID, new: str, previous: str = "0") -> PortfolioNetWorthRecalculated:
    """A net-worth change for ``user``."""
    prev, value = Decimal(previous), Decimal(new)
    return PortfolioNetWorthRecalculated(
        user_id=user,
        previous_net_worth=prev,
        new_net_worth=value,
        delta=value - prev,
        currency="USD",
        account_count=1,
    )


def worker(stream: Stream | None = None, broadcaster: Broadcaster | None = None) -> EventBus:
    """One web worker's bus: SSE and net worth, attached to ``stream`` if given."""
    bus = EventBus(raise_errors=True)
    if stream is not None:
        stream.attach(bus)
    bus.register_plugin(SSEPlugin(broadcaster or Broadcaster()), name="sse")
    bus.register_plugin(NetWorthPlugin("USD", RATES), name="networth")
    return bus


def broadcaster_of(bus: EventBus) -> Broadcaster:
    """The broadcaster the bus's ``sse`` plugin feeds."""
    plugin = bus.get_plugin("sse")
    assert isinstance(plugin, SSEPlugin)
    return plugin.broadcaster


# ------------------------------------------------------------------- reading


class SSEFrame:
    """One parsed frame (or comment) as the client saw it."""

    __slots__ = ("comment", "data", "event", "id", "retry")

    def __init__(self) -> None:
        self.id: str | None = None
        self.event: str | None = None
        self.data: str | None = None
        self.retry: int | None = None
        self.comment: str | None = None

    def __repr__(self) -> str:
        fields = ("id", "event", "retry", "comment")
        return "SSEFrame(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"


async def frames(response: httpx.Response) -> AsyncIterator[SSEFrame]:
    """Parse a text/event-stream body into frames; comments become their own frames."""
    current = SSEFrame()
    seen = False
    async for line in response.aiter_lines():
        if line == "":
            if seen:
                yield current
            current, seen = SSEFrame(), False
            continue
        seen = True
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            current.comment = value
        elif field == "id":
            current.id = value
        elif field == "event":
            current.event = value
        elif field == "data":
            current.data = value if current.data is None else current.data + "\n" + value
        elif field == "retry":
            current.retry = int(value)


async def take(
    stream: AsyncIterator[SSEFrame], count: int, *, events_only: bool = True
) -> list[SSEFrame]:
    """Read ``count`` frames (skipping comments and ``retry:`` unless ``events_only`` is off)."""
    got: list[SSEFrame] = []
    async with asyncio.timeout(10):
        async for frame in stream:
            if events_only and frame.event is None:
                continue
            got.append(frame)
            if len(got) == count:
                break
    return got


async def clients_become(broadcaster: Broadcaster, count: int) -> None:
    """Wait until ``broadcaster`` has exactly ``count`` connected clients."""
    await wait_until_async(
        lambda: broadcaster.statistics()["clients"] == count, what=f"{count} SSE clients"
    )


@contextlib.asynccontextmanager
async def listen(
    client: httpx.AsyncClient,
    url: str,
    broadcaster: Broadcaster | None = None,
    *,
    clients: int = 1,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[AsyncIterator[SSEFrame]]:
    """Open a stream (200 expected) and yield its frames.

    With ``broadcaster``, first wait until it counts ``clients`` connected
    clients, so events published next are sure to reach this one.
    """
    async with client.stream("GET", url, params=params, headers=headers) as response:
        assert response.status_code == 200, response.status_code
        stream = frames(response)
        if broadcaster is not None:
            await clients_become(broadcaster, clients)
        yield stream
