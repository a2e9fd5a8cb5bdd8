"""The broadcaster without HTTP: mappings, settings, the plugin, tokens (ids: test_positions)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from eventbus import DomainEvent, EventBus, event_type
from eventbus.portfolio import AccountBalanceUpdated, PortfolioNetWorthRecalculated
from eventbus_sse import Broadcaster, SignedTokenAuth, SSEPlugin, Subscriber
from tests.plugins.sse.helpers import balance, networth


def drain(sub: Subscriber) -> list[bytes]:
    """Everything a subscriber would send now: preamble, then queued frames."""
    out = list(sub.preamble)
    out += [f.data for f in sub._frames]  # test-only peek; the app uses next_batch()
    return out


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
