"""One order for the fleet: concurrent publishers on two workers, identical frames everywhere.

Two worker processes on one redis-server, each serving SSE with uvicorn. Every
worker routes frames and derives net worth from the stream, in stream order,
so a frame under a given id carries the same bytes on every worker, and every
aggregator and every client ends on the true total.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections import Counter
from decimal import Decimal
from uuid import UUID, uuid4

import httpx
import pytest

from tests.fleet.conftest import Fleet
from tests.fleet.helpers import (
    NET_WORTH,
    EventStream,
    Frame,
    WorkerProcess,
    expected_net_worth,
    open_stream,
    update,
)
from tests.support import RedisServer

#: Real redis-server; a hard limit per test on top of every wait's own deadline.
pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


#: A stream position: ``<ms>-<seq>`` for an entry, ``.<k>`` after it for a derived event.
POSITION = re.compile(r"[0-9]+-[0-9]+(\.[0-9]+)?")


def by_id(frames: list[Frame]) -> dict[str | None, bytes]:
    """``{id: raw frame}``; fails on a repeated id or an id that is not a stream position."""
    counts = Counter(f.id for f in frames)
    repeated = [i for i, n in counts.items() if n > 1]
    assert not repeated, f"ids repeated on one stream: {repeated}"
    local = [f.id for f in frames if f.id is None or not POSITION.fullmatch(f.id)]
    assert not local, f"ids that are not stream positions: {local}"
    return {f.id: f.raw for f in frames}


class TestConcurrentUpdateRace:
    """Worker A publishes 100 USD and worker B 100 EUR for one user at the same moment."""

    async def test_every_worker_and_client_ends_on_the_true_total(
        self, fleet: Fleet, redis_server: RedisServer, client: httpx.AsyncClient
    ) -> None:
        """``CLIENT PAUSE 300 WRITE`` forces the race; both end on 208.00, same frames per id."""
        a, b = await fleet.start_many("A", "B")
        user, usd, eur = uuid4(), uuid4(), uuid4()
        async with (
            open_stream(client, a, user) as on_a,
            open_stream(client, b, user) as on_b,
        ):
            with redis_server.client() as admin:
                seconds, micros = admin.time()
                paused_at = seconds * 1000 + micros // 1000
                assert admin.execute_command("CLIENT", "PAUSE", "300", "WRITE")
            await asyncio.gather(
                a.publish(client, update(user, usd, 100, currency="USD")),
                b.publish(client, update(user, eur, 100, currency="EUR")),
            )
            # Two balance frames, each followed by the net worth derived from it.
            got_a, got_b = await on_a.take(4), await on_b.take(4)
        assert [f.raw for f in got_a] == [f.raw for f in got_b]
        assert by_id(got_a) == by_id(got_b)
        roots = [f.id for f in got_a if f.event != NET_WORTH]
        assert [f.id for f in got_a if f.event == NET_WORTH] == [f"{r}.1" for r in roots]
        assert got_a[-1].event == NET_WORTH
        assert got_a[-1].net_worth == Decimal("208.00")
        for worker in (a, b):
            assert await worker.net_worth(client, user) == Decimal("208.00")
        # The race was real: both entries were appended only once the pause ended.
        for root in roots:
            assert root is not None
            assert int(root.split("-")[0]) >= paused_at + 300, (root, paused_at)


class TestConcurrentLoad:
    """A few hundred updates from both workers at once, for a few users."""

    USERS = 3
    PER_WORKER = 150
    BATCH = 10

    async def test_frames_are_byte_identical_per_id_on_both_workers(
        self, fleet: Fleet, redis_server: RedisServer, client: httpx.AsyncClient
    ) -> None:
        """Each user's stream is the same bytes, in the same order, on A and on B."""
        a, b = await fleet.start_many("A", "B")
        users = [uuid4() for _ in range(self.USERS)]
        # Each worker owns two accounts per user: A's in USD, B's in EUR.
        plans = {
            a.name: self._plan(users, "USD"),
            b.name: self._plan(users, "EUR"),
        }
        balances: dict[UUID, dict[UUID, tuple[Decimal, str]]] = {u: {} for u in users}
        for plan in plans.values():
            for item in plan:
                balances[UUID(item["user"])][UUID(item["account"])] = (
                    Decimal(item["new"]),
                    item["currency"],
                )
        # Every update changes a balance, so each one gives two frames.
        frames_per_user = dict.fromkeys(users, 0)
        for plan in plans.values():
            for item in plan:
                frames_per_user[UUID(item["user"])] += 2

        async with contextlib.AsyncExitStack() as stack:
            streams: list[tuple[UUID, EventStream, EventStream]] = []
            for user in users:
                on_a = await stack.enter_async_context(open_stream(client, a, user))
                on_b = await stack.enter_async_context(open_stream(client, b, user))
                streams.append((user, on_a, on_b))
            await asyncio.gather(
                self._publish_all(client, a, plans[a.name]),
                self._publish_all(client, b, plans[b.name]),
            )
            for user, on_a, on_b in streams:
                count = frames_per_user[user]
                got_a = await on_a.take(count, timeout=20)
                got_b = await on_b.take(count, timeout=20)
                assert [f.id for f in got_a] == [f.id for f in got_b]
                assert [f.raw for f in got_a] == [f.raw for f in got_b]
                assert by_id(got_a) == by_id(got_b)
                truth = expected_net_worth(balances[user])
                assert got_a[-1].event == NET_WORTH
                assert got_a[-1].net_worth == truth
                for worker in (a, b):
                    assert await worker.net_worth(client, user) == truth
        with redis_server.client() as admin:
            entries = admin.xrange("eventbus:events")
        origins = [next(iter(fields)).rpartition(b":")[0] for _id, fields in entries]
        switches = sum(1 for x, y in itertools.pairwise(origins) if x != y)
        assert switches >= 2, f"the workers did not publish concurrently ({switches} switches)"

    def _plan(self, users: list[UUID], currency: str) -> list[dict[str, str]]:
        """PER_WORKER updates cycling over users and two accounts each, balances rising."""
        accounts = {u: (uuid4(), uuid4()) for u in users}
        last: dict[UUID, int] = {}
        plan = []
        for n in range(self.PER_WORKER):
            user = users[n % len(users)]
            account = accounts[user][(n // len(users)) % 2]
            previous = last.get(account, 0)
            last[account] = new = previous + 1 + n % 7
            plan.append(update(user, account, new, previous, currency))
        return plan

    async def _publish_all(
        self, client: httpx.AsyncClient, worker: WorkerProcess, plan: list[dict[str, str]]
    ) -> None:
        for start in range(0, len(plan), self.BATCH):
            await worker.publish(client, *plan[start : start + self.BATCH])
