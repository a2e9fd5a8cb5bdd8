"""SSE ids from the bus's positions: the same id and the same bytes on every worker.

The workers here are real buses fed by a hand-played stream (`Stream`, a
tiny `eventbus.Sequencer`): what the Redis bridge's reader does, without Redis.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from eventbus import DomainEvent, EventBus, PluginRegistrationError, Priority
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus_sse import Broadcaster, SSEPlugin, Subscriber
from tests.plugins.networth.helpers import Stream
from tests.plugins.networth.helpers import balance as account_balance
from tests.plugins.sse.helpers import balance, broadcaster_of, holdings, networth, worker

FIRST = Stream.position(0)  # "1700000000000-0"


def queued(sub: Subscriber) -> list[bytes]:
    """Everything a subscriber would send now, without consuming it."""
    return [*sub.preamble, *(f.data for f in sub._frames)]  # test-only peek


async def sent(sub: Subscriber) -> list[bytes]:
    """What the transport takes now: the preamble, then the de-duplicated live frames."""
    out, sub.preamble = sub.preamble, []
    if sub.queued:
        batch = await sub.next_batch(10.0)  # returns at once: frames are queued
        out += [f.data for f in batch or ()]
    return out


def ids_of(chunks: list[bytes]) -> list[str]:
    """The ``id:`` values of encoded frames."""
    return [c.split(b"\n", 1)[0].removeprefix(b"id: ").decode() for c in chunks]


async def two_workers(entries: int = 4) -> tuple[Stream, EventBus, EventBus, UUID]:
    """Workers A and B; ``entries`` balance updates of one user, published on both in turn."""
    stream = Stream()
    a, b = worker(stream), worker(stream)
    user, accounts = uuid4(), (uuid4(), uuid4())
    for n in range(entries):
        origin = (a, b)[n % 2]
        currency = ("USD", "EUR")[n % 2]
        await origin.publish(account_balance(user, accounts[n % 2], n // 2, n // 2 + 1, currency))
    return stream, a, b, user


class TestIds:
    """Which id a frame gets."""

    async def test_a_delivered_event_takes_its_position_and_derived_ones_follow(self) -> None:
        """Not streamed at publish; delivered, the entry's id, then <id>.1 for its net worth."""
        stream = Stream()
        bus = worker(stream)
        user = uuid4()
        sub = broadcaster_of(bus).connect(user)
        event = balance(user, "5")
        bus.publish_sync(event)
        assert queued(sub) == []  # a fleet handler: it waits for the stream
        assert [e for e, _ in stream.entries] == [event]
        await bus.deliver(event, FIRST, local=True)
        assert ids_of(queued(sub)) == [FIRST, f"{FIRST}.1"]

    def test_without_a_sequencer_ids_are_local(self) -> None:
        """One process is its own fleet: frames go out at publish, under <epoch>-<seq>."""
        bus = worker()
        broadcaster = broadcaster_of(bus)
        user = uuid4()
        sub = broadcaster.connect(user)
        bus.publish_sync(balance(user, "5"))
        assert ids_of(queued(sub)) == [f"{broadcaster.epoch}-1", f"{broadcaster.epoch}-2"]

    def test_a_type_the_sequencer_skips_streams_at_once_with_a_local_id(self) -> None:
        """No wire name, not sequenced: dispatched at publish time, as without a sequencer."""

        @dataclass(frozen=True, kw_only=True, slots=True)
        class Note(DomainEvent):
            user_id: UUID

        broadcaster = Broadcaster(encoder=lambda event: b"{}")
        broadcaster.register_mapping(Note, name="note", user=lambda e: e.user_id)
        stream = Stream()
        bus = worker(stream, broadcaster)
        user = uuid4()
        sub = broadcaster.connect(user)
        bus.publish_sync(Note(user_id=user))
        assert stream.entries == []
        assert ids_of(queued(sub)) == [f"{broadcaster.epoch}-1"]

    def test_a_standalone_broadcaster_has_no_positions(self) -> None:
        """Fed by hand, with no position source: local ids."""
        broadcaster = Broadcaster()
        user = uuid4()
        sub = broadcaster.connect(user)
        broadcaster.handle(holdings(user))
        assert ids_of(queued(sub)) == [f"{broadcaster.epoch}-1"]

    def test_the_position_source_is_checked(self) -> None:
        """A source must be callable; one broadcaster serves one source."""
        bus = EventBus()
        broadcaster = Broadcaster()
        with pytest.raises(TypeError, match="source"):
            broadcaster.bind_positions("1-0")  # type: ignore[arg-type]
        broadcaster.bind_positions(bus.current_position)
        broadcaster.bind_positions(bus.current_position)  # the same source again: fine
        with pytest.raises(RuntimeError, match="its own Broadcaster"):
            broadcaster.bind_positions(EventBus().current_position)
        other = EventBus()
        with pytest.raises(PluginRegistrationError, match="its own Broadcaster"):
            other.register_plugin(SSEPlugin(broadcaster), name="sse")
        assert other.subscriptions() == ()  # refused whole

    def test_a_malformed_position_never_reaches_the_id_line(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A position that is not a stream id is logged, and the frame gets a local id."""
        broadcaster = Broadcaster()
        broadcaster.bind_positions(lambda: "1-0\nevent: forged")
        user = uuid4()
        sub = broadcaster.connect(user)
        broadcaster.handle(holdings(user))
        assert ids_of(queued(sub)) == [f"{broadcaster.epoch}-1"]
        assert "is not a stream id" in caplog.text

    def test_the_plugin_routes_in_the_fleet_at_the_route_band(self) -> None:
        """One fleet subscription on DomainEvent at Priority.ROUTE."""
        bus = EventBus()
        bus.register_plugin(SSEPlugin(), name="sse")
        (sub,) = bus.subscriptions()
        assert (sub.event_type, sub.priority, sub.fleet) == (DomainEvent, Priority.ROUTE, True)


class TestAcrossWorkers:
    """Two workers fed the same stream: same ids, same bytes, resume on either."""

    async def test_frames_are_byte_identical_on_both_workers(self) -> None:
        """Entries published on A and on B, with derived net worth: identical frames."""
        stream, a, b, user = await two_workers()
        subs = [broadcaster_of(bus).connect(user) for bus in (a, b)]
        for bus in (a, b):
            await stream.deliver(bus)
        on_a, on_b = (queued(sub) for sub in subs)
        assert len(on_a) == 8  # four entries, each with its net worth
        assert on_a == on_b
        second = stream.position(1)
        assert ids_of(on_a)[:4] == [FIRST, f"{FIRST}.1", second, f"{second}.1"]

    async def test_resume_on_the_other_worker(self) -> None:
        """The last id seen on A replays the rest on B: nothing missed, nothing twice."""
        stream, a, b, user = await two_workers()
        for bus in (a, b):
            await stream.deliver(bus)
        everything = queued(broadcaster_of(a).connect(user, last_event_id=FIRST))
        seen = ids_of(everything)[2]  # "1700000000000-1.1": the client read up to here on A
        resumed = broadcaster_of(b).connect(user, last_event_id=seen)
        assert await sent(resumed) == everything[3:]
        assert broadcaster_of(b).statistics()["resets_sent"] == 0

    async def test_resume_on_a_worker_that_lags_behind(self) -> None:
        """B has not read the client's last entry yet: nothing replayed, the live frames
        up to that id are skipped, the rest arrive."""
        stream, a, b, user = await two_workers(entries=6)
        await stream.deliver(a)
        await stream.deliver(b, upto=2)
        on_a = queued(broadcaster_of(a).connect(user, last_event_id=FIRST))
        seen = ids_of(on_a)[4]  # "1700000000000-2.1": entry 2, which B has not delivered yet
        resumed = broadcaster_of(b).connect(user, last_event_id=seen)
        assert await sent(resumed) == []
        await stream.deliver(b)
        assert await sent(resumed) == on_a[5:]

    async def test_resume_inside_an_entry_on_a_lagging_worker(self) -> None:
        """The client saw part of an entry's frames: B sends the rest of that entry, in the
        order every worker routes them (dispatch order, whatever their k), then the others."""
        stream = Stream()
        a, b = (_deriving_two(stream) for _ in range(2))
        user = uuid4()
        for n in range(3):
            a.publish_sync(balance(user, str(n + 1), str(n)))
        await stream.deliver(a)
        await stream.deliver(b, upto=1)
        on_a = queued(broadcaster_of(a).connect(user, last_event_id=FIRST))
        seen = ids_of(on_a)[3]  # the second frame of entry 1
        assert seen.startswith(f"{stream.position(1)}.")
        resumed = broadcaster_of(b).connect(user, last_event_id=seen)
        assert await sent(resumed) == []
        await stream.deliver(b)
        assert ids_of(await sent(resumed)) == ids_of(on_a[4:])  # (this helper's ids are random)

    async def test_a_position_before_the_buffer_resets(self) -> None:
        """An unknown position older than the user's buffer: stream.reset, with the newest id."""
        stream = Stream()
        a, b = worker(stream), worker(stream, Broadcaster(buffer_size=2))
        user, account = uuid4(), uuid4()
        for n in range(3):
            a.publish_sync(account_balance(user, account, n, n + 1))
        for bus in (a, b):
            await stream.deliver(bus)
        sub = broadcaster_of(b).connect(user, last_event_id=f"{FIRST}.1")
        (reset,) = sub.preamble
        assert reset.startswith(
            b"id: %s\nevent: stream.reset\n" % f"{stream.position(2)}.1".encode()
        )
        assert b'"reason":"stale"' in reset

    async def test_a_worker_that_joined_later_resets_older_positions(self) -> None:
        """B started after entry 0: it cannot know what the client missed since then."""
        stream, a, b, user = await two_workers()
        stream.skip(b, 2)
        for bus in (a, b):
            await stream.deliver(bus)
        sub = broadcaster_of(b).connect(user, last_event_id=FIRST)
        assert len(sub.preamble) == 1
        assert b"event: stream.reset" in sub.preamble[0]

    def test_local_ids_still_resume_where_they_were_issued(self) -> None:
        """Without positions, <epoch>-<seq> ids resume on their own broadcaster only."""
        a, b = worker(), worker()
        user = uuid4()
        for bus in (a, b):
            bus.publish_sync(balance(user, "1"))
            bus.publish_sync(balance(user, "2", "1"))
        first = f"{broadcaster_of(a).epoch}-1"
        assert ids_of(queued(broadcaster_of(a).connect(user, last_event_id=first))) == [
            f"{broadcaster_of(a).epoch}-{n}" for n in (2, 3, 4)
        ]
        foreign = broadcaster_of(b).connect(user, last_event_id=first)
        assert b'"reason":"epoch"' in foreign.preamble[0]


async def three_users_entries(stream: Stream, a: EventBus, user: UUID) -> list[bytes]:
    """Entries 0-1 of ``user``, 2 of another user, 3-4 of ``user``, published on A and
    delivered there; returns ``user``'s ten frames as A streamed them."""
    recorder = broadcaster_of(a).connect(user)
    account, other = uuid4(), uuid4()
    for n, owner in enumerate((user, user, other, user, user)):
        a.publish_sync(account_balance(owner, account if owner == user else other, n, n + 1))
    await stream.deliver(a)
    return await sent(recorder)


class TestResumeWithoutTheUsersFrames:
    """B holds no frame of the user: not routed yet resumes, dropped or before B resets."""

    async def test_a_new_user_on_a_lagging_worker(self) -> None:
        """B routed another user's entries only, then fell behind: no reset, nothing twice."""
        stream = Stream()
        a, b = worker(stream), worker(stream)
        other, user, account = uuid4(), uuid4(), uuid4()
        a.publish_sync(account_balance(other, uuid4(), 0, 1))
        recorder = broadcaster_of(a).connect(user)
        for n in range(3):
            a.publish_sync(account_balance(user, account, n, n + 1))
        await stream.deliver(a)
        on_a = await sent(recorder)
        await stream.deliver(b, upto=1)  # the other user's entry: B has a newest entry
        seen = ids_of(on_a)[2]  # the root frame of entry 2, which B has not delivered
        assert seen == stream.position(2)
        resumed = broadcaster_of(b).connect(user, last_event_id=seen)
        assert await sent(resumed) == []
        await stream.deliver(b)
        assert await sent(resumed) == on_a[3:]
        assert broadcaster_of(b).statistics()["resets_sent"] == 0

    async def test_a_dropped_buffer_with_the_client_ahead_of_the_worker(self) -> None:
        """B routed the user's frames and dropped the buffer, but the client is past all
        of them: nothing it lacks was lost, so it resumes."""
        stream = Stream()
        a, b = worker(stream), worker(stream, Broadcaster(buffered_users=1))
        user = uuid4()
        on_a = await three_users_entries(stream, a, user)
        await stream.deliver(b, upto=3)  # entry 2 (another user) drops the user's buffer
        assert broadcaster_of(b).statistics()["buffered"] == 2  # the other user's frames
        seen = ids_of(on_a)[4]  # entry 3's root
        resumed = broadcaster_of(b).connect(user, last_event_id=seen)
        assert await sent(resumed) == []
        await stream.deliver(b)
        assert await sent(resumed) == on_a[5:]
        assert broadcaster_of(b).statistics()["resets_sent"] == 0

    async def test_an_evicted_user_resets(self) -> None:
        """B routed the client's id, then dropped the user's buffer: stream.reset, then
        live frames, none skipped."""
        stream = Stream()
        a, b = worker(stream), worker(stream, Broadcaster(buffered_users=1))
        user = uuid4()
        on_a = await three_users_entries(stream, a, user)
        await stream.deliver(b, upto=3)
        seen = ids_of(on_a)[2]  # entry 1's root: routed on B, then dropped
        resumed = broadcaster_of(b).connect(user, last_event_id=seen)
        assert resumed.preamble == [b'id: \nevent: stream.reset\ndata: {"reason":"stale"}\n\n']
        await stream.deliver(b)
        assert (await sent(resumed))[1:] == on_a[4:]
        assert broadcaster_of(b).statistics()["resets_sent"] == 1

    async def test_an_id_older_than_the_first_entry_the_worker_routed_resets(self) -> None:
        """B joined at entry 2 and routed only another user's entry: it cannot know what
        the user's client missed between its id and B's start."""
        stream = Stream()
        a, b = worker(stream), worker(stream)
        user = uuid4()
        on_a = await three_users_entries(stream, a, user)
        stream.skip(b, 2)
        await stream.deliver(b, upto=3)
        resumed = broadcaster_of(b).connect(user, last_event_id=ids_of(on_a)[3])  # entry 1
        assert b"event: stream.reset" in resumed.preamble[0]
        assert b'"reason":"stale"' in resumed.preamble[0]

    async def test_a_worker_that_routed_no_position_yet_resets(self) -> None:
        """Started and routed nothing: behind the client, or started after it? It resets."""
        stream = Stream()
        a, b = worker(stream), worker(stream)
        user = uuid4()
        on_a = await three_users_entries(stream, a, user)
        stream.skip(b, 3)
        resumed = broadcaster_of(b).connect(user, last_event_id=ids_of(on_a)[4])
        assert b"event: stream.reset" in resumed.preamble[0]

    async def test_resume_inside_the_entry_the_worker_is_routing(self) -> None:
        """B is between an entry's root frame and its net worth when the client, which saw
        both on A, arrives: nothing replayed, the net worth skipped, the rest sent."""
        stream = Stream()
        a, b = worker(stream), worker(stream)
        paused, gate = asyncio.Event(), asyncio.Event()

        async def hold(event: AccountBalanceUpdated) -> None:
            """After the SSE route (Priority.ROUTE), before the net worth (priority 0)."""
            paused.set()
            await gate.wait()

        b.subscribe(AccountBalanceUpdated, hold, priority=1, fleet=True)
        user, account = uuid4(), uuid4()
        recorder = broadcaster_of(a).connect(user)
        for n in range(2):
            a.publish_sync(account_balance(user, account, n, n + 1))
        await stream.deliver(a)
        on_a = await sent(recorder)
        delivery = asyncio.create_task(stream.deliver(b))
        await asyncio.wait_for(paused.wait(), 10.0)
        assert broadcaster_of(b).statistics()["buffered"] == 1  # entry 0's root only
        resumed = broadcaster_of(b).connect(user, last_event_id=f"{FIRST}.1")
        assert await sent(resumed) == []
        gate.set()
        await asyncio.wait_for(delivery, 10.0)
        assert await sent(resumed) == on_a[2:]
        assert broadcaster_of(b).statistics()["resets_sent"] == 0


def _deriving_two(stream: Stream) -> EventBus:
    """A worker whose fleet handler derives two events per balance update: a net worth
    with an async subscriber (its publish is awaited after the handler), then holdings."""
    bus = stream.attach(EventBus(raise_errors=True))
    bus.register_plugin(SSEPlugin(), name="sse")

    async def observe(event: PortfolioNetWorthRecalculated) -> None:
        """An async subscriber, so publish_sync of net worth is queued in the delivery."""

    def derive(event: AccountBalanceUpdated) -> None:
        bus.publish_sync(networth(event.user_id, str(event.new_balance)))
        bus.publish_sync(holdings(event.user_id))

    bus.subscribe(PortfolioNetWorthRecalculated, observe, fleet=True)
    bus.subscribe(AccountBalanceUpdated, derive, fleet=True)
    return bus
