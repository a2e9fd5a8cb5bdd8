"""The broadcaster without HTTP: origin-supplied ids, mappings, settings, the plugin."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from eventbus import DomainEvent, EventBus, event_type
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus_sse import Broadcaster, Held, SignedTokenAuth, SSEPlugin, Subscriber
from tests.plugins.sse.helpers import balance, holdings, networth
from tests.support import wait_until_async


def drain(sub: Subscriber) -> list[bytes]:
    """Everything a subscriber would send now: preamble, then queued frames."""
    out = list(sub.preamble)
    out += [f.data for f in sub._frames]  # test-only peek; the app uses next_batch()
    return out


def ids_of(chunks: list[bytes]) -> list[str]:
    """The ``id:`` values of encoded frames."""
    return [c.split(b"\n", 1)[0].removeprefix(b"id: ").decode() for c in chunks]


def worker(broadcaster: Broadcaster) -> EventBus:
    """A bus like one web worker's: SSE plus a handler deriving net worth from balances."""
    bus = EventBus(raise_errors=True)
    bus.register_plugin(SSEPlugin(broadcaster), name="sse")

    @bus.on(AccountBalanceUpdated)
    def derive(event: AccountBalanceUpdated) -> None:
        bus.publish_sync(networth(event.user_id, str(event.new_balance)))

    return bus


class TestOriginIds:
    """id_scope: the origin of an event (e.g. a Redis stream) supplies its SSE id."""

    def test_root_and_derived_frames_get_base_and_suffixed_ids(self) -> None:
        """The first frame gets the stream id, derived frames <id>.1, <id>.2; outside, local ids."""
        broadcaster = Broadcaster()
        bus = worker(broadcaster)
        user = uuid4()
        sub = broadcaster.connect(user)
        with broadcaster.id_scope("1718000000000-0"):
            bus.publish_sync(balance(user, "5"))
        with broadcaster.id_scope("1718000000000-1"):
            bus.publish_sync(balance(user, "7", "5"))
        bus.publish_sync(networth(user, "8", "7"))
        assert ids_of(drain(sub)) == [
            "1718000000000-0",
            "1718000000000-0.1",
            "1718000000000-1",
            "1718000000000-1.1",
            f"{broadcaster.epoch}-5",
        ]

    def test_resume_on_another_worker_reading_the_same_stream(self) -> None:
        """Two workers fed the same stream entries give the same ids, so either can resume."""
        user = uuid4()
        entries = [(f"17180000000{i:02d}-0", balance(user, str(i))) for i in range(6)]
        a, b = Broadcaster(), Broadcaster()
        for broadcaster in (a, b):
            bus = worker(broadcaster)
            for stream_id, event in entries:
                with broadcaster.id_scope(stream_id):
                    bus.publish_sync(event)
        on_a = a.connect(user, last_event_id="1718000000000-0")
        last_seen_on_a = ids_of(drain(on_a))[4]  # the client read up to here on worker A
        on_b = b.connect(user, last_event_id=last_seen_on_a)
        assert ids_of(drain(on_b)) == ids_of(drain(on_a))[5:]
        assert last_seen_on_a == "1718000000002-0.1"
        assert ids_of(drain(on_b))[0] == "1718000000003-0"

    @pytest.mark.parametrize("bad", ["", "a\nb", "1.2", "x" * 129, 17])
    def test_bad_base_id_is_refused(self, bad: object) -> None:
        """Ids that would break the frame (or collide with derived ids) raise, naming base_id."""
        with pytest.raises(ValueError, match="base_id"), Broadcaster().id_scope(bad):  # type: ignore[arg-type]
            pass


@event_type("test.sse.invoice.paid")
@dataclass(frozen=True, kw_only=True, slots=True)
class InvoicePaid(DomainEvent):
    """A third-party event with its owner under another attribute name."""

    customer: UUID


@dataclass(frozen=True, kw_only=True, slots=True)
class Unnamed(DomainEvent):
    """A DomainEvent subclass without a wire name."""

    user_id: UUID


class TestMappings:
    """Which events are streamed, and how third parties add theirs."""

    def test_third_party_event_registered_and_streamed(self) -> None:
        """register_mapping adds a name (a valid types= value) and the user function."""
        broadcaster = Broadcaster()
        broadcaster.register_mapping(InvoicePaid, user=lambda e: e.customer)
        assert "test.sse.invoice.paid" in broadcaster.event_names()
        user = uuid4()
        sub = broadcaster.connect(user, types=["test.sse.invoice.paid"])
        broadcaster.handle(InvoicePaid(customer=user))
        broadcaster.handle(balance(user, "1"))  # filtered out by types
        (frame,) = drain(sub)
        assert b"event: test.sse.invoice.paid\n" in frame

    def test_unmapped_events_are_not_streamed(self) -> None:
        """An event class without a mapping costs a lookup and sends nothing."""
        broadcaster = Broadcaster()
        user = uuid4()
        sub = broadcaster.connect(user)
        broadcaster.handle(InvoicePaid(customer=user))
        broadcaster.handle(Unnamed(user_id=user))
        assert drain(sub) == []
        assert broadcaster.statistics()["events_encoded"] == 0

    def test_subclass_uses_the_base_mapping_and_registration_refreshes_the_cache(self) -> None:
        """Lookups follow the MRO; a later registration for the subclass wins."""

        @event_type("test.sse.special.networth")
        @dataclass(frozen=True, kw_only=True, slots=True)
        class SpecialNetWorth(PortfolioNetWorthRecalculated):
            pass

        broadcaster = Broadcaster()
        user = uuid4()
        sub = broadcaster.connect(user)
        event = networth(user, "3")
        special = SpecialNetWorth(**{f: getattr(event, f) for f in event.__dataclass_fields__})
        broadcaster.handle(special)
        broadcaster.register_mapping(
            SpecialNetWorth, name="special.networth", user=lambda e: e.user_id
        )
        broadcaster.handle(special)
        names = [c.split(b"\n")[1] for c in drain(sub)]
        assert names == [b"event: portfolio.networth.updated", b"event: special.networth"]

    def test_bad_registrations_name_the_parameter(self) -> None:
        """Each wrong argument raises an error naming it."""
        broadcaster = Broadcaster()
        with pytest.raises(TypeError, match="event_cls"):
            broadcaster.register_mapping(int, user=lambda e: uuid4())  # type: ignore[type-var]
        with pytest.raises(TypeError, match="user"):
            broadcaster.register_mapping(InvoicePaid, user="customer")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="event_cls Unnamed has no wire name"):
            broadcaster.register_mapping(Unnamed, user=lambda e: e.user_id)
        custom = Broadcaster(encoder=lambda event: b"{}")
        with pytest.raises(ValueError, match="name is required"):
            custom.register_mapping(Unnamed, user=lambda e: e.user_id)
        custom.register_mapping(Unnamed, name="unnamed", user=lambda e: e.user_id)
        with pytest.raises(ValueError, match="name must be"):
            broadcaster.register_mapping(InvoicePaid, name="a,b", user=lambda e: e.customer)


class TestSettings:
    """Constructor arguments are checked."""

    @pytest.mark.parametrize(
        ("kwargs", "name"),
        [
            ({"buffer_size": -1}, "buffer_size"),
            ({"buffered_users": 0}, "buffered_users"),
            ({"queue_size": 0}, "queue_size"),
        ],
    )
    def test_bad_sizes(self, kwargs: dict[str, int], name: str) -> None:
        """Negative buffers and empty queues are refused, naming the parameter."""
        with pytest.raises(ValueError, match=name):
            Broadcaster(**kwargs)  # type: ignore[arg-type]

    def test_resume_buffers_are_bounded_per_user_and_in_users(self) -> None:
        """buffer_size frames per user; past buffered_users, the oldest buffer goes."""
        broadcaster = Broadcaster(buffer_size=2, buffered_users=2)
        a, b, c = uuid4(), uuid4(), uuid4()
        for user in (a, a, a, b, c):  # seqs 1-5; a's buffer is created first
            broadcaster.handle(balance(user, "1"))
        assert broadcaster.statistics()["buffered"] == 2  # b's and c's; a's was dropped
        gone = broadcaster.connect(a, last_event_id=f"{broadcaster.epoch}-2")
        assert b"event: stream.reset" in gone.preamble[0]
        kept = broadcaster.connect(b, last_event_id=f"{broadcaster.epoch}-4")
        assert kept.preamble == []  # resumable: nothing newer to replay
        assert broadcaster.statistics()["resets_sent"] == 1

    async def test_closed_broadcaster_refuses_clients(self) -> None:
        """After aclose(), connect() raises and statistics show no client."""
        broadcaster = Broadcaster()
        sub = broadcaster.connect(uuid4())
        await broadcaster.aclose(grace=0.01)  # nobody drives sub: the grace period lapses
        assert sub.reason == "shutdown"
        with pytest.raises(RuntimeError, match="closed"):
            broadcaster.connect(uuid4())


class TestPlugin:
    """The ``sse`` entry point."""

    async def test_loaded_by_entry_point_and_fed_by_async_publish(self) -> None:
        """load_entry_points() gives an SSEPlugin with a broadcaster; publish() reaches it."""
        bus = EventBus(raise_errors=True)
        for other in ("logging", "networth", "redis"):
            bus.block_plugin(other)
        assert "sse" in bus.load_entry_points()
        plugin = bus.get_plugin("sse")
        assert isinstance(plugin, SSEPlugin)
        user = uuid4()
        async with bus:
            sub = plugin.broadcaster.connect(user)
            await bus.publish(balance(user, "1"))
            assert len(drain(sub)) == 1

            async def transport() -> None:  # what the ASGI app does when a stream is closed
                await sub.wait_closed()
                plugin.broadcaster.disconnect(sub)

            driver = asyncio.create_task(transport())
        await driver
        assert sub.reason == "shutdown"
        assert plugin.broadcaster.statistics()["clients"] == 0

    def test_causes_reach_the_stream_before_their_effects(self) -> None:
        """A handler subscribed before the plugin derives net worth: balance still comes first."""
        bus = EventBus(raise_errors=True)

        @bus.on(AccountBalanceUpdated)
        def derive(event: AccountBalanceUpdated) -> None:
            bus.publish_sync(networth(event.user_id, str(event.new_balance)))

        broadcaster = Broadcaster()
        bus.register_plugin(SSEPlugin(broadcaster), name="sse")
        user = uuid4()
        sub = broadcaster.connect(user)
        bus.publish_sync(balance(user, "5"))
        names = [c.split(b"\n")[1] for c in drain(sub)]
        assert names == [b"event: portfolio.balance.updated", b"event: portfolio.networth.updated"]


class TestHolds:
    """hold/finish/settle: frames wait for an id assigned elsewhere (the Redis bridge's)."""

    @staticmethod
    def holding_worker(broadcaster: Broadcaster, timeout: float) -> tuple[EventBus, list[Held]]:
        """A worker that holds every balance update and finishes it, as the bridge does."""
        bus = worker(broadcaster)
        held: list[Held] = []

        @bus.on(AccountBalanceUpdated, priority=2**30)
        def hold(event: AccountBalanceUpdated) -> None:
            handle = broadcaster.hold(event, chain=bus.event_chain, timeout=timeout)
            if handle is not None:
                held.append(handle)

        bus.subscribe(AccountBalanceUpdated, broadcaster.finish, priority=-(2**30))
        return bus, held

    @classmethod
    def live(cls, timeout: float) -> tuple[Broadcaster, EventBus, list[Held], UUID, Subscriber]:
        """A broadcaster bound to the running loop, its holding worker, and one user's client."""
        broadcaster = Broadcaster()
        broadcaster.bind_loop()
        bus, held = cls.holding_worker(broadcaster, timeout)
        user = uuid4()
        return broadcaster, bus, held, user, broadcaster.connect(user)

    @staticmethod
    def names(chunks: list[bytes]) -> list[bytes]:
        """The ``event:`` lines of encoded frames."""
        return [c.split(b"\n")[1] for c in chunks]

    async def test_released_with_the_origin_id_in_order(self) -> None:
        """Nothing streams until release; then the event and its derived one get id, id.1."""
        broadcaster, bus, held, user, sub = self.live(timeout=60)
        bus.publish_sync(balance(user, "5"))
        bus.publish_sync(holdings(user))  # not held: streams at once
        assert self.names(drain(sub)) == [b"event: portfolio.holdings.updated"]
        broadcaster.release(held[0], "1718000000000-7")
        broadcaster.release(held[0], "1718000000000-9")  # idempotent
        assert ids_of(drain(sub))[1:] == ["1718000000000-7", "1718000000000-7.1"]

    async def test_settled_frames_wait_for_the_dispatch_and_keep_stream_order(self) -> None:
        """Settled while still dispatching on another thread: nothing streams until it ends,
        and a later stream entry's frame waits behind it (the caller never waits)."""
        broadcaster = Broadcaster()
        broadcaster.bind_loop()
        bus, held = self.holding_worker(broadcaster, timeout=60)
        gate = threading.Event()

        @bus.on(AccountBalanceUpdated, priority=100)
        def slow(event: AccountBalanceUpdated) -> None:
            assert gate.wait(10)

        user = uuid4()
        sub = broadcaster.connect(user)
        dispatch = asyncio.ensure_future(asyncio.to_thread(bus.publish_sync, balance(user, "5")))
        await wait_until_async(lambda: held, what="the event is held")
        broadcaster.settle(held[0], "1718000000000-3")
        with broadcaster.id_scope("1718000000000-4"):  # the next entry, from another worker
            broadcaster.handle(holdings(user))

        def derived_in_a_thread() -> None:  # a handler of that entry, via asyncio.to_thread
            with broadcaster.id_scope("1718000000000-5"):
                broadcaster.handle(holdings(user))

        await asyncio.to_thread(derived_in_a_thread)
        assert drain(sub) == []
        gate.set()
        await dispatch
        await wait_until_async(lambda: len(drain(sub)) == 4, what="the queue flushes")
        assert ids_of(drain(sub)) == [
            "1718000000000-3",
            "1718000000000-3.1",
            "1718000000000-4",
            "1718000000000-5",
        ]

    async def test_releasing_a_queued_group_lets_the_queue_move(self) -> None:
        """release() of a settled group at the head of the queue flushes what waits behind."""
        broadcaster = Broadcaster()
        broadcaster.bind_loop()
        user = uuid4()
        sub = broadcaster.connect(user)
        held = broadcaster.hold(balance(user, "1"), chain=tuple, timeout=60)
        assert held is not None
        broadcaster.settle(held, "1718000000000-1")  # never finished: it waits in the queue
        with broadcaster.id_scope("1718000000000-2"):
            broadcaster.handle(holdings(user))
        assert drain(sub) == []
        broadcaster.release(held, "1718000000000-1")
        assert ids_of(drain(sub)) == ["1718000000000-2"]  # the held group had no frames

    async def test_expired_hold_streams_with_local_ids(self) -> None:
        """No settle within the timeout: the frames go out anyway, under this epoch."""
        broadcaster, bus, _, user, sub = self.live(timeout=0.01)
        bus.publish_sync(balance(user, "5"))
        await wait_until_async(lambda: len(drain(sub)) == 2, what="the held frames expire")
        assert all(i.startswith(broadcaster.epoch) for i in ids_of(drain(sub)))

    async def test_a_short_hold_is_not_kept_behind_a_long_one(self) -> None:
        """Each hold expires at its own deadline."""
        broadcaster = Broadcaster()
        broadcaster.bind_loop()
        long_bus, _ = self.holding_worker(broadcaster, timeout=60)
        short_bus, _ = self.holding_worker(broadcaster, timeout=0.01)
        first, second = uuid4(), uuid4()
        sub = broadcaster.connect(second)
        long_bus.publish_sync(balance(first, "5"))
        short_bus.publish_sync(balance(second, "5"))
        await wait_until_async(lambda: len(drain(sub)) == 2, what="the short hold expires")

    def test_a_sweep_lost_with_its_loop_is_armed_again_on_the_next(self) -> None:
        """Holds made on a loop that closed still expire once the broadcaster is rebound."""
        broadcaster = Broadcaster()
        bus, held = self.holding_worker(broadcaster, timeout=0.01)
        user = uuid4()

        async def on_first_loop() -> None:
            broadcaster.bind_loop()
            bus.publish_sync(balance(user, "5"))

        async def on_second_loop() -> Subscriber:
            sub = broadcaster.connect(user)  # rebinds: re-arms the sweep
            await wait_until_async(lambda: held[0].routed, what="the old hold expires")
            return sub

        asyncio.run(on_first_loop())  # closes the loop with the sweep still pending
        assert held
        assert not held[0].routed
        sub = asyncio.run(on_second_loop())
        assert sub.user == user

    async def test_a_held_root_is_not_given_an_id_scope_it_copied(self) -> None:
        """A root published inside an id scope's context copy is held, not given scope ids."""
        broadcaster, bus, held, user, sub = self.live(timeout=60)
        with broadcaster.id_scope("1718000000000-1"):
            bus.publish_sync(balance(user, "5"))
        assert drain(sub) == []
        broadcaster.release(held[0], "1718000000000-2")
        assert ids_of(drain(sub)) == ["1718000000000-2", "1718000000000-2.1"]

    def test_nothing_is_held_without_a_loop(self) -> None:
        """An unbound broadcaster cannot time a hold out, so it holds nothing."""
        broadcaster = Broadcaster()
        bus, held = self.holding_worker(broadcaster, timeout=60)
        user = uuid4()
        sub = broadcaster.connect(user)
        bus.publish_sync(balance(user, "5"))
        assert held == []
        assert len(drain(sub)) == 2

    async def test_bad_release_id_is_refused(self) -> None:
        """A release id that is not a valid SSE id is a ValueError naming base_id."""
        broadcaster = Broadcaster()
        broadcaster.bind_loop()
        held = broadcaster.hold(balance(uuid4(), "1"), chain=tuple, timeout=60)
        assert held is not None
        with pytest.raises(ValueError, match="base_id"):
            broadcaster.release(held, "bad id\n")


class TestSignedTokenAuth:
    """The demo's HMAC tokens."""

    def test_round_trip_and_tampering(self) -> None:
        """A token names its user; any changed byte or another secret refuses it."""
        auth = SignedTokenAuth(b"0123456789abcdef")
        user = uuid4()
        token = auth.issue(user)
        assert auth.verify(token) == user
        flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        assert auth.verify(flipped) is None
        assert auth.verify("no-dot") is None
        assert auth.verify("!!.!!") is None
        assert SignedTokenAuth(b"fedcba9876543210").verify(token) is None

    def test_expiry(self) -> None:
        """A token with a ttl is refused after it."""
        auth = SignedTokenAuth(b"0123456789abcdef")
        user = uuid4()
        token = auth.issue(user, ttl=60)
        assert auth.verify(token) == user
        assert auth.verify(token, now=time.time() + 120) is None

    def test_bad_arguments(self) -> None:
        """Short or non-bytes secrets, non-UUID users and non-positive ttls are refused."""
        with pytest.raises(ValueError, match="secret"):
            SignedTokenAuth(b"short")
        with pytest.raises(TypeError, match="secret"):
            SignedTokenAuth("0123456789abcdef0123")  # type: ignore[arg-type]
        auth = SignedTokenAuth(b"0123456789abcdef")
        with pytest.raises(TypeError, match="user_id"):
            auth.issue("someone")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ttl"):
            auth.issue(uuid4(), ttl=0)
        assert "0123" not in repr(auth)
