"""Entries lost before a reader got to them: counted, warned about once, delivered as a gap.

Each entry carries its origin's sequence number, so a reader sees a jump
where entries of that origin were trimmed (``MAXLEN``) or deleted before it
read them. It counts them in ``statistics()["trimmed"]``, logs one warning per
streak, and delivers `eventbus.events.OrderGap` to the fleet handlers right
before the entry that showed the gap, under a position no entry has.
Hand-written entries (``w:1``, ``w:3``) play origins whose numbers jump.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
import pytest

from eventbus import DomainEvent, EventBus, codec
from eventbus.events import OrderGap
from tests.plugins.redis.conftest import MakeWorker, RedisServer
from tests.plugins.redis.helpers import (
    SNAPSHOTS,
    STREAM,
    History,
    Worker,
    holdings,
    numbered,
    publish_all,
)
from tests.support import wait_until_async


def key(position: str | None) -> tuple[int, int]:
    """An entry position as ``(ms, seq)`` (a derived ``.k`` dropped), ordered like the stream."""
    assert position is not None
    ms, _, seq = position.partition(".")[0].partition("-")
    return int(ms), int(seq)


def gaps(worker: Worker) -> list[tuple[str | None, OrderGap]]:
    """The (position, gap) pairs the worker's fleet handler received."""
    return [(p, e) for p, e in worker.fleet if isinstance(e, OrderGap)]


def lost_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The bridge's warnings about lost entries."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "eventbus.redis" and r.levelno == logging.WARNING and "lost" in r.getMessage()
    ]


def write(server: RedisServer, *entries: tuple[str, str, DomainEvent]) -> None:
    """Append hand-written entries: (stream id or ``*``, ``origin:seq``, event)."""
    with server.client() as client:
        for entry_id, header, event in entries:
            client.xadd(STREAM, {header: codec.dumps(event)}, id=entry_id)


def gate_fleet(gate: asyncio.Event) -> Callable[[EventBus], None]:
    """A ``setup`` for `workers`: a fleet handler that waits for ``gate`` (a slow reader)."""

    def setup(bus: EventBus) -> None:
        async def wait(event: DomainEvent) -> None:
            await gate.wait()

        bus.subscribe(DomainEvent, wait, fleet=True)

    return setup


class TestTrimmedPastASlowReader:
    """The issue's case: ``maxlen=100``, 5,000 events, a reader stuck in a fleet handler."""

    async def test_counted_warned_once_and_delivered_as_a_gap(
        self, workers: MakeWorker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """B loses what was trimmed while it waited: ``trimmed`` is the loss, one gap, one warning."""
        gate = asyncio.Event()
        a = await workers(maxlen=100)
        b = await workers(maxlen=100, setup=gate_fleet(gate))
        events = numbered(5000)
        with caplog.at_level(logging.INFO, logger="eventbus.redis"):
            for start in range(0, len(events), 50):
                # In steps A's own reader keeps up with: only B falls behind.
                await publish_all(a, events[start : start + 50])
                await a.delivered(start + 50)
                if not start:  # B has read A's first entries, and is stuck at the first
                    await b.delivered(1, what="B's fleet handler, stuck at the first event")
            gate.set()
            await wait_until_async(
                lambda: b.fleet and b.fleet[-1][1] == events[-1], what="B at the last event"
            )
        ((position, gap),) = gaps(b)
        at = b.fleet.index((position, gap))
        head, tail = b.fleet_events[:at], b.fleet_events[at + 1 :]
        # What B got: the start it read before it stalled, then the tail.
        assert head == events[: len(head)]
        assert tail == events[len(events) - len(tail) :]
        loss = len(events) - len(head) - len(tail)
        assert loss > 4000  # nearly all of it: the stream holds about 100
        assert b.stats()["trimmed"] == loss
        assert (gap.origin, gap.missing) == (a.plugin.origin, loss)
        # Right before the entry that showed it, between the two entries' ids.
        assert key(b.positions[at - 1]) < key(position) < key(b.positions[at + 1])
        assert len(lost_warnings(caplog)) == 1, caplog.text
        assert str(loss) in lost_warnings(caplog)[0]
        assert b.local == []  # a gap is the fleet's, never a local event
        assert a.stats()["trimmed"] == 0
        assert gaps(a) == []


class TestGapPositions:
    """Gaps sit between the entries around them, under ids that no entry has."""

    async def test_two_origins_with_a_gap_each(
        self,
        workers: MakeWorker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """``<id below>``, or ``<id>.0`` when the id below is the entry just processed."""
        x1, y1, x2, y2, x3, y3 = numbered(6)
        write(
            redis_server,
            ("5-1", "x:1", x1),
            ("5-2", "y:1", y1),
            ("5-3", "x:2", x2),
            ("5-4", "y:2", y2),
            ("6-0", "x:3", x3),
            ("6-1", "y:3", y3),
        )
        with redis_server.client() as client:
            client.xdel(STREAM, "5-3", "5-4")
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            # A projection: it replays the stream from its beginning.
            b = await workers(history=History())
        seen = [(p, (e.origin, e.missing) if isinstance(e, OrderGap) else e) for p, e in b.fleet]
        assert seen == [
            ("5-1", x1),
            ("5-2", y1),
            ("5-18446744073709551615", ("x", 1)),  # just below 6-0
            ("6-0", x3),
            ("6-0.0", ("y", 1)),  # 6-0 is taken; derived events count from .1
            ("6-1", y3),
        ]
        assert b.stats()["trimmed"] == 2
        assert len(lost_warnings(caplog)) == 1  # one streak


class TestWhatIsNotAGap:
    """New origins, repeats, and malformed entries are no gap."""

    async def test_workers_that_started_before_or_after(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """B reads from its start: A's numbers start high for it, C's at 1; neither is a gap."""
        a = await workers()
        await publish_all(a, numbered(30))
        await a.delivered(30)
        b = await workers()
        c = await workers()
        await publish_all(a, numbered(10, 30))
        await publish_all(c, numbered(10, 40))
        await b.delivered(20)
        assert gaps(b) == []
        assert b.stats()["trimmed"] == 0

    async def test_a_joiner_from_a_snapshot_knows_every_origin(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """The snapshot's table: known origins continue; a new one from 1 is no gap."""
        a = await workers(history=History(), snapshot_every=5)
        await publish_all(a, numbered(7))
        await a.delivered(7)
        await wait_until_async(lambda: a.stats()["snapshots"] == 1, what="a snapshot")
        w = await workers()  # a worker that started after the snapshot
        await publish_all(w, numbered(2, 7))
        await a.delivered(9)  # fewer than 10: no second snapshot
        b = await workers(history=History())
        assert b.history is not None
        assert b.history.restored == 5
        assert len(b.fleet) == 4  # A's 6th and 7th, W's 1st and 2nd
        assert gaps(b) == []
        assert b.stats()["trimmed"] == 0

    async def test_a_new_origin_missing_its_first_entries_is_a_gap_after_a_snapshot(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """An origin absent from the snapshot's table starts at 1: a higher first number is a gap."""
        a = await workers(history=History(), snapshot_every=5)
        await publish_all(a, numbered(5))
        await a.delivered(5)
        await wait_until_async(lambda: a.stats()["snapshots"] == 1, what="a snapshot")
        events = numbered(3, 5)
        write(redis_server, *(("*", f"w:{seq}", e) for seq, e in enumerate(events, 1)))
        await a.delivered(8)
        with redis_server.client() as client:
            ids = [entry_id for entry_id, _ in client.xrange(STREAM)]
            client.xdel(STREAM, ids[5], ids[6])  # w:1 and w:2
        b = await workers(history=History())
        ((_, gap),) = gaps(b)
        assert (gap.origin, gap.missing) == ("w", 2)
        assert b.fleet_events[-1] == events[-1]
        assert b.stats()["trimmed"] == 2

    async def test_a_table_that_misses_origins_says_so_in_the_snapshots_after_it(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """A snapshot without ``@origins`` leaves A unsure; A's snapshot says ``@complete`` 0.

        Origin ``x`` wrote before that snapshot and again after A's: B, which
        restores A's snapshot, must not take ``x:3`` for a gap of two.
        """
        x1, x2, x3 = numbered(3)
        write(redis_server, ("*", "x:1", x1), ("*", "x:2", x2))
        with redis_server.client() as client:
            (*_, (position, _)) = client.xrange(STREAM)
            ids = orjson.dumps([str(x1.event_id), str(x2.event_id)])
            client.xadd(SNAPSHOTS, {"history": ids}, id=position)  # no @origins
        a = await workers(history=History(), snapshot_every=2)
        await publish_all(a, numbered(2, 3))
        await a.delivered(2)
        await wait_until_async(lambda: a.stats()["snapshots"] == 1, what="A's snapshot")
        with redis_server.client() as client:
            (*_, (_, fields)) = client.xrange(SNAPSHOTS)
        assert fields[b"@complete"] == b"0"
        assert orjson.loads(fields[b"@origins"]) == {a.plugin.origin: 2}
        write(redis_server, ("*", "x:3", x3))
        b = await workers(history=History())
        assert b.fleet_events == [x3]
        assert b.stats()["trimmed"] == a.stats()["trimmed"] == 0

    async def test_repeats_stay_repeats(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """w:1, w:3, then w:2 and w:3 again: one gap of one, two repeats."""
        b = await workers()
        first, third, late = holdings(1), holdings(3), holdings(2)
        write(redis_server, ("*", "w:1", first), ("*", "w:3", third))
        write(redis_server, ("*", "w:2", late), ("*", "w:3", third))
        await wait_until_async(lambda: b.stats()["duplicates"] == 2, what="two repeats")
        assert [e for e in b.fleet_events if not isinstance(e, OrderGap)] == [first, third]
        assert [g.missing for _, g in gaps(b)] == [1]
        assert b.stats()["trimmed"] == 1

    async def test_a_malformed_entry_still_counts_as_read(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """w:2 cannot be decoded: skipped as malformed, and w:3 shows no gap."""
        b = await workers()
        first, third = holdings(1), holdings(3)
        write(redis_server, ("*", "w:1", first))
        with redis_server.client() as client:
            client.xadd(STREAM, {"w:2": "not json"})
        write(redis_server, ("*", "w:3", third))
        await b.delivered(2)
        assert b.fleet_events == [first, third]
        assert b.stats()["malformed"] == 1
        assert b.stats()["trimmed"] == 0


class TestStreaks:
    """One warning per streak: a streak ends when the reader is idle at the tail."""

    async def test_a_second_streak_warns_again(
        self,
        workers: MakeWorker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """w:1, w:3 (a streak); idle; w:6 (another): two warnings, three lost."""
        b = await workers(block_ms=20)
        events = numbered(3)
        with caplog.at_level(logging.INFO, logger="eventbus.redis"):
            write(redis_server, ("*", "w:1", events[0]), ("*", "w:3", events[1]))
            await wait_until_async(
                lambda: "caught up with stream" in caplog.text, what="the streak's end"
            )
            assert len(lost_warnings(caplog)) == 1
            write(redis_server, ("*", "w:6", events[2]))
            await wait_until_async(lambda: b.stats()["trimmed"] == 3, what="the second gap")
        assert len(lost_warnings(caplog)) == 2
        assert [g.missing for _, g in gaps(b)] == [1, 2]
