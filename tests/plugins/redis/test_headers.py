"""Observer headers (trace context) in stream entries, against a real redis-server.

While a bus has an observer, the bus appends with the observers' headers
(`eventbus.HeaderSequencer`); the bridge stores them as ``h:<name>`` fields
after the event's field and hands them back to ``bus.deliver`` on every
worker, its own included. Without headers an entry keeps its single field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from eventbus import DispatchObserver, DomainEvent, EventBus, FleetEntry, HeaderSequencer, codec
from eventbus.portfolio import AccountHoldingsUpdated
from eventbus_redis._headers import MAX_HEADERS, MAX_VALUE
from tests.plugins.redis.conftest import MakeWorker, RedisServer
from tests.plugins.redis.helpers import STREAM, holdings, numbered
from tests.support import wait_until_async

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class HeaderObserver(DispatchObserver):
    """Injects ``headers(event)`` into each entry; records each delivered entry's headers."""

    def __init__(self, headers: Callable[[DomainEvent], Mapping[str, Any]] | None = None) -> None:
        self._headers = headers
        self.delivered: list[tuple[DomainEvent, FleetEntry]] = []

    def publish_started(
        self, bus: EventBus, event: DomainEvent, entry: FleetEntry | None
    ) -> object:
        if entry is not None:
            self.delivered.append((event, entry))
        return None

    def inject(self, bus: EventBus, event: DomainEvent, headers: dict[str, str]) -> None:
        if self._headers is not None:
            headers.update(self._headers(event))

    def headers_of(self, event: DomainEvent) -> Mapping[str, str]:
        """The headers the entry of ``event`` was delivered with."""
        (found,) = [entry.headers for seen, entry in self.delivered if seen == event]
        return found

    async def saw(self, count: int) -> None:
        """Wait until ``count`` entries were delivered."""
        await wait_until_async(lambda: len(self.delivered) >= count, what=f"{count} entries")


def trace(event: DomainEvent) -> dict[str, str]:
    """Trace context headers that name ``event`` (its id in ``tracestate``)."""
    return {"traceparent": TRACEPARENT, "tracestate": f"eb={event.event_id.hex}"}


def raw_fields(server: RedisServer) -> list[list[bytes]]:
    """Every stream entry's field names and values, flat, in stream and field order."""
    with server.client() as client:
        reply = client.xrange(STREAM)
    return [[part for pair in fields.items() for part in pair] for _, fields in reply]


def observed(observer: DispatchObserver) -> Callable[[EventBus], None]:
    """A ``setup`` for `MakeWorker` that registers ``observer``."""
    return lambda bus: bus.add_observer(observer)


class TestHeadersAcrossWorkers:
    """Headers a publishing worker's observers inject reach every worker's observers."""

    async def test_delivered_with_the_entry_everywhere(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """B (another worker) and A (its own entry, from the writer's memory) get the headers."""
        on_a, on_b = HeaderObserver(trace), HeaderObserver()
        a = await workers(setup=observed(on_a))
        await workers(setup=observed(on_b))
        assert isinstance(a.bus.sequencer, HeaderSequencer)
        event = holdings(1)
        await a.bus.publish(event)
        await on_a.saw(1)
        await on_b.saw(1)
        assert on_b.headers_of(event) == trace(event)
        assert on_a.headers_of(event) == trace(event)
        [(seen_on_a, entry_on_a)] = on_a.delivered
        assert seen_on_a is event  # the writer's own event: not decoded again
        assert entry_on_a.local
        assert not on_b.delivered[0][1].local
        assert a.stats()["own"] == 1
        [fields] = raw_fields(redis_server)
        assert fields[0].endswith(b":1")
        assert fields[2:] == [
            b"h:traceparent",
            TRACEPARENT.encode(),
            b"h:tracestate",
            f"eb={event.event_id.hex}".encode(),
        ]

    async def test_an_own_entry_the_writer_forgot_is_read_from_the_stream(
        self, workers: MakeWorker
    ) -> None:
        """Past ``buffer_size`` the writer forgets its events: headers come from the entry."""
        on_a = HeaderObserver(trace)
        a = await workers(setup=observed(on_a), buffer_size=1)
        events = numbered(3)
        for event in events:
            await a.bus.publish(event)
            await on_a.saw(events.index(event) + 1)
        assert [entry.headers for _, entry in on_a.delivered] == [trace(e) for e in events]

    async def test_a_batch_mixing_entries_with_and_without_headers(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """One append of entries with and without headers keeps their order and fields."""

        def every_other(event: DomainEvent) -> dict[str, str]:
            assert isinstance(event, AccountHoldingsUpdated)
            return trace(event) if event.holdings_count % 2 else {}

        on_a, on_b = HeaderObserver(every_other), HeaderObserver()
        a = await workers(setup=observed(on_a))
        b = await workers(setup=observed(on_b))
        events = numbered(200)
        for event in events:  # no await in between: the writer takes them as one batch
            a.bus.publish_sync(event)
        await on_b.saw(200)
        await b.delivered(200)
        assert b.fleet_events == events
        for event in events:
            assert on_b.headers_of(event) == every_other(event)
        assert [len(fields) for fields in raw_fields(redis_server)] == [
            6 if every_other(event) else 2 for event in events
        ]
        assert a.stats()["sent"] == 200


class TestEntryShape:
    """What an entry holds with and without observers."""

    async def test_no_observer_keeps_one_field(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """Without observers the bus calls append: the single-field fast path."""
        a = await workers()
        await a.bus.publish(holdings(1))
        await a.delivered(1)
        assert [len(fields) for fields in raw_fields(redis_server)] == [2]

    async def test_an_observer_that_injects_nothing_keeps_one_field(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """Empty headers are the plain entry; deliveries then see no headers."""
        on_a = HeaderObserver()
        a = await workers(setup=observed(on_a))
        await a.bus.publish(holdings(1))
        await on_a.saw(1)
        assert [len(fields) for fields in raw_fields(redis_server)] == [2]
        assert on_a.delivered[0][1].headers == {}

    async def test_the_writer_keeps_only_well_formed_headers(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """Oversized, non-ASCII, badly named or non-str headers are dropped; at most 8 kept."""
        garbage: dict[str, Any] = {
            "traceparent": TRACEPARENT,
            "huge": "x" * (MAX_VALUE + 1),
            "unicode": "caf\u00e9",
            "control": "a\nb",
            "bad name": "v",
            "": "empty name",
            "n" * 65: "long name",
            "number": 7,
        }
        garbage.update({f"k{i}": str(i) for i in range(20)})
        on_a, on_b = HeaderObserver(lambda e: garbage), HeaderObserver()
        a = await workers(setup=observed(on_a))
        await workers(setup=observed(on_b))
        event = holdings(1)
        await a.bus.publish(event)
        await on_b.saw(1)
        expected = {"traceparent": TRACEPARENT, **{f"k{i}": str(i) for i in range(7)}}
        assert len(expected) == MAX_HEADERS
        assert on_b.headers_of(event) == expected
        await on_a.saw(1)
        assert on_a.headers_of(event) == expected
        assert len(raw_fields(redis_server)[0]) == 2 + 2 * MAX_HEADERS


class TestHandWrittenEntries:
    """Readers accept both shapes, and ignore header fields they cannot trust."""

    @pytest.mark.parametrize(
        ("extra", "expected"),
        [
            ({b"h:traceparent": TRACEPARENT.encode()}, {"traceparent": TRACEPARENT}),
            ({b"h:traceparent": b"x" * (MAX_VALUE + 1)}, {}),
            ({b"h:traceparent": "caf\u00e9".encode()}, {}),
            ({b"h:traceparent": b"\x00\xff"}, {}),
            ({b"h:bad name": b"v", b"h:": b"v", b"h:ok": b"v"}, {"ok": "v"}),
            ({b"other": b"field", b"h:ok": b"v"}, {"ok": "v"}),
            ({b"h:" + b"n" * 10_000: b"v"}, {}),
            ({b"h:k%d" % i: b"v" for i in range(50)}, {f"k{i}": "v" for i in range(MAX_HEADERS)}),
        ],
        ids=[
            "traceparent",
            "oversized",
            "non-ascii",
            "binary",
            "bad-names",
            "unknown-field",
            "huge-name",
            "too-many",
        ],
    )
    async def test_headers_of_a_hand_written_entry(
        self,
        workers: MakeWorker,
        redis_server: RedisServer,
        extra: dict[bytes, bytes],
        expected: dict[str, str],
    ) -> None:
        """The event is delivered either way, with the well-formed headers only."""
        on_b = HeaderObserver()
        b = await workers(setup=observed(on_b))
        event = holdings(1)
        with redis_server.client() as client:
            client.xadd(STREAM, {b"w:1": codec.dumps(event), **extra})
        await on_b.saw(1)
        assert b.fleet_events == [event]
        assert on_b.headers_of(event) == expected
        assert b.stats()["malformed"] == 0

    async def test_a_header_field_first_is_malformed(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """The event's ``<origin>:<seq>`` field comes first; otherwise the entry is skipped."""
        b = await workers()
        first, good = holdings(1), holdings(2)
        with redis_server.client() as client:
            client.xadd(STREAM, {b"h:traceparent": TRACEPARENT, b"w:1": codec.dumps(first)})
            client.xadd(STREAM, {b"w:2": codec.dumps(good)})
        await b.delivered(1)
        assert b.fleet_events == [good]
        assert b.stats()["malformed"] == 1


class TestWithoutScripts:
    """A server that refuses scripts gets MULTI/EXEC, headers included."""

    async def test_headers_through_multi_exec(
        self, workers: MakeWorker, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A user denied EVAL/EVALSHA appends entries with their header fields all the same."""
        with redis_server.client() as client:
            client.execute_command(
                "ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "&*", "+@all", "-@scripting"
            )
        url = f"redis://noscripts:pw@127.0.0.1:{redis_server.port}/0"
        on_a, on_b = HeaderObserver(trace), HeaderObserver()
        a = await workers(url=url, setup=observed(on_a))
        await workers(setup=observed(on_b))
        events = numbered(3)
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            for event in events:
                a.bus.publish_sync(event)
            await on_b.saw(3)
        assert [entry.headers for _, entry in on_b.delivered] == [trace(e) for e in events]
        assert [len(fields) for fields in raw_fields(redis_server)] == [6, 6, 6]
        assert "appending with MULTI/EXEC" in caplog.text
