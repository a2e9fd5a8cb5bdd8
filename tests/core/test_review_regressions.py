"""Regressions found by reviewing the core dispatch machinery (issue #2, ARCHITECTURE §2-§5).

Each class pins one bug. Bugs fixed in the core are plain tests; bugs whose fix
is not small are strict xfails whose reason names the defect (see the review
report for the recommended fix).
"""

from __future__ import annotations

import abc
import asyncio
import threading
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from eventbus import DomainEvent, EventBus, EventCycleError, codec, hookimpl, signals
from eventbus.events import EXACT, MAX_COUNT
from eventbus.exceptions import DecodeError, InvalidEventError, PluginRegistrationError
from eventbus.portfolio import AccountBalanceUpdated
from tests.core.samples import Ping, Pong, balance, holdings

pytestmark = pytest.mark.timeout(30)


class _Listener:
    """An object whose bound async method is subscribed weakly."""

    def __init__(self, log: list[int]) -> None:
        self.log = log

    async def on_ping(self, event: Ping) -> None:
        self.log.append(event.n)


class TestAsyncWrappersReturnAwaitables:
    """A skipped async ``once``/``weak`` call must not hand ``None`` to ``await``.

    The wrappers returned ``None`` when they did not call the handler; the bus
    then did ``await None`` (TypeError), reported as a handler failure and, with
    ``raise_errors=True``, raised from a publish in which nothing failed.
    """

    async def test_async_once_with_reentrant_publish(self, strict_bus: EventBus) -> None:
        """An async once-handler in a plan shared by a nested publish runs once, fails never."""
        seen: list[tuple[str, int]] = []

        async def republish(event: Ping) -> None:
            if event.n == 0:
                await strict_bus.publish(Ping(n=1))

        async def once(event: Ping) -> None:
            seen.append(("once", event.n))

        strict_bus.subscribe(Ping, republish, priority=1)
        strict_bus.subscribe(Ping, once, once=True)
        await strict_bus.publish(Ping(n=0))  # raised ExceptionGroup([TypeError]) before the fix
        assert seen == [("once", 1)]

    @pytest.mark.parametrize("concurrent", [False, True], ids=["awaited", "concurrent"])
    async def test_weak_async_handler_dies_mid_plan(
        self, strict_bus: EventBus, concurrent: bool
    ) -> None:
        """A weak async handler whose object dies mid-dispatch is skipped, not failed."""
        log: list[int] = []
        holder = [_Listener(log)]
        strict_bus.subscribe(Ping, lambda e: holder.clear(), priority=1)
        sub = strict_bus.subscribe(Ping, holder[0].on_ping, weak=True, concurrent=concurrent)
        await strict_bus.publish(Ping(n=1))
        assert log == []
        assert not sub.active


class TestDeadWeakSubscriptionListing:
    """subscriptions() lists active subscriptions only."""

    def test_weak_death_while_another_thread_holds_the_lock(self, bus: EventBus) -> None:
        """A weak handler dying while the lock is busy is no longer listed as subscribed."""

        class Listener:
            def handler(self, event: Ping) -> None:
                """Never called."""

        listener = Listener()
        sub = bus.subscribe(Ping, listener.handler, weak=True)
        held, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            # Another thread busy subscribing: the GC callback cannot take the lock.
            with bus._lock:
                held.set()
                release.wait(10)

        thread = threading.Thread(target=hold_lock)
        thread.start()
        assert held.wait(10)
        del listener  # refcount drops to zero: the weakref callback runs here
        release.set()
        thread.join(10)
        assert not sub.active
        assert sub not in bus.subscriptions()


class TestPluginRegistrationEdgeCases:
    """Registration failures leave earlier registrations intact and nothing half-done."""

    async def test_same_object_under_a_second_name_keeps_the_first(self, bus: EventBus) -> None:
        """pluggy refuses the second name; the first registration must keep its hooks."""

        class Plugin:
            started = 0

            @hookimpl
            def eventbus_startup(self, bus: EventBus) -> None:
                self.started += 1

        plugin = Plugin()
        bus.register_plugin(plugin, name="first")
        with pytest.raises(PluginRegistrationError, match="second"):
            bus.register_plugin(plugin, name="second")
        assert [(p.name, p.hooks) for p in bus.plugins()] == [("first", ("eventbus_startup",))]
        async with bus:
            pass
        assert plugin.started == 1  # was 0: the refusal unregistered "first" from pluggy

    def test_keyboard_interrupt_in_register_leaves_nothing(self, bus: EventBus) -> None:
        """A BaseException from eventbus_register propagates and still undoes the registration."""

        class Interrupted:
            @hookimpl
            def eventbus_register(self, bus: EventBus) -> None:
                bus.subscribe(Ping, lambda e: None)
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            bus.register_plugin(Interrupted(), name="interrupted")
        assert bus.subscriptions() == ()
        assert bus.plugins() == []
        assert bus.get_plugin("interrupted") is None


class TestOccurredAtIsUtc:
    """occurred_at is normalised to UTC, whatever zone it came in."""

    def test_zone_at_zero_offset_is_normalised(self) -> None:
        """Europe/London in winter (UTC+0) becomes UTC, as it does in summer (UTC+1)."""
        london = ZoneInfo("Europe/London")
        winter = Ping(occurred_at=datetime(2026, 1, 15, 12, tzinfo=london))
        summer = Ping(occurred_at=datetime(2026, 7, 15, 12, tzinfo=london))
        assert summer.occurred_at.tzinfo is UTC
        assert winter.occurred_at.tzinfo is UTC
        assert winter.occurred_at == datetime(2026, 1, 15, 12, tzinfo=UTC)


class TestThreadsSharingAContext:
    """A context copied into another thread shares the untracked-dispatch counter."""

    async def test_top_level_publish_while_a_threadsafe_event_is_in_flight(self) -> None:
        """A thread's top-level publish_sync is not refused because its earlier
        publish_threadsafe event is still being handled on the loop."""
        bus = EventBus(max_depth=1)
        await bus.start()
        loop = asyncio.get_running_loop()
        inside = threading.Event()
        release = asyncio.Event()

        async def slow(event: Ping) -> None:
            inside.set()
            await release.wait()

        bus.subscribe(Ping, slow)
        bus.subscribe(Pong, lambda e: None)
        outcome: list[object] = []

        def worker() -> None:
            bus.publish_sync(Pong())  # this thread's context now has its counter
            future = bus.publish_threadsafe(Ping())
            assert inside.wait(10)
            try:
                bus.publish_sync(Pong())  # top level in this thread: depth 1
                outcome.append("ok")
            except EventCycleError as exc:
                outcome.append(exc)
            finally:
                loop.call_soon_threadsafe(release.set)
            future.result(10)

        await asyncio.to_thread(worker)
        assert outcome == ["ok"]


class TestChainAcrossLoopsAndTasks:
    """event_chain() gives the same answer whether tracking was on before or not."""

    @pytest.mark.parametrize(
        "primed", [pytest.param(False, id="fresh"), pytest.param(True, id="queried")]
    )
    def test_asyncio_run_inside_a_sync_handler(self, primed: bool) -> None:
        """A nested loop run by a sync handler nests under that handler's event."""
        bus = EventBus()
        if primed:
            bus.current_event()
        outer, inner = Ping(), Pong()
        seen: list[tuple[DomainEvent, ...]] = []

        async def on_pong(event: Pong) -> None:
            seen.append(bus.event_chain())

        bus.subscribe(Pong, on_pong)
        bus.subscribe(Ping, lambda e: asyncio.run(bus.publish(inner)))
        bus.publish_sync(outer)
        assert seen == [(outer, inner)]

    async def test_task_created_in_a_handler_fresh_like_primed(self) -> None:
        """Fresh and primed buses agree on current_event() inside a task a handler spawned."""
        answers: list[list[type | None]] = []
        for primed in (True, False):
            bus = EventBus()
            if primed:
                bus.current_event()
            seen: list[type | None] = []
            tasks: list[asyncio.Task[None]] = []

            async def spawned(bus: EventBus = bus, seen: list[type | None] = seen) -> None:
                current = bus.current_event()
                seen.append(None if current is None else type(current))

            def handler(event: Ping, tasks: list[asyncio.Task[None]] = tasks) -> None:
                tasks.append(asyncio.ensure_future(spawned()))

            bus.subscribe(Ping, handler)
            await bus.publish(Ping())
            await asyncio.gather(*tasks)
            answers.append(seen)
        assert answers[0] == [Ping]  # primed: the copied chain (contextvar semantics)
        assert answers[1] == answers[0]


class TestStalePlans:
    """Plans cached per concrete type must follow ARCHITECTURE §3's matching rule."""

    @pytest.mark.xfail(
        strict=True,
        reason="core: ABC.register after a type's plan was compiled is never seen; "
        "plans are invalidated only by subscribe/unsubscribe (abc.get_cache_token unused)",
    )
    def test_abc_register_after_first_publish(self, bus: EventBus) -> None:
        """A virtual subclass registered after its first publish reaches the ABC's handlers."""

        class Audited(abc.ABC):  # noqa: B024  # a marker ABC: virtual subclasses only
            """Marker ABC."""

        got: list[object] = []
        bus.subscribe(Audited, got.append)
        bus.publish_sync(Ping())  # compiles and caches Ping's plan
        Audited.register(Ping)
        event = Ping()
        bus.publish_sync(event)
        assert got == [event]


class TestCodecLimits:
    """Every valid event round-trips; hostile payloads fail fast with a short DecodeError."""

    def test_count_beyond_64_bits_is_refused_naming_the_field(self) -> None:
        """A count orjson cannot carry is refused by the event itself, naming the field."""
        with pytest.raises(InvalidEventError, match="holdings_count") as info:
            holdings(holdings_count=2**64)
        assert "at most" in str(info.value)

    def test_largest_count_round_trips(self) -> None:
        """The largest allowed count survives the codec."""
        event = holdings(holdings_count=MAX_COUNT)
        assert codec.loads(codec.dumps(event)) == event

    def test_a_huge_count_is_described_by_size(self) -> None:
        """A count too big to print is described by its bit length."""
        with pytest.raises(InvalidEventError, match="bit int"):
            holdings(holdings_count=10**5000)

    def test_far_apart_exponents_fail_with_a_short_error(self) -> None:
        """Balances 1e-999999 and 1e999999 are refused without a megabyte error message."""
        payload = codec.encode_payload(balance())
        payload["data"]["previous_balance"] = "1e-999999"
        payload["data"]["new_balance"] = "1e999999"
        with pytest.raises(DecodeError, match="previous_balance") as info:
            codec.decode_payload(payload)
        assert len(str(info.value)) < 1000

    @pytest.mark.parametrize(
        "amount",
        ["1e40", "0.1e-40", "0E-41", "1" * 41],
        ids=["too-large", "too-precise", "zero-too-precise", "41-digits"],
    )
    def test_amount_beyond_the_digit_bound_is_refused(self, amount: str) -> None:
        """An amount beyond MAX_DECIMAL_DIGITS on either side of the point names its field."""
        with pytest.raises(InvalidEventError, match="new_balance"):
            balance(new_balance=Decimal(amount))

    def test_from_change_refuses_far_apart_amounts_before_subtracting(self) -> None:
        """from_change checks the bound first: no 20-million-digit delta is ever built."""
        with pytest.raises(InvalidEventError, match="previous_balance"):
            AccountBalanceUpdated.from_change(
                user_id=uuid4(),
                account_id=uuid4(),
                previous_balance=Decimal("1e-10000000"),
                new_balance=Decimal("1e10000000"),
                currency="USD",
            )

    def test_amounts_at_the_digit_bound_are_exact(self) -> None:
        """40 integer digits and 40 decimals are accepted, and the delta is exact."""
        big, small = Decimal("9" * 40), Decimal("0." + "0" * 39 + "1")
        event = AccountBalanceUpdated.from_change(
            user_id=uuid4(),
            account_id=uuid4(),
            previous_balance=small,
            new_balance=big,
            currency="USD",
        )
        assert event.delta == EXACT.subtract(big, small)
        assert len(event.delta.as_tuple().digits) == 80  # not rounded to 28 digits
        assert codec.loads(codec.dumps(event)) == event


class TestConcurrentJoin:
    """Every concurrent handler's failure is reported, even when another one is cancelled."""

    async def test_failure_after_a_cancelled_handler_is_reported(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failure in a later concurrent handler is logged and signalled; the cancel propagates."""
        failed: list[BaseException] = []

        async def cancelled(event: Ping) -> None:
            raise asyncio.CancelledError

        async def fails(event: Ping) -> None:
            raise ValueError("reported")

        def on_failed(sender: object, **kwargs: object) -> None:
            failed.append(kwargs["exception"])  # type: ignore[arg-type]

        bus.subscribe(Ping, cancelled, concurrent=True)
        bus.subscribe(Ping, fails, concurrent=True)
        with (
            signals.handler_failed.connected_to(on_failed, sender=bus),
            pytest.raises(asyncio.CancelledError),
        ):
            await bus.publish(Ping())
        assert [str(e) for e in failed] == ["reported"]
        assert "failed on Ping" in caplog.text
