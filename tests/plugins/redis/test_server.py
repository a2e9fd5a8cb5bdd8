"""What Redis may send back: RESP3, refused scripts, "not now" replies, garbage, repeats."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
import pytest
from redis.asyncio import Redis

from eventbus import DomainEvent, EventBus, codec, event_type
from eventbus.portfolio import AccountHoldingsUpdated
from eventbus_redis import RedisBridgePlugin
from tests.plugins.redis.conftest import MakeWorker, RedisServer
from tests.plugins.redis.helpers import STREAM, Worker, holdings, numbered, publish_all
from tests.support import wait_until_async


class TestServerVariants:
    """RESP3 clients, servers that refuse scripts, and replies that mean "not now"."""

    async def test_resp3_clients(self, redis_server: RedisServer) -> None:
        """Bridges given RESP3 clients read the stream (XREAD and XINFO replies differ)."""
        workers = []
        for _ in range(2):
            bus = EventBus(raise_errors=True)
            client = Redis(host="127.0.0.1", port=redis_server.port, protocol=3)
            plugin = RedisBridgePlugin(client=client)
            worker = Worker(bus, plugin)
            worker.record()
            bus.register_plugin(plugin, name="redis")
            await bus.start()
            workers.append((worker, client))
        (a, _), (b, _) = workers
        events = numbered(20)
        await publish_all(a, events)
        await b.delivered(20)
        assert b.fleet_events == events
        for worker, client in workers:
            await worker.bus.aclose()
            await client.aclose()

    async def test_a_user_without_scripting_falls_back_to_a_pipeline(
        self,
        workers: MakeWorker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An ACL user denied EVALSHA still appends: one warning, then MULTI/EXEC."""
        with redis_server.client() as admin:
            admin.execute_command(
                "ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "+@all", "-@scripting"
            )
        url = f"redis://noscripts:pw@127.0.0.1:{redis_server.port}/0"
        a, b = await workers(url=url), await workers(url=url)
        events = numbered(10)
        await publish_all(a, events)
        await b.delivered(10)
        await a.delivered(10)
        assert b.fleet_events == a.fleet_events == events
        assert a.stats()["dropped"] == 0
        assert "refuses scripts" in caplog.text

    async def test_out_of_memory_is_retried_not_dropped(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """OOM replies hold the batch back; once memory is available again it is sent."""
        a, b = await workers(), await workers()
        events = numbered(5)
        with redis_server.client() as admin:
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", 1)
            try:
                await publish_all(a, events)
                await wait_until_async(
                    lambda: "errorstat_OOM" in admin.info("errorstats"),
                    what="the writer's append refused with OOM",
                )
                assert b.fleet == []
            finally:
                admin.config_set("maxmemory", 0)
        await b.delivered(5)
        assert b.fleet_events == events
        assert a.stats()["dropped"] == 0


@event_type("test.redis.big_int")
@dataclass(frozen=True, kw_only=True, slots=True)
class BigInt(DomainEvent):
    """A third-party event with an unbounded int (orjson refuses past 64 bits)."""

    value: int


class TestTasksSurvive:
    """Neither the writer nor the reader ends on an error it does not expect."""

    async def test_an_unencodable_event_is_dropped_and_the_writer_goes_on(
        self, workers: MakeWorker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """orjson's TypeError for a 65-bit int drops that event only; its local handlers ran."""
        a, b = await workers(), await workers()
        big = BigInt(value=2**70)
        await a.bus.publish(big)
        after = holdings()
        await a.bus.publish(after)
        await b.delivered(1)
        assert b.fleet_events == [after]
        assert a.local == [big, after]
        assert a.stats()["dropped"] == 1
        assert "cannot encode" in caplog.text

    async def test_a_reply_error_on_read_is_retried(
        self, workers: MakeWorker, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The stream key briefly holds a string (WRONGTYPE): B's reader logs, waits, goes on.

        One worker: another's reader would log the same line, and B's could
        then miss the error (its XREAD still blocked while the key changed).
        """
        b = await workers()
        with redis_server.client() as admin:
            admin.delete(STREAM)
            admin.set(STREAM, "not a stream")
            await wait_until_async(
                lambda: "cannot read the stream" in caplog.text, what="the reader's WRONGTYPE"
            )
            admin.delete(STREAM)
        event = holdings()
        await b.bus.publish(event)
        await b.delivered(1)
        assert b.fleet_events == [event]
        assert b.stats()["reconnects"] >= 1

    async def test_a_failing_fleet_handler_does_not_stop_the_reader(
        self, workers: MakeWorker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A strict bus raises its fleet handlers' failures to the reader: logged, reading goes on."""

        def fail_once(bus: EventBus) -> None:
            def fail(event: AccountHoldingsUpdated) -> None:
                if event.holdings_count == 0:
                    raise RuntimeError("boom")

            bus.subscribe(AccountHoldingsUpdated, fail, fleet=True)

        b = await workers(setup=fail_once)
        events = numbered(3)
        await publish_all(b, events)
        await b.delivered(3)
        assert b.fleet_events == events
        assert "fleet handlers failed" in caplog.text
        assert b.stats()["malformed"] == 0


class TestMalformed:
    """Garbage in the stream is logged with its id and skipped."""

    @pytest.mark.parametrize(
        "fields",
        [
            {"a:1": "{}", "b:2": "{}"},
            {"someone": "{}"},
            {"someone:1": "not json"},
            {"someone:x": "{}"},
            {"someone:1": '{"type": "no.such.event"}'},
        ],
        ids=["two-fields", "no-seq", "bad-json", "bad-seq", "unknown-type"],
    )
    async def test_garbage_is_logged_and_skipped(
        self,
        workers: MakeWorker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
        fields: dict[str, str],
    ) -> None:
        """The reader logs the entry's stream id, skips it, and delivers what follows."""
        a, b = await workers(), await workers()
        with redis_server.client() as client:
            bad_id = client.xadd(STREAM, fields).decode()
        good = holdings()
        with caplog.at_level(logging.WARNING, logger="eventbus.redis"):
            await a.bus.publish(good)
            await b.delivered(1)
        assert b.fleet_events == [good]
        assert b.stats()["malformed"] == 1
        assert any(bad_id in r.getMessage() for r in caplog.records), caplog.text

    async def test_repeated_entries_are_delivered_once(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """An entry appended twice (a writer's retry after a lost reply) is delivered once."""
        b = await workers()
        first, second = holdings(1), holdings(2)
        with redis_server.client() as client:
            for seq, event in ((1, first), (1, first), (2, second)):
                client.xadd(STREAM, {f"w:{seq}": codec.dumps(event)})
        await b.delivered(2)
        await wait_until_async(lambda: b.stats()["duplicates"] == 1, what="one duplicate")
        assert b.fleet_events == [first, second]

    async def test_own_repeated_entries_are_delivered_once(
        self, workers: MakeWorker, redis_server: RedisServer
    ) -> None:
        """The same holds for this worker's own entries (delivered as local)."""
        a = await workers()
        first, second = holdings(1), holdings(2)
        await a.bus.publish(first)
        await a.delivered(1)
        with redis_server.client() as client:
            ((_, fields),) = client.xrange(STREAM)
            client.xadd(STREAM, fields)  # what a retry after a lost reply appends
        await a.bus.publish(second)
        await a.delivered(2)
        assert a.fleet_events == [first, second]
        assert a.stats()["duplicates"] == 1
        assert a.stats()["own"] == 2


def _huge_entries() -> list[dict[bytes, bytes]]:
    """Malformed entries of about 10 MB each, in the places an error may quote."""
    size = 10 * 2**20
    good = orjson.loads(codec.dumps(holdings()))
    unknown = {**good, "type": "x" * size}
    extra = {**good, "data": {**good["data"], "y" * size: 1}}
    bad_field = {**good, "data": {**good["data"], "user_id": "z" * size}}
    return [
        {b"w:1": orjson.dumps(unknown)},  # "unknown event type 'xxx...'"
        {b"w:1": orjson.dumps(extra)},  # "unexpected fields ['yyy...']"
        {b"w:1": orjson.dumps(bad_field)},  # the field's value in the error
        {b"w:1": b"[" * size},  # not JSON at all
        {b"o" * size + b":1": b"not json"},  # a huge origin
        {b"a:1": b"q" * (size // 2), b"b:1": b"r" * (size // 2)},  # two fields
    ]


class TestHugeMalformedEntries:
    """A 10 MB malformed entry is logged in a few hundred bytes, never whole."""

    @pytest.mark.parametrize(
        "fields",
        _huge_entries(),
        ids=["type-name", "field-name", "field-value", "not-json", "origin", "two-fields"],
    )
    async def test_the_log_record_is_small(
        self,
        workers: MakeWorker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
        fields: dict[bytes, bytes],
    ) -> None:
        """The record names the entry and its size and shows at most 200 bytes of each field."""
        b = await workers()
        with redis_server.client() as client:
            entry_id = client.xadd(STREAM, fields).decode()
        good = holdings()
        with caplog.at_level(logging.DEBUG, logger="eventbus.redis"):
            await b.bus.publish(good)
            await b.delivered(1)
        records = [r for r in caplog.records if r.name == "eventbus.redis"]
        about = [r for r in records if entry_id in r.getMessage()]
        assert about, caplog.text[:2000]
        for record in records:
            text = record.getMessage() + (record.exc_text or "")
            assert len(text) < 2_000, text[:3_000]
        assert "bytes)" in about[0].getMessage()  # the size of what was cut
