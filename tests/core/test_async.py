"""Asynchronous dispatch: `EventBus.publish`, concurrent handlers, `publish_threadsafe`.

Concurrency is proven with handshakes between handlers (asyncio.Event), never
with timing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import threading
from typing import Any

import pytest

from eventbus import BusNotRunningError, DomainEvent, EventBus, signals
from tests.core.samples import Ping, Pong
from tests.support import wait_until_async

pytestmark = pytest.mark.timeout(30)


class TestAwaitPublish:
    """await publish runs sync handlers inline and awaits async ones, in order."""

    async def test_sync_and_async_in_priority_order(self, bus: EventBus) -> None:
        """Mixed handlers run strictly in plan order, each async one awaited to the end."""
        log: list[str] = []

        def sync_handler(tag: str) -> Any:
            def handler(event: Ping) -> None:
                log.append(tag)

            return handler

        def async_handler(tag: str) -> Any:
            async def handler(event: Ping) -> None:
                log.append(f"{tag}:start")
                await asyncio.sleep(0)  # give anything else a chance to run
                log.append(f"{tag}:end")

            return handler

        bus.subscribe(Ping, sync_handler("s-low"), priority=-1)
        bus.subscribe(Ping, async_handler("a1"))
        bus.subscribe(Ping, sync_handler("s0"))
        bus.subscribe(Ping, async_handler("a-high"), priority=5)
        await bus.publish(Ping())
        assert log == ["a-high:start", "a-high:end", "a1:start", "a1:end", "s0", "s-low"]
        # The cached plan (fast path) keeps the same order.
        log.clear()
        await bus.publish(Ping())
        assert log == ["a-high:start", "a-high:end", "a1:start", "a1:end", "s0", "s-low"]

    async def test_publish_with_no_handlers(self, bus: EventBus) -> None:
        """Publishing a type nobody listens to is a no-op."""
        await bus.publish(Ping())
        await bus.publish(Ping())

    async def test_async_callable_object(self, bus: EventBus) -> None:
        """An object with ``async def __call__`` is awaited."""
        seen: list[DomainEvent] = []

        class Handler:
            async def __call__(self, event: DomainEvent) -> None:
                await asyncio.sleep(0)
                seen.append(event)

        bus.subscribe(Ping, Handler())
        event = Ping()
        await bus.publish(event)
        assert seen == [event]

    async def test_once_async(self, bus: EventBus) -> None:
        """once=True works for async handlers."""
        seen: list[DomainEvent] = []

        async def handler(event: Ping) -> None:
            seen.append(event)

        sub = bus.subscribe(Ping, handler, once=True)
        await bus.publish(Ping())
        await bus.publish(Ping())
        assert len(seen) == 1
        assert not sub.active

    async def test_subscription_made_while_awaiting_misses_the_event(self, bus: EventBus) -> None:
        """A handler subscribed during an await of the dispatch waits for the next event."""
        late: list[DomainEvent] = []

        async def subscribes(event: Ping) -> None:
            await asyncio.sleep(0)
            if event.n == 1:
                bus.subscribe(Ping, late.append)

        bus.subscribe(Ping, subscribes)
        await bus.publish(Ping(n=1))
        assert late == []
        second = Ping(n=2)
        await bus.publish(second)
        assert late == [second]


class TestSkippedAsyncCalls:
    """Wrappers that skip the call (once already used, weak target dead) stay awaitable."""

    async def test_once_async_raced_by_two_tasks(self, strict_bus: EventBus) -> None:
        """Two tasks publishing at once through the same plan: one delivery, no error."""
        seen: list[DomainEvent] = []
        gate = asyncio.Event()

        async def handler(event: Ping) -> None:
            seen.append(event)

        held: list[Ping] = []

        async def hold(event: Ping) -> None:
            held.append(event)
            await gate.wait()  # both publishes are now past plan lookup

        strict_bus.subscribe(Ping, hold, priority=1)
        strict_bus.subscribe(Ping, handler, once=True)
        await strict_bus.publish(Pong())  # any publish: binds the loop, nothing else
        first = asyncio.ensure_future(strict_bus.publish(Ping(n=1)))
        second = asyncio.ensure_future(strict_bus.publish(Ping(n=2)))
        await wait_until_async(lambda: len(held) == 2, what="both publishes holding")
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), timeout=10)  # no ExceptionGroup
        assert len(seen) == 1

    async def test_once_async_reentrant(self, strict_bus: EventBus) -> None:
        """An async once-handler re-publishing its own type runs once, without error."""
        seen: list[int] = []

        async def handler(event: Ping) -> None:
            seen.append(event.n)
            await strict_bus.publish(Ping(n=event.n + 1))

        strict_bus.subscribe(Ping, handler, once=True)
        await strict_bus.publish(Ping(n=0))
        assert seen == [0]

    async def test_once_async_in_a_plan_shared_by_a_nested_publish(
        self, strict_bus: EventBus
    ) -> None:
        """Another handler re-publishes first: the once-handler runs once (nested), fails never.

        The outer dispatch reaches the once-handler after the nested one used
        it: the skipped call must still be awaitable (it was ``await None``, a
        TypeError raised from a publish in which nothing failed).
        """
        seen: list[tuple[str, int]] = []

        async def republish(event: Ping) -> None:
            if event.n == 0:
                await strict_bus.publish(Ping(n=1))

        async def once(event: Ping) -> None:
            seen.append(("once", event.n))

        strict_bus.subscribe(Ping, republish, priority=1)
        strict_bus.subscribe(Ping, once, once=True)
        await strict_bus.publish(Ping(n=0))
        assert seen == [("once", 1)]

    @pytest.mark.parametrize("concurrent", [False, True])
    async def test_weak_async_target_died_mid_dispatch(
        self, strict_bus: EventBus, concurrent: bool
    ) -> None:
        """A weak async handler whose object dies during the dispatch is skipped, not failed."""
        seen: list[DomainEvent] = []

        class Listener:
            async def on_ping(self, event: Ping) -> None:
                seen.append(event)

        holder = [Listener()]

        def kill(event: Ping) -> None:
            holder.clear()
            gc.collect()

        strict_bus.subscribe(Ping, kill, priority=1)
        sub = strict_bus.subscribe(Ping, holder[0].on_ping, weak=True, concurrent=concurrent)
        await strict_bus.publish(Ping())  # the plan was taken before the listener died
        assert seen == []
        assert not sub.active
        await strict_bus.publish(Ping())
        assert seen == []


class TestConcurrent:
    """concurrent=True: handlers run as tasks at once; publish waits for them all."""

    async def test_handlers_run_concurrently_and_publish_waits(self, bus: EventBus) -> None:
        """Each of two handlers waits for the other's signal: only concurrency completes."""
        a_started, b_started = asyncio.Event(), asyncio.Event()
        finished: list[str] = []

        async def handler_a(event: Ping) -> None:
            a_started.set()
            await b_started.wait()
            await asyncio.sleep(0)
            finished.append("a")

        async def handler_b(event: Ping) -> None:
            b_started.set()
            await a_started.wait()
            await asyncio.sleep(0)
            finished.append("b")

        bus.subscribe(Ping, handler_a, concurrent=True)
        bus.subscribe(Ping, handler_b, concurrent=True)
        # Sequential awaiting would deadlock here; the timeout turns that into a failure.
        await asyncio.wait_for(bus.publish(Ping()), timeout=10)
        assert sorted(finished) == ["a", "b"]  # publish returned only after both

    async def test_concurrent_with_sequential_handlers(self, bus: EventBus) -> None:
        """A sequential handler after a concurrent one runs without waiting for it."""
        release = asyncio.Event()
        log: list[str] = []

        async def background(event: Ping) -> None:
            log.append("background:start")
            await release.wait()
            log.append("background:end")

        async def releaser(event: Ping) -> None:
            log.append("releaser")
            release.set()

        bus.subscribe(Ping, background, concurrent=True, priority=1)
        bus.subscribe(Ping, releaser)
        await asyncio.wait_for(bus.publish(Ping()), timeout=10)
        # The task may start before or after the releaser; it can only end after it.
        assert sorted(log) == ["background:end", "background:start", "releaser"]
        assert log[-1] == "background:end"

    def test_concurrent_needs_async_handler(self, bus: EventBus) -> None:
        """concurrent=True with a sync handler is refused, naming the handler."""

        def sync_handler(event: Ping) -> None:
            """Not async."""

        with pytest.raises(TypeError, match=r"concurrent=True.*sync_handler"):
            bus.subscribe(Ping, sync_handler, concurrent=True)

    async def test_concurrent_failures_isolated_and_grouped(self, strict_bus: EventBus) -> None:
        """A failing concurrent handler does not stop its sibling; raise_errors groups it."""
        done: list[str] = []
        error = ValueError("concurrent failure")

        async def fails(event: Ping) -> None:
            await asyncio.sleep(0)
            raise error

        async def works(event: Ping) -> None:
            await asyncio.sleep(0)
            done.append("works")

        strict_bus.subscribe(Ping, fails, concurrent=True)
        strict_bus.subscribe(Ping, works, concurrent=True)
        with pytest.raises(ExceptionGroup) as info:
            await strict_bus.publish(Ping())
        assert list(info.value.exceptions) == [error]
        assert done == ["works"]

    async def test_cancelling_publish_cancels_concurrent_tasks(self, bus: EventBus) -> None:
        """If the publishing task is cancelled, its concurrent handler tasks are too."""
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def forever(event: Ping) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        bus.subscribe(Ping, forever, concurrent=True)
        task = asyncio.ensure_future(bus.publish(Ping()))
        await asyncio.wait_for(started.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(cancelled.wait(), timeout=10)

    async def test_failure_after_a_cancelled_handler_is_reported(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A later concurrent handler's failure is logged and signalled; the cancel propagates."""
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


class TestAsyncErrors:
    """Error isolation under await publish, and BaseExceptions propagating."""

    async def test_one_of_three_fails(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """1 of 3 async handlers raises: the others run, it is logged and signalled."""
        log: list[str] = []
        failures: list[dict[str, Any]] = []

        async def first(event: Ping) -> None:
            log.append("first")

        async def broken(event: Ping) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("async boom")

        def third(event: Ping) -> None:
            log.append("third")

        for handler in (first, broken, third):
            bus.subscribe(Ping, handler)

        def on_failed(sender: object, **kw: Any) -> None:
            failures.append(kw)

        event = Ping()
        with (
            signals.handler_failed.connected_to(on_failed, sender=bus),
            caplog.at_level(logging.ERROR, logger="eventbus"),
        ):
            await bus.publish(event)  # does not raise
        assert log == ["first", "third"]
        assert [(f["event"], f["handler"]) for f in failures] == [(event, broken)]
        assert str(failures[0]["exception"]) == "async boom"
        messages = [r.getMessage() for r in caplog.records if r.name == "eventbus"]
        assert len(messages) == 1
        assert "broken" in messages[0]

    async def test_raise_errors_groups_all(self, strict_bus: EventBus) -> None:
        """raise_errors=True under await publish: every handler runs, then one group."""
        log: list[str] = []
        errors = [ValueError("a"), TypeError("b")]

        async def fail_a(event: Ping) -> None:
            raise errors[0]

        def fail_b(event: Ping) -> None:
            raise errors[1]

        async def last(event: Ping) -> None:
            log.append("last")

        for handler in (fail_a, fail_b, last):
            strict_bus.subscribe(Ping, handler)
        with pytest.raises(ExceptionGroup) as info:
            await strict_bus.publish(Ping())
        assert list(info.value.exceptions) == errors
        assert log == ["last"]

    async def test_cancelled_error_propagates(self, bus: EventBus) -> None:
        """CancelledError from an async handler is not swallowed; later handlers don't run."""
        log: list[str] = []

        async def cancel_me(event: Ping) -> None:
            raise asyncio.CancelledError

        bus.subscribe(Ping, cancel_me)
        bus.subscribe(Ping, lambda e: log.append("after"))
        with pytest.raises(asyncio.CancelledError):
            await bus.publish(Ping())
        assert log == []

    async def test_cancelled_error_from_concurrent_handler_propagates(self, bus: EventBus) -> None:
        """A concurrent handler that cancels itself makes publish raise CancelledError."""

        async def cancel_me(event: Ping) -> None:
            raise asyncio.CancelledError

        bus.subscribe(Ping, cancel_me, concurrent=True)
        with pytest.raises(asyncio.CancelledError):
            await bus.publish(Ping())

    async def test_keyboard_interrupt_propagates(self, bus: EventBus) -> None:
        """KeyboardInterrupt from an async handler reaches the publisher untouched."""

        async def interrupt(event: Ping) -> None:
            raise KeyboardInterrupt

        sub = bus.subscribe(Ping, interrupt)
        with pytest.raises(KeyboardInterrupt):
            await bus.publish(Ping())
        sub.cancel()
        await bus.publish(Ping())  # still usable

    async def test_cancelling_a_publish_mid_handler(self, bus: EventBus) -> None:
        """Cancelling the publishing task stops the dispatch with CancelledError."""
        started = asyncio.Event()
        log: list[str] = []

        async def waits(event: Ping) -> None:
            started.set()
            await asyncio.Event().wait()

        bus.subscribe(Ping, waits)
        bus.subscribe(Ping, lambda e: log.append("after"))
        task = asyncio.ensure_future(bus.publish(Ping()))
        await asyncio.wait_for(started.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log == []
        # The bus was left consistent: a later publish still works and is top level.
        seen: list[object] = []
        bus.subscribe(Pong, lambda e: seen.append(bus.event_chain()))
        pong = Pong()
        await bus.publish(pong)
        assert seen == [(pong,)]


class TestPublishThreadsafe:
    """publish_threadsafe hands an event from another thread to the bus's loop."""

    async def test_from_a_thread_onto_the_running_loop(self, bus: EventBus) -> None:
        """After start(), a thread's event is dispatched on the loop thread."""
        loop_thread = threading.get_ident()
        seen: list[tuple[DomainEvent, int]] = []

        async def handler(event: Ping) -> None:
            await asyncio.sleep(0)
            seen.append((event, threading.get_ident()))

        bus.subscribe(Ping, handler)
        await bus.start()
        event = Ping()

        def from_thread() -> int:
            assert threading.get_ident() != loop_thread
            bus.publish_threadsafe(event).result(timeout=10)
            return len(seen)

        delivered_before_return = await asyncio.to_thread(from_thread)
        assert delivered_before_return == 1  # the future resolved after the handlers ran
        assert seen == [(event, loop_thread)]
        await bus.aclose()

    async def test_future_carries_handler_failures(self, strict_bus: EventBus) -> None:
        """With raise_errors=True the returned future holds the ExceptionGroup."""

        def broken(event: Ping) -> None:
            raise ValueError("from the loop")

        strict_bus.subscribe(Ping, broken)
        await strict_bus.start()

        def from_thread() -> BaseException | None:
            return strict_bus.publish_threadsafe(Ping()).exception(timeout=10)

        exc = await asyncio.to_thread(from_thread)
        assert isinstance(exc, ExceptionGroup)
        assert [str(e) for e in exc.exceptions] == ["from the loop"]
        await strict_bus.aclose()

    def test_without_a_loop(self, bus: EventBus) -> None:
        """A bus never started has no loop: BusNotRunningError, with a hint."""
        with pytest.raises(BusNotRunningError, match="start"):
            bus.publish_threadsafe(Ping())

    def test_after_the_loop_closed(self, bus: EventBus) -> None:
        """A bus whose loop has closed refuses too, instead of hanging."""

        async def run() -> None:
            await bus.start()
            await bus.aclose()

        asyncio.run(run())
        with pytest.raises(BusNotRunningError):
            bus.publish_threadsafe(Ping())


class TestTimeouts:
    """Issue 11.9: ``timeout=`` per subscription and ``EventBus(default_timeout=)``.

    A hanging async handler is cancelled after its timeout and counts as a
    failure with a `TimeoutError`; the handlers after it still run.
    """

    @staticmethod
    async def hang(event: DomainEvent) -> None:
        """Never returns on its own."""
        await asyncio.Event().wait()

    async def test_timed_out_handler_is_a_failure(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Logged, sent on handler_failed, and the next handler runs."""
        failures: list[BaseException] = []
        ran: list[int] = []

        def on_failed(sender: object, *, exception: BaseException, **kw: Any) -> None:
            failures.append(exception)

        bus.subscribe(Ping, self.hang, timeout=0.05)
        bus.subscribe(Ping, lambda e: ran.append(e.n))
        with (
            signals.handler_failed.connected_to(on_failed, sender=bus),
            caplog.at_level(logging.ERROR, logger="eventbus"),
        ):
            await asyncio.wait_for(bus.publish(Ping(n=1)), 10)
        assert ran == [1]
        assert len(failures) == 1
        assert isinstance(failures[0], TimeoutError)
        assert "TestTimeouts.hang timed out after 0.05 s" in str(failures[0])
        assert "TestTimeouts.hang failed on Ping" in caplog.text

    async def test_raise_errors_group(self, strict_bus: EventBus) -> None:
        """Under raise_errors the TimeoutError is in the group, with its handler's note."""
        ran: list[int] = []
        strict_bus.subscribe(Ping, self.hang, timeout=0.05, concurrent=True)
        strict_bus.subscribe(Ping, lambda e: ran.append(e.n))
        with pytest.raises(ExceptionGroup) as info:
            await asyncio.wait_for(strict_bus.publish(Ping(n=1)), 10)
        (error,) = info.value.exceptions
        assert isinstance(error, TimeoutError)
        assert any("TestTimeouts.hang" in note for note in error.__notes__)
        assert ran == [1]

    async def test_bus_default_and_opting_out(self) -> None:
        """The bus default applies to async handlers without their own; inf opts out."""
        bus = EventBus(default_timeout=0.05)
        assert bus.default_timeout == 0.05
        assert bus.subscribe(Ping, self.hang).timeout == 0.05
        assert bus.subscribe(Pong, self.hang, timeout=math.inf).timeout is None
        assert bus.subscribe(Ping, lambda e: None).timeout is None  # sync: not interruptible
        assert bus.subscribe(Pong, self.hang, timeout=2).timeout == 2
        failures: list[BaseException] = []
        bus.subscribe(Ping, lambda e: None)

        def on_failed(sender: object, *, exception: BaseException, **kw: Any) -> None:
            failures.append(exception)

        with signals.handler_failed.connected_to(on_failed, sender=bus):
            await asyncio.wait_for(bus.publish(Ping()), 10)
        assert [type(f) for f in failures] == [TimeoutError]

    async def test_publish_threadsafe_future_completes(self) -> None:
        """A hanging handler no longer leaves the publish_threadsafe future pending."""
        bus = EventBus(default_timeout=0.05, raise_errors=True)
        bus.subscribe(Ping, self.hang)
        await bus.start()

        def from_thread() -> BaseException | None:
            return bus.publish_threadsafe(Ping()).exception(timeout=10)

        exc = await asyncio.to_thread(from_thread)
        assert isinstance(exc, ExceptionGroup)
        assert [type(e) for e in exc.exceptions] == [TimeoutError]
        await bus.aclose()

    @pytest.mark.parametrize(
        ("timeout", "error"),
        [
            (0, ValueError),
            (-1, ValueError),
            (math.nan, ValueError),
            ("1", TypeError),
            (True, TypeError),
        ],
    )
    def test_invalid_timeouts(self, bus: EventBus, timeout: Any, error: type[Exception]) -> None:
        """Timeouts are positive numbers of seconds; the bus default too."""
        with pytest.raises(error):
            bus.subscribe(Ping, self.hang, timeout=timeout)
        with pytest.raises(error):
            EventBus(default_timeout=timeout)

    def test_sync_handler_refuses_a_timeout(self, bus: EventBus) -> None:
        """A sync handler cannot be interrupted: timeout= on one is a TypeError."""
        with pytest.raises(TypeError, match="async handler"):
            bus.subscribe(Ping, lambda e: None, timeout=1)
