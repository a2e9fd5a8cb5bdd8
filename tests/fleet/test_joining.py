"""Workers that join late, or first reach Redis after an outage, miss nothing.

A late joiner restores the net-worth projection (a snapshot kept in Redis plus
a replay of the entries after it, or a replay of the whole stream) before its
startup returns, so its first figure and first frame are the fleet's. A
worker's reader starts where the worker started, not at the tail it sees
when it first reaches Redis, so the entries another worker flushes from its
outage buffer are delivered too.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from uuid import UUID, uuid4

import httpx
import pytest

from tests.fleet.conftest import Fleet
from tests.fleet.helpers import NET_WORTH, TcpProxy, expected_net_worth, open_stream, update
from tests.support import RedisServer, free_port

#: Real redis-server; a hard limit per test on top of every wait's own deadline.
pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

#: What the bridge logs when its startup gave up waiting to catch up.
NOT_CAUGHT_UP = "not caught up"


class TestLateJoiner:
    """Worker C starts after A and B have published a user's balances."""

    @pytest.mark.parametrize(
        "snapshot_every",
        [pytest.param(4, id="snapshot-and-replay"), pytest.param(None, id="replay-only")],
    )
    async def test_first_figure_and_first_frame_are_the_fleets(
        self,
        fleet: Fleet,
        redis_server: RedisServer,
        client: httpx.AsyncClient,
        snapshot_every: int | None,
    ) -> None:
        """C's startup returns caught up: /networth and its first net-worth frame are right."""
        args = () if snapshot_every is None else ("--snapshot-every", str(snapshot_every))
        a, b = await fleet.start_many("A", "B", args=args)
        user = uuid4()
        accounts = [(uuid4(), "USD"), (uuid4(), "EUR"), (uuid4(), "USD"), (uuid4(), "EUR")]
        balances: dict[UUID, tuple[Decimal, str]] = {}
        async with open_stream(client, a, user, label="recorder on A") as recorder:
            for n in range(10):  # A and B in turn, each account several times
                account, currency = accounts[n % len(accounts)]
                new = Decimal(100 + 17 * n)
                previous = balances.get(account, (Decimal(0), currency))[0]
                worker = (a, b)[n % 2]
                await worker.publish(client, update(user, account, new, previous, currency))
                balances[account] = (new, currency)
            figure = expected_net_worth(balances)
            for worker in (a, b):
                await worker.wait_net_worth(client, user, figure)
            history = await recorder.take(20)
            if snapshot_every is not None:
                with redis_server.client() as admin:
                    assert admin.xlen("eventbus:events:snapshots") >= 1, "no snapshot was written"

            c = await fleet.start("C", *args)  # prints ready once its startup returned
            assert await c.net_worth(client, user) == figure
            assert NOT_CAUGHT_UP not in c.log()

            # The ninth entry is after any snapshot (one per 4 entries): C replayed it.
            resume_from = history[16].id
            async with (
                open_stream(client, c, user, label="new client on C") as on_c,
                open_stream(client, c, user, last_event_id=resume_from, label="resumed") as resumed,
            ):
                account, currency = accounts[1]
                previous, _ = balances[account]
                balances[account] = (previous + 50, currency)
                await b.publish(client, update(user, account, previous + 50, previous, currency))
                fresh, replayed = await on_c.take(2), await resumed.take(5)
                live = (await recorder.take(22))[20:]
        assert [f.raw for f in fresh] == [f.raw for f in live]
        assert fresh[1].event == NET_WORTH
        assert fresh[1].net_worth == expected_net_worth(balances)
        assert [f.raw for f in replayed] == [f.raw for f in [*history[17:], *live]]
        assert await c.net_worth(client, user) == expected_net_worth(balances)


class TestReaderAfterOutage:
    """A worker started while Redis is down reads what another worker flushed after it."""

    async def test_entries_flushed_after_the_outage_are_delivered(
        self, fleet: Fleet, redis_server: RedisServer, client: httpx.AsyncClient
    ) -> None:
        """B buffers during the outage and flushes; A, reaching Redis only after that, gets all.

        A (all plugins) and A2 (no net worth: no projection, so its reader
        reads from its start position) reach Redis through a proxy that the
        test opens only once B's flush is in the stream.
        """
        b = await fleet.start("B")
        user, usd, eur = uuid4(), uuid4(), uuid4()
        proxy = TcpProxy(free_port(), redis_server.port)
        redis_server.stop()
        try:
            quick = ("--bootstrap-timeout", "0.5")
            a = await fleet.start("A", *quick, url=proxy.url)
            a2 = await fleet.start("A2", *quick, "--block", "networth", url=proxy.url)
            assert NOT_CAUGHT_UP in a.log()  # startup went on without Redis, as configured
            plan = [
                update(
                    user,
                    (usd, eur)[n % 2],
                    10 * (n + 1),
                    10 * (n - 1) if n > 1 else 0,
                    ("USD", "EUR")[n % 2],
                )
                for n in range(8)
            ]
            balances = {usd: (Decimal(70), "USD"), eur: (Decimal(80), "EUR")}
            async with contextlib.AsyncExitStack() as stack:
                on_a = await stack.enter_async_context(open_stream(client, a, user))
                on_a2 = await stack.enter_async_context(open_stream(client, a2, user))
                on_b = await stack.enter_async_context(open_stream(client, b, user))
                await b.publish(client, *plan)  # Redis is down: B buffers them
                assert (await b.stats(client))["redis"]["buffered"] == len(plan)
                assert await b.net_worth(client, user) == 0  # fleet handlers wait for the stream
                assert not on_b.frames  # and so do B's SSE clients

                redis_server.start()  # same port, empty: B reconnects and flushes
                await b.wait_stat(client, "redis", "sent", len(plan))
                got_b = await on_b.take(2 * len(plan))

                await proxy.start()  # only now can A and A2 reach Redis
                got_a = await on_a.take(2 * len(plan))
                got_a2 = await on_a2.take(len(plan))
            assert [f.raw for f in got_a] == [f.raw for f in got_b]
            assert [f.raw for f in got_a2] == [f.raw for f in got_b if f.event != NET_WORTH]
            assert got_a[-1].net_worth == expected_net_worth(balances)
            for worker in (a, b):
                assert await worker.net_worth(client, user) == expected_net_worth(balances)
            assert (await a.stats(client))["redis"]["received"] == len(plan)
            assert (await a2.stats(client))["redis"]["received"] == len(plan)
        finally:
            await proxy.aclose()
