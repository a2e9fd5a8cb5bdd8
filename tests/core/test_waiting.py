"""Waiting on events from asyncio code: ``bus.wait_for`` and ``bus.stream``."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from eventbus import EventBus, StreamOverflowError
from tests.core.samples import Ping, Pong
from tests.support import wait_until_async


@pytest.fixture(name="bus")
def _bus() -> EventBus:
    return EventBus(raise_errors=True)


class TestWaitFor:
    """``await bus.wait_for(T, predicate, timeout)`` returns the next matching event."""

    async def test_returns_the_next_event_of_the_type(self, bus: EventBus) -> None:
        """A later publish of the type resolves the wait with that very event."""
        waiting = asyncio.create_task(bus.wait_for(Ping))
        await wait_until_async(lambda: len(bus.subscriptions()) == 1, what="the waiter")
        bus.publish_sync(Pong())
        event = Ping(n=7)
        bus.publish_sync(event)
        assert await asyncio.wait_for(waiting, 5) is event

    async def test_predicate_picks_the_event(self, bus: EventBus) -> None:
        """Events the predicate refuses are passed over."""
        waiting = asyncio.create_task(bus.wait_for(Ping, lambda e: e.n == 3))
        await wait_until_async(lambda: len(bus.subscriptions()) == 1, what="the waiter")
        for n in range(5):
            await bus.publish(Ping(n=n))
        assert (await asyncio.wait_for(waiting, 5)).n == 3

    async def test_timeout_raises_and_unsubscribes(self, bus: EventBus) -> None:
        """No event in time: TimeoutError, and the waiter's subscription is gone."""
        with pytest.raises(TimeoutError):
            await bus.wait_for(Ping, timeout=0.01)
        assert bus.subscriptions() == ()

    async def test_resolved_from_another_thread(self, bus: EventBus) -> None:
        """An event published in a worker thread reaches the waiter on the loop."""
        event = Ping(n=1)
        waiting = asyncio.create_task(bus.wait_for(Ping))
        await wait_until_async(lambda: len(bus.subscriptions()) == 1, what="the waiter")
        thread = threading.Thread(target=bus.publish_sync, args=(event,))
        thread.start()
        assert await asyncio.wait_for(waiting, 5) is event
        thread.join(5)
        assert bus.subscriptions() == ()

    async def test_cancelled_waiter_unsubscribes(self, bus: EventBus) -> None:
        """Cancelling the waiting task cancels its subscription."""
        waiting = asyncio.create_task(bus.wait_for(Ping))
        await wait_until_async(lambda: len(bus.subscriptions()) == 1, what="the waiter")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert bus.subscriptions() == ()


class TestStream:
    """``bus.stream(T)``: an async iterator over later events, bounded, closed cleanly."""

    async def test_yields_events_in_publish_order(self, bus: EventBus) -> None:
        """Events published after the call come out in order; others are not seen."""
        bus.publish_sync(Ping(n=-1))  # before the stream: not seen
        async with bus.stream(Ping) as pings:
            for n in range(3):
                bus.publish_sync(Ping(n=n))
            got = [(await anext(pings)).n for _ in range(3)]
        assert got == [0, 1, 2]

    async def test_block_end_unsubscribes_and_ends_iteration(self, bus: EventBus) -> None:
        """Leaving ``async with`` unsubscribes; iterating a closed stream stops."""
        async with bus.stream(Ping) as pings:
            assert len(bus.subscriptions()) == 1
        assert bus.subscriptions() == ()
        assert pings.closed
        assert [e async for e in pings] == []

    async def test_break_out_of_async_for_then_block_end(self, bus: EventBus) -> None:
        """A consumer that breaks out of ``async for`` leaves no subscription behind."""

        async def consume() -> list[int]:
            seen: list[int] = []
            async with bus.stream(Ping) as pings:
                async for event in pings:
                    seen.append(event.n)
                    if event.n == 1:
                        break
            return seen

        consumer = asyncio.create_task(consume())
        await wait_until_async(lambda: len(bus.subscriptions()) == 1, what="the stream")
        for n in range(3):
            await bus.publish(Ping(n=n))
        assert await asyncio.wait_for(consumer, 5) == [0, 1]
        assert bus.subscriptions() == ()

    async def test_overflow_error_after_the_buffered_events(self, bus: EventBus) -> None:
        """overflow='error': the buffered events, then StreamOverflowError; then closed."""
        async with bus.stream(Ping, maxsize=2) as pings:
            for n in range(4):
                bus.publish_sync(Ping(n=n))
            assert (await anext(pings)).n == 0
            assert (await anext(pings)).n == 1
            with pytest.raises(StreamOverflowError, match="2 events"):
                await anext(pings)
            assert pings.closed
        assert bus.subscriptions() == ()

    async def test_overflow_drop_oldest_keeps_the_newest(self, bus: EventBus) -> None:
        """overflow='drop_oldest': the newest ``maxsize`` events, and a count of the rest."""
        async with bus.stream(Ping, maxsize=2, overflow="drop_oldest") as pings:
            for n in range(5):
                bus.publish_sync(Ping(n=n))
            assert [(await anext(pings)).n for _ in range(2)] == [3, 4]
            assert pings.dropped == 3

    async def test_a_consumer_blocked_on_next_wakes_up(self, bus: EventBus) -> None:
        """A consumer awaiting the next event is woken by a publish from another thread."""
        async with bus.stream(Ping) as pings:
            nxt = asyncio.ensure_future(anext(pings))
            thread = threading.Thread(target=bus.publish_sync, args=(Ping(n=9),))
            thread.start()
            assert (await asyncio.wait_for(nxt, 5)).n == 9
            thread.join(5)

    async def test_a_forgotten_stream_unsubscribes_when_collected(self, bus: EventBus) -> None:
        """A stream dropped without closing holds its subscription only weakly."""
        bus.stream(Ping)
        gc.collect()
        bus.publish_sync(Ping())  # the dead subscription is skipped, then purged
        await wait_until_async(lambda: bus.subscriptions() == (), what="the purge")

    async def test_bad_arguments(self, bus: EventBus) -> None:
        """maxsize below 1 or an unknown overflow policy is a ValueError naming it."""
        with pytest.raises(ValueError, match="maxsize"):
            bus.stream(Ping, maxsize=0)
        with pytest.raises(ValueError, match="overflow"):
            bus.stream(Ping, overflow="block")  # type: ignore[arg-type]
        assert bus.subscriptions() == ()
