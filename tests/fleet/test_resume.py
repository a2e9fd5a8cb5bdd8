"""A client moves between workers: Last-Event-ID from one worker resumes on the other.

Every worker gives a frame the same id (its stream position) and the same
bytes, and keeps a resume buffer of them, so a client that read part of its
stream on A and reconnects to B with the last id it got receives exactly the
rest: nothing lost, nothing twice, no ``stream.reset``. That holds too when B
reads the stream behind A and has not routed the client's last frame yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from uuid import UUID, uuid4

import httpx
import pytest

from tests.fleet.conftest import Fleet
from tests.fleet.helpers import (
    NET_WORTH,
    Frame,
    TcpProxy,
    WorkerProcess,
    open_stream,
    update,
)
from tests.support import RedisServer, free_port

#: Real redis-server; a hard limit per test on top of every wait's own deadline.
pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

RESET = "stream.reset"

#: ``await publish(worker, account, amount)``: raise a balance of the test's user.
Publish = Callable[[WorkerProcess, UUID, int], Awaitable[None]]


class Ledger:
    """One user's two accounts (USD, EUR) and the balance updates that move them."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.user = uuid4()
        self.usd, self.eur = uuid4(), uuid4()
        self.balances: dict[UUID, Decimal] = {self.usd: Decimal(0), self.eur: Decimal(0)}

    async def publish(self, worker: WorkerProcess, account: UUID, amount: int) -> None:
        """Raise ``account`` by ``amount``, published on ``worker``."""
        currency = "USD" if account == self.usd else "EUR"
        previous = self.balances[account]
        self.balances[account] = new = previous + amount
        await worker.publish(self.client, update(self.user, account, new, previous, currency))

    @property
    def net_worth(self) -> Decimal:
        """The true net worth in USD."""
        return self.balances[self.usd] + self.balances[self.eur] * Decimal("1.08")


def assert_once_each(frames: list[Frame]) -> None:
    """No frame twice, no reset."""
    ids = [f.id for f in frames]
    assert len(ids) == len(set(ids)), f"a frame came twice: {ids}"
    assert all(f.event != RESET for f in frames), [f.raw for f in frames]


class TestResumeOnTheOtherWorker:
    """A client reads frames from A, disconnects, and reconnects to B."""

    @pytest.mark.parametrize(
        "cut", [pytest.param(5, id="after-a-root"), pytest.param(6, id="after-a-derived")]
    )
    async def test_gets_exactly_the_rest(
        self, fleet: Fleet, client: httpx.AsyncClient, cut: int
    ) -> None:
        """B sends the frames after the client's last id, then live ones: no loss, no duplicate."""
        a, b = await fleet.start_many("A", "B")
        ledger = Ledger(client)
        user, usd, eur = ledger.user, ledger.usd, ledger.eur
        async with open_stream(client, a, user, label="recorder on A") as recorder:
            async with open_stream(client, a, user, label="mover on A") as mover:
                for n in range(6):  # A and B in turn, USD and EUR
                    await ledger.publish((a, b)[n % 2], (usd, eur)[n % 2], 10 + n)
                seen = await mover.take(cut)
            last_id = seen[-1].id
            assert last_id is not None
            for n in range(4):  # published while the client is away
                await ledger.publish((b, a)[n % 2], (eur, usd)[n % 2], 100 + n)
            everything = await recorder.take(20)
            await b.wait_stat(client, "redis", "received", 10)  # B has routed every entry

            async with open_stream(client, b, user, last_event_id=last_id, label="on B") as moved:
                rest = await moved.take(20 - cut)
                assert [f.raw for f in rest] == [f.raw for f in everything[cut:]]
                await ledger.publish(b, usd, 1000)  # live frames follow, each once
                live = await moved.take(22 - cut)
                whole = await recorder.take(22)
        assert [f.raw for f in [*seen, *live]] == [f.raw for f in whole]
        assert_once_each([*seen, *live])
        assert (await b.stats(client))["sse"]["resets_sent"] == 0
        assert live[-1].event == NET_WORTH
        assert live[-1].net_worth == ledger.net_worth


class TestResumeOnALaggingWorker:
    """B reads the stream behind A (a proxy holds its Redis replies) when the client moves."""

    @pytest.mark.parametrize(
        "known", [pytest.param(True, id="user-known-to-B"), pytest.param(False, id="new-user")]
    )
    async def test_gets_exactly_the_rest_once_B_catches_up(
        self, fleet: Fleet, redis_server: RedisServer, client: httpx.AsyncClient, known: bool
    ) -> None:
        """The client's last id is ahead of B: B replays nothing, then sends what follows it.

        ``known``: B has routed older frames of the user before it fell
        behind; otherwise every frame of the user was published while B lagged.
        """
        proxy = TcpProxy(free_port(), redis_server.port)
        await proxy.start()
        try:
            a = await fleet.start("A")
            b = await fleet.start("B", url=proxy.url)
            ledger = Ledger(client)
            user, usd, eur = ledger.user, ledger.usd, ledger.eur
            async with open_stream(client, a, user, label="recorder on A") as recorder:
                if known:
                    await ledger.publish(a, usd, 5)
                    await ledger.publish(a, eur, 6)
                else:  # B routes entries, none of this user's
                    other = Ledger(client)
                    await other.publish(a, other.usd, 5)
                    await other.publish(a, other.eur, 6)
                await b.wait_stat(client, "redis", "received", 2)
                before = 4 if known else 0
                proxy.pause()  # B falls behind from here
                for n in range(3):
                    await ledger.publish(a, (usd, eur)[n % 2], 10 + n)
                everything = await recorder.take(before + 6)
                cut = before + 3  # the client saw up to a root frame B has not routed
                last_id = everything[cut - 1].id
                assert last_id is not None
                async with open_stream(
                    client, b, user, last_event_id=last_id, label="on B"
                ) as moved:
                    proxy.resume()
                    await b.wait_stat(client, "redis", "received", 5)
                    await ledger.publish(a, usd, 1000)
                    rest = await moved.take(before + 8 - cut)
                    whole = await recorder.take(before + 8)
            assert [f.raw for f in rest] == [f.raw for f in whole[cut:]]
            assert_once_each(rest)
            assert (await b.stats(client))["sse"]["resets_sent"] == 0
            assert rest[-1].net_worth == ledger.net_worth
        finally:
            await proxy.aclose()
