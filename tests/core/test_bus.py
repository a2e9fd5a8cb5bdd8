"""EventBus subscribing and synchronous dispatch (ARCHITECTURE §2-§3).

Ordering and the named `Priority` bands, type matching (MRO and ABC virtual
subclasses), plan-cache invalidation, snapshot semantics, ``once``, ``weak``,
the `Subscription` object, the ``on`` decorator, error isolation under
`EventBus.publish_sync`, and the notes that name a failing handler in every
kind of dispatch.
"""

from __future__ import annotations

import abc
import asyncio
import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from eventbus import (
    AsyncHandlerError,
    DispatchObserver,
    DomainEvent,
    EventBus,
    Priority,
    Subscription,
    signals,
)
from eventbus.portfolio import AccountBalanceUpdated
from tests.core.samples import Ping, Pong, RecordingSequencer, SubPing, balance


def recorder(log: list[Any], tag: object) -> Callable[[DomainEvent], None]:
    """A handler appending ``tag`` to ``log`` on each call."""

    def handler(event: DomainEvent) -> None:
        log.append(tag)

    handler.__qualname__ = f"handler_{tag}"
    return handler


class TestOrdering:
    """Higher priority first, then subscription order; stable across runs."""

    def test_priority_then_subscription_order(self, bus: EventBus) -> None:
        """Handlers run by descending priority, ties in subscription order."""
        log: list[str] = []
        bus.subscribe(Ping, recorder(log, "a0"))
        bus.subscribe(Ping, recorder(log, "b5"), priority=5)
        bus.subscribe(Ping, recorder(log, "c0"))
        bus.subscribe(Ping, recorder(log, "d-3"), priority=-3)
        bus.subscribe(Ping, recorder(log, "e5"), priority=5)
        bus.subscribe(Ping, recorder(log, "f0"))
        bus.publish_sync(Ping())
        assert log == ["b5", "e5", "a0", "c0", "f0", "d-3"]

    def test_order_is_the_same_every_run(self, bus: EventBus) -> None:
        """Repeated publishes (cached plan) keep exactly the same order."""
        log: list[int] = []
        for i in range(20):
            bus.subscribe(Ping, recorder(log, i), priority=i % 3)
        bus.publish_sync(Ping())
        first = list(log)
        for _ in range(5):
            log.clear()
            bus.publish_sync(Ping())
            assert log == first

    def test_order_mixes_base_and_subclass_subscriptions(self, bus: EventBus) -> None:
        """Subscriptions to a base and a subclass interleave by priority, then order."""
        log: list[str] = []
        bus.subscribe(DomainEvent, recorder(log, "base"))
        bus.subscribe(SubPing, recorder(log, "sub"))
        bus.subscribe(Ping, recorder(log, "ping-high"), priority=1)
        bus.publish_sync(SubPing())
        assert log == ["ping-high", "base", "sub"]

    def test_bad_priority_rejected(self, bus: EventBus) -> None:
        """A non-int priority is refused, naming the parameter."""
        with pytest.raises(TypeError, match="priority"):
            bus.subscribe(Ping, recorder([], "x"), priority=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="priority"):
            bus.subscribe(Ping, recorder([], "x"), priority=True)

    def test_bad_event_type_and_handler_rejected(self, bus: EventBus) -> None:
        """A non-class event type or a non-callable handler is refused."""
        with pytest.raises(TypeError, match="event_type"):
            bus.subscribe(Ping(), recorder([], "x"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="handler"):
            bus.subscribe(Ping, 42)  # type: ignore[arg-type]


class AuditEvent(abc.ABC):  # noqa: B024  # a marker ABC: virtual subclasses only
    """A marker ABC that event classes are registered with."""


AuditEvent.register(Pong)


class TestTypeMatching:
    """Dispatch by ``issubclass``: MRO, DomainEvent base, ABC virtual subclasses."""

    def test_subclass_instances_reach_base_handlers(self, bus: EventBus) -> None:
        """A Ping handler sees SubPing; a SubPing handler does not see Ping."""
        log: list[str] = []
        bus.subscribe(Ping, lambda e: log.append(f"ping:{type(e).__name__}"))
        bus.subscribe(SubPing, lambda e: log.append(f"sub:{type(e).__name__}"))
        bus.publish_sync(Ping())
        bus.publish_sync(SubPing())
        assert log == ["ping:Ping", "ping:SubPing", "sub:SubPing"]

    def test_domain_event_handler_sees_everything(self, bus: EventBus) -> None:
        """A DomainEvent handler receives every event type, including portfolio ones."""
        seen: list[type] = []
        bus.subscribe(DomainEvent, lambda e: seen.append(type(e)))
        bus.publish_sync(Ping())
        bus.publish_sync(Pong())
        bus.publish_sync(balance())
        assert seen == [Ping, Pong, AccountBalanceUpdated]

    def test_abc_registered_virtual_subclass(self, bus: EventBus) -> None:
        """Handlers for an ABC receive events of classes registered with it."""
        seen: list[DomainEvent] = []
        # The type checker only accepts DomainEvent subclasses here: an ABC
        # marker works at runtime, but needs an ignore (a design note).
        bus.subscribe(AuditEvent, seen.append)  # type: ignore[type-var, arg-type]
        pong, ping = Pong(), Ping()
        bus.publish_sync(pong)
        bus.publish_sync(ping)
        assert seen == [pong]

    @pytest.mark.xfail(
        strict=True,
        reason="documented limit: ABC.register after a type's plan was compiled is not seen; "
        "plans are replaced only by subscribe/unsubscribe/set_sequencer (and signal "
        "receivers coming and going; seeing it would "
        "need an abc.get_cache_token() check on every publish, or uncached plans for buses "
        "with ABC subscriptions: both in _bus.py's hot paths)",
    )
    def test_abc_register_after_first_publish(self, bus: EventBus) -> None:
        """A virtual subclass registered after its first publish reaches the ABC's handlers."""

        class Audited(abc.ABC):  # noqa: B024  # a marker ABC: virtual subclasses only
            """Marker ABC."""

        got: list[object] = []
        bus.subscribe(Audited, got.append)  # type: ignore[type-var]
        bus.publish_sync(Ping())  # compiles and caches Ping's plan
        Audited.register(Ping)
        event = Ping()
        bus.publish_sync(event)
        assert got == [event]

    def test_unrelated_types_not_delivered(self, bus: EventBus) -> None:
        """A handler never sees events of unrelated types; no handler is a no-op."""
        seen: list[DomainEvent] = []
        bus.subscribe(Pong, seen.append)
        bus.publish_sync(Ping())
        bus.publish_sync(balance())
        assert seen == []


class TestPlanCache:
    """Plans are cached per type and invalidated by every subscribe/unsubscribe."""

    def test_subscribe_after_publish_is_seen(self, bus: EventBus) -> None:
        """A subscription made after a type's plan was compiled gets the next event."""
        log: list[str] = []
        bus.subscribe(Ping, recorder(log, "a"))
        bus.publish_sync(Ping())
        bus.subscribe(DomainEvent, recorder(log, "b"))
        bus.publish_sync(Ping())
        assert log == ["a", "a", "b"]

    def test_unsubscribe_after_publish_is_seen(self, bus: EventBus) -> None:
        """A cancelled subscription stops receiving at once, plan cached or not."""
        log: list[str] = []
        sub = bus.subscribe(Ping, recorder(log, "a"))
        bus.subscribe(Ping, recorder(log, "b"))
        bus.publish_sync(Ping())
        sub.cancel()
        bus.publish_sync(Ping())
        assert log == ["a", "b", "b"]

    def test_no_handlers_then_one(self, bus: EventBus) -> None:
        """A type first published with no handlers (empty plan) picks up a later one."""
        seen: list[DomainEvent] = []
        bus.publish_sync(Ping())
        bus.subscribe(Ping, seen.append)
        event = Ping()
        bus.publish_sync(event)
        assert seen == [event]

    def test_subscriptions_listing(self, bus: EventBus) -> None:
        """`subscriptions()` lists active subscriptions in subscription order."""
        a = bus.subscribe(Ping, recorder([], "a"))
        b = bus.subscribe(Pong, recorder([], "b"), priority=9)
        assert bus.subscriptions() == (a, b)
        a.cancel()
        assert bus.subscriptions() == (b,)


class TestSnapshots:
    """Changes made during a dispatch apply from the next publish on."""

    def test_subscription_made_during_dispatch_misses_current_event(self, bus: EventBus) -> None:
        """A handler subscribed by a handler does not receive the event being dispatched."""
        late: list[DomainEvent] = []
        subscribed: list[Subscription[Ping]] = []

        def subscribe_late(event: DomainEvent) -> None:
            if not subscribed:
                subscribed.append(bus.subscribe(Ping, late.append))

        bus.subscribe(Ping, subscribe_late, priority=1)
        first, second = Ping(n=1), Ping(n=2)
        bus.publish_sync(first)
        assert late == []
        bus.publish_sync(second)
        assert late == [second]

    def test_cancel_during_dispatch_applies_to_next_publish(self, bus: EventBus) -> None:
        """A handler cancelled mid-dispatch by an earlier one still runs for this event."""
        log: list[str] = []
        victim: list[Subscription[Ping]] = []

        def cancel_victim(event: Ping) -> None:
            victim[0].cancel()

        bus.subscribe(Ping, cancel_victim, priority=1)
        victim.append(bus.subscribe(Ping, recorder(log, "victim")))
        bus.publish_sync(Ping())
        bus.publish_sync(Ping())
        assert log == ["victim"]


class TestOnce:
    """``once=True``: delivered exactly once, then cancelled."""

    def test_once_delivers_once_and_cancels(self, bus: EventBus) -> None:
        """The handler runs for the first event only, and the subscription goes inactive."""
        seen: list[DomainEvent] = []
        sub = bus.subscribe(Ping, seen.append, once=True)
        first = Ping(n=1)
        bus.publish_sync(first)
        bus.publish_sync(Ping(n=2))
        assert seen == [first]
        assert not sub.active
        assert sub not in bus.subscriptions()

    def test_once_with_reentrant_publish(self, bus: EventBus) -> None:
        """A once-handler whose own publish re-enters still runs exactly once."""
        seen: list[int] = []

        def handler(event: Ping) -> None:
            seen.append(event.n)
            bus.publish_sync(Ping(n=event.n + 1))

        bus.subscribe(Ping, handler, once=True)
        bus.publish_sync(Ping(n=0))
        assert seen == [0]


class _Listener:
    """An object whose bound method is subscribed weakly."""

    def __init__(self) -> None:
        self.seen: list[DomainEvent] = []

    def on_ping(self, event: Ping) -> None:
        self.seen.append(event)


class TestWeak:
    """``weak=True`` holds bound methods weakly; strong is the default."""

    def test_weak_bound_method_dropped_when_object_dies(self, bus: EventBus) -> None:
        """Once the listener is collected, its subscription is cancelled and skipped."""
        listener = _Listener()
        sub = bus.subscribe(Ping, listener.on_ping, weak=True)
        event = Ping()
        bus.publish_sync(event)
        assert listener.seen == [event]
        del listener
        gc.collect()
        assert sub.handler is None
        assert not sub.active
        assert sub not in bus.subscriptions()
        bus.publish_sync(Ping())  # nothing left to call, and nothing breaks

    def test_strong_reference_is_the_default(self, bus: EventBus) -> None:
        """Without weak=True the bus keeps the listener alive."""
        listener = _Listener()
        sub = bus.subscribe(Ping, listener.on_ping)
        seen = listener.seen
        del listener
        gc.collect()
        bus.publish_sync(Ping())
        assert len(seen) == 1
        assert sub.active

    def test_weak_plain_function(self, bus: EventBus) -> None:
        """A weakly held plain function is dropped when it dies too."""
        seen: list[DomainEvent] = []

        def make() -> Callable[[DomainEvent], None]:
            def handler(event: DomainEvent) -> None:
                seen.append(event)

            return handler

        handler = make()
        sub = bus.subscribe(Ping, handler, weak=True)
        bus.publish_sync(Ping())
        del handler
        gc.collect()
        bus.publish_sync(Ping())
        assert len(seen) == 1
        assert not sub.active

    def test_weak_death_mid_plan(self, bus: EventBus) -> None:
        """A listener that dies between publishes leaves the other handlers intact."""
        log: list[str] = []
        listener = _Listener()
        bus.subscribe(Ping, recorder(log, "before"))
        bus.subscribe(Ping, listener.on_ping, weak=True)
        bus.subscribe(Ping, recorder(log, "after"))
        bus.publish_sync(Ping())
        del listener
        gc.collect()
        bus.publish_sync(Ping())
        assert log == ["before", "after", "before", "after"]
        assert len(bus.subscriptions()) == 2

    def test_weak_death_while_another_thread_holds_the_lock(self, bus: EventBus) -> None:
        """A handler dying while the bus lock is busy is no longer listed as subscribed."""

        class Listener:
            def handler(self, event: Ping) -> None:
                """Never called."""

        listener = Listener()
        sub = bus.subscribe(Ping, listener.handler, weak=True)
        held, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            # Another thread busy subscribing: the GC callback cannot take the lock.
            with bus._registry._lock:
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


class TestSubscriptionObject:
    """`Subscription`: cancel is idempotent; usable as a context manager."""

    def test_cancel_is_idempotent(self, bus: EventBus) -> None:
        """The first cancel returns True, later ones False, and nothing breaks."""
        sub = bus.subscribe(Ping, recorder([], "x"))
        assert sub.active
        assert sub.cancel() is True
        assert sub.cancel() is False
        assert sub.cancel() is False
        assert not sub.active

    def test_context_manager(self, bus: EventBus) -> None:
        """Inside the with-block the handler receives events; after it, not."""
        seen: list[DomainEvent] = []
        inside = Ping(n=1)
        with bus.subscribe(Ping, seen.append) as sub:
            assert isinstance(sub, Subscription)
            bus.publish_sync(inside)
        bus.publish_sync(Ping(n=2))
        assert seen == [inside]
        assert not sub.active

    def test_context_manager_cancels_on_error(self, bus: EventBus) -> None:
        """Leaving the block through an exception still cancels."""
        with pytest.raises(RuntimeError), bus.subscribe(Ping, recorder([], "x")) as sub:
            raise RuntimeError("boom")
        assert not sub.active

    def test_attributes_and_repr(self, bus: EventBus) -> None:
        """A subscription exposes its settings and a readable repr."""
        handler = recorder([], "x")
        sub = bus.subscribe(Ping, handler, priority=7)
        assert (sub.event_type, sub.handler, sub.priority, sub.is_async) == (
            Ping,
            handler,
            7,
            False,
        )
        assert "Ping" in repr(sub)
        assert "priority=7" in repr(sub)


class TestOnDecorator:
    """`EventBus.on` subscribes and returns the function unchanged."""

    def test_on_subscribes_with_priority(self, bus: EventBus) -> None:
        """Decorated functions are subscribed with their priority."""
        log: list[str] = []

        @bus.on(Ping)
        def low(event: Ping) -> None:
            log.append("low")

        @bus.on(Ping, priority=10)
        def high(event: Ping) -> None:
            log.append("high")

        bus.publish_sync(Ping())
        assert log == ["high", "low"]
        low(Ping())  # still a plain function
        assert log[-1] == "low"

    def test_on_once(self, bus: EventBus) -> None:
        """``once`` works through the decorator too."""
        seen: list[DomainEvent] = []

        @bus.on(DomainEvent, once=True)
        def first(event: DomainEvent) -> None:
            seen.append(event)

        bus.publish_sync(Ping())
        bus.publish_sync(Ping())
        assert len(seen) == 1


class TestErrorIsolation:
    """A handler that raises never stops the others (sync dispatch)."""

    def test_other_handlers_run_failure_logged_and_signalled(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """1 of 3 raises: the other 2 run, it is logged on 'eventbus', handler_failed fires."""
        log: list[str] = []
        failures: list[dict[str, Any]] = []

        def broken(event: Ping) -> None:
            raise ValueError("broken handler")

        bus.subscribe(Ping, recorder(log, "first"))
        bus.subscribe(Ping, broken)
        bus.subscribe(Ping, recorder(log, "third"))
        event = Ping()

        def on_failed(sender: object, **kw: Any) -> None:
            failures.append({"sender": sender, **kw})

        with (
            signals.handler_failed.connected_to(on_failed),
            caplog.at_level(logging.ERROR, logger="eventbus"),
        ):
            bus.publish_sync(event)  # does not raise
        assert log == ["first", "third"]
        assert len(failures) == 1
        failure = failures[0]
        assert failure["sender"] is bus
        assert failure["event"] is event
        assert failure["handler"] is broken
        assert isinstance(failure["exception"], ValueError)
        records = [r for r in caplog.records if r.name == "eventbus"]
        assert len(records) == 1
        assert records[0].levelno == logging.ERROR
        assert "broken" in records[0].getMessage()
        assert records[0].exc_info is not None
        assert records[0].exc_info[1] is failure["exception"]

    def test_raise_errors_groups_every_failure_after_all_ran(self, strict_bus: EventBus) -> None:
        """raise_errors=True: all handlers run, then one ExceptionGroup of all failures."""
        log: list[str] = []
        first_error, second_error = ValueError("one"), KeyError("two")

        def fail_with(exc: Exception) -> Callable[[Ping], None]:
            def handler(event: Ping) -> None:
                log.append(f"raise {exc!r}")
                raise exc

            return handler

        strict_bus.subscribe(Ping, fail_with(first_error))
        strict_bus.subscribe(Ping, recorder(log, "middle"))
        strict_bus.subscribe(Ping, fail_with(second_error))
        strict_bus.subscribe(Ping, recorder(log, "last"))
        with pytest.raises(ExceptionGroup) as info:
            strict_bus.publish_sync(Ping())
        assert log == [f"raise {first_error!r}", "middle", f"raise {second_error!r}", "last"]
        assert list(info.value.exceptions) == [first_error, second_error]
        assert "Ping" in str(info.value)

    @pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
    def test_base_exceptions_propagate(self, bus: EventBus, exc_type: type) -> None:
        """A BaseException is not isolated: it propagates and stops the dispatch."""
        log: list[str] = []

        def interrupt(event: Ping) -> None:
            raise exc_type

        sub = bus.subscribe(Ping, interrupt)
        bus.subscribe(Ping, recorder(log, "after"))
        with pytest.raises(exc_type):
            bus.publish_sync(Ping())
        assert log == []
        # The bus is still usable afterwards.
        sub.cancel()
        bus.publish_sync(Ping())
        assert log == ["after"]

    def test_failure_in_a_nested_publish_isolated(self, bus: EventBus) -> None:
        """Isolation holds in a nested publish too: both levels' other handlers run."""
        log: list[str] = []

        def outer(event: Ping) -> None:
            bus.publish_sync(Pong())

        def broken(event: Pong) -> None:
            raise RuntimeError("nested failure")

        bus.subscribe(Ping, outer)
        bus.subscribe(Pong, broken)
        bus.subscribe(Pong, recorder(log, "pong-after"))
        bus.subscribe(Ping, recorder(log, "ping-after"))
        bus.publish_sync(Ping())
        assert log == ["pong-after", "ping-after"]


class AsyncHandlerObject:
    """A callable object with an ``async __call__`` (classified as async)."""

    async def __call__(self, event: DomainEvent) -> None:
        """Do nothing, asynchronously."""


class TestAsyncHandlerError:
    """publish_sync refuses types with async handlers before running anything."""

    def test_raised_before_any_handler_runs_and_names_handler(self, bus: EventBus) -> None:
        """The error names the async handler; the sync handler before it never ran."""
        log: list[str] = []

        async def slow_handler(event: Ping) -> None:
            log.append("async")

        bus.subscribe(Ping, recorder(log, "sync-first"), priority=10)
        bus.subscribe(Ping, slow_handler)
        with pytest.raises(AsyncHandlerError, match="slow_handler") as info:
            bus.publish_sync(Ping())
        assert log == []
        assert isinstance(info.value, TypeError)
        # Raised again on every attempt (never cached as a usable plan).
        with pytest.raises(AsyncHandlerError):
            bus.publish_sync(Ping())
        assert log == []

    def test_async_callable_object_detected(self, bus: EventBus) -> None:
        """An object with ``async def __call__`` counts as an async handler."""
        handler = AsyncHandlerObject()
        sub = bus.subscribe(Ping, handler)
        assert sub.is_async
        with pytest.raises(AsyncHandlerError, match="AsyncHandlerObject"):
            bus.publish_sync(Ping())

    def test_other_types_unaffected(self, bus: EventBus) -> None:
        """An async handler for one type does not block publish_sync of another."""
        seen: list[DomainEvent] = []

        async def on_pong(event: Pong) -> None:
            """Never called here."""

        bus.subscribe(Pong, on_pong)
        bus.subscribe(Ping, seen.append)
        bus.publish_sync(Ping())
        assert len(seen) == 1

    def test_cancel_async_handler_unblocks(self, bus: EventBus) -> None:
        """Once the async handler is cancelled, publish_sync works again."""
        seen: list[DomainEvent] = []

        async def on_ping(event: Ping) -> None:
            """Never called here."""

        sub = bus.subscribe(Ping, on_ping)
        bus.subscribe(Ping, seen.append)
        with pytest.raises(AsyncHandlerError):
            bus.publish_sync(Ping())
        sub.cancel()
        bus.publish_sync(Ping())
        assert len(seen) == 1


class TestConstruction:
    """Constructor arguments are validated."""

    def test_max_depth_must_be_positive(self) -> None:
        """max_depth < 1 is refused, naming the parameter."""
        with pytest.raises(ValueError, match="max_depth"):
            EventBus(max_depth=0)

    def test_repr(self, bus: EventBus) -> None:
        """The repr counts subscriptions."""
        bus.subscribe(Ping, recorder([], "x"))
        assert "subscriptions=1" in repr(bus)


class TestPriorityBands:
    """`Priority` names the ordering bands plugins rely on; any int is still a priority."""

    def test_bands_are_ordered(self) -> None:
        """FIRST > OBSERVE > ROUTE > DEFAULT > LAST, and DEFAULT is subscribe's default, 0."""
        assert Priority.FIRST > Priority.OBSERVE > Priority.ROUTE > Priority.DEFAULT
        assert Priority.DEFAULT > Priority.LAST
        assert sorted(Priority, reverse=True) == [
            Priority.FIRST,
            Priority.OBSERVE,
            Priority.ROUTE,
            Priority.DEFAULT,
            Priority.LAST,
        ]
        assert int(Priority.DEFAULT) == 0

    def test_bands_order_handlers_with_plain_ints(self, bus: EventBus) -> None:
        """Bands and ints mix on one scale: ROUTE + 1 runs just before ROUTE."""
        log: list[str] = []
        bus.subscribe(Ping, recorder(log, "last"), priority=Priority.LAST)
        bus.subscribe(Ping, recorder(log, "default"))
        bus.subscribe(Ping, recorder(log, "route"), priority=Priority.ROUTE)
        bus.subscribe(Ping, recorder(log, "first"), priority=Priority.FIRST)
        bus.subscribe(Ping, recorder(log, "before-route"), priority=Priority.ROUTE + 1)
        bus.subscribe(Ping, recorder(log, "observe"), priority=Priority.OBSERVE)
        bus.subscribe(Ping, recorder(log, "low-int"), priority=-1)
        bus.publish_sync(Ping())
        assert log == [
            "first",
            "observe",
            "before-route",
            "route",
            "default",
            "low-int",
            "last",
        ]

    def test_a_band_is_kept_on_the_subscription(self, bus: EventBus) -> None:
        """The subscription reports the band it was given, as an int."""
        sub = bus.subscribe(Ping, recorder([], "x"), priority=Priority.OBSERVE)
        assert sub.priority == Priority.OBSERVE
        assert int(sub.priority) == 1_000_000
        assert isinstance(sub.priority, int)


def _fails_sync(event: DomainEvent) -> None:
    """A sync handler that always fails."""
    raise ValueError(f"sync failure on {type(event).__name__}")


async def _fails_async(event: DomainEvent) -> None:
    """An async handler that always fails (after yielding once)."""
    await asyncio.sleep(0)
    raise ValueError(f"async failure on {type(event).__name__}")


def _note_of(exc: BaseException) -> str:
    """All the notes of ``exc``, one per line."""
    return "\n".join(getattr(exc, "__notes__", ()))


class TestFailureNotes:
    """Each member of the ``raise_errors`` group names its handler and the event.

    The note gives the handler as ``module.qualname`` and the event's type and
    id, whichever way the event was dispatched.
    """

    @pytest.mark.parametrize("how", ["publish_sync", "publish", "concurrent", "deliver"])
    async def test_each_member_names_its_handler_and_the_event(
        self, strict_bus: EventBus, how: str
    ) -> None:
        """Two failing handlers: two members, each with its own handler's note only."""
        if how == "publish_sync":
            handlers: list[Callable[..., Any]] = [_fails_sync, _fails_sync]
        else:
            handlers = [_fails_sync, _fails_async]
        for handler in handlers:
            strict_bus.subscribe(
                Ping,
                handler,
                concurrent=how == "concurrent" and handler is _fails_async,
                fleet=how == "deliver",
            )
        event = Ping()

        async def dispatch() -> None:
            if how == "publish_sync":
                strict_bus.publish_sync(event)
            elif how == "deliver":
                await strict_bus.deliver(event, "1700000000000-0", local=True)
            else:
                await strict_bus.publish(event)

        with pytest.raises(ExceptionGroup) as info:
            await dispatch()
        members = info.value.exceptions
        assert len(members) == 2
        for member, handler in zip(members, handlers, strict=True):
            note = _note_of(member)
            assert f"{__name__}.{handler.__qualname__}" in note
            assert f"Ping {event.event_id}" in note
            assert len(member.__notes__) == 1

    def test_a_nested_failure_is_named_at_both_levels(self, strict_bus: EventBus) -> None:
        """The outer member names the handler that published; its group, the one that failed."""

        def republish(event: Ping) -> None:
            strict_bus.publish_sync(Pong())

        strict_bus.subscribe(Ping, republish)
        strict_bus.subscribe(Pong, _fails_sync)
        event = Ping()
        with pytest.raises(ExceptionGroup) as info:
            strict_bus.publish_sync(event)
        (outer,) = info.value.exceptions
        assert isinstance(outer, ExceptionGroup)
        assert f"{republish.__qualname__}, on Ping {event.event_id}" in _note_of(outer)
        (inner,) = outer.exceptions
        assert f"{__name__}._fails_sync, on Pong" in _note_of(inner)

    def test_no_notes_without_raise_errors(self, bus: EventBus) -> None:
        """Isolated failures are logged and signalled as they are: nothing is added to them."""
        failures: list[BaseException] = []

        def on_failed(sender: object, **kw: Any) -> None:
            failures.append(kw["exception"])

        bus.subscribe(Ping, _fails_sync)
        with signals.handler_failed.connected_to(on_failed, sender=bus):
            bus.publish_sync(Ping())
        assert len(failures) == 1
        assert not hasattr(failures[0], "__notes__")

    def test_the_sequencer_append_is_named_when_it_breaks_its_contract(
        self, strict_bus: EventBus
    ) -> None:
        """An append that raises (it must not) is reported like a handler, by its name."""

        class Broken(RecordingSequencer):
            def append(self, event: DomainEvent) -> None:
                raise RuntimeError("append broke")

        strict_bus.set_sequencer(Broken())
        ran: list[DomainEvent] = []
        strict_bus.subscribe(Ping, ran.append)
        with pytest.raises(ExceptionGroup) as info:
            strict_bus.publish_sync(Ping())
        assert len(ran) == 1  # the handlers still ran
        assert "Broken.append, on Ping" in _note_of(info.value.exceptions[0])


class TestPlanSteps:
    """Each step of a plan is its own subscription's, whatever the callable is."""

    async def test_an_unhashable_callable_object_is_a_handler(self, bus: EventBus) -> None:
        """A ``@dataclass`` instance with ``__call__`` (``__hash__ = None``) is delivered to."""

        @dataclass
        class Collect:
            seen: list[DomainEvent]

            def __call__(self, event: DomainEvent) -> None:
                self.seen.append(event)

        handler = Collect([])
        bus.subscribe(Ping, handler)
        bus.publish_sync(Ping(n=1))
        await bus.publish(Ping(n=2))
        assert [e.n for e in handler.seen] == [1, 2]  # type: ignore[attr-defined]

    def test_one_function_twice_names_each_subscription(self) -> None:
        """Subscribed to a base class and to a subclass, each step fails as its own subscription."""
        bus = EventBus(raise_errors=True)

        def fails(event: DomainEvent) -> None:
            raise ValueError("no")

        bus.subscribe(DomainEvent, fails, priority=10)
        bus.subscribe(Ping, fails, priority=-10)
        observed = _ObserveOwners()
        bus.add_observer(observed)
        with pytest.raises(ExceptionGroup):
            bus.publish_sync(Ping())
        assert observed.priorities == [10, -10]


class _ObserveOwners(DispatchObserver):
    """Records the priority of each subscription a handler step reports."""

    def __init__(self) -> None:
        self.priorities: list[int] = []

    def handler_started(
        self, bus: EventBus, event: DomainEvent, subscription: Subscription[Any]
    ) -> object:
        self.priorities.append(subscription.priority)
        return None
