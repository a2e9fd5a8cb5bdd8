"""Re-entrant publishing, the depth guard and the dispatch context (ARCHITECTURE §3).

`EventBus.current_event` and `EventBus.event_chain` are exact from the very
first publish, in every thread and task (``eventbus/_context.py``): sync
dispatch keeps a per-thread stack, async dispatch a chain in a ``ContextVar``,
and there is no switch that changes the answers later. Each behaviour is
checked on a *fresh* bus (fast paths), on an *instrumented* one (a signal
receiver sends every publish down the careful, timed paths), and on a
*sequenced* one (a `Sequencer` attached: every plan starts with its
``append``, and every publish here is in local context).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator

import pytest

from eventbus import DomainEvent, EventBus, EventCycleError, signals
from tests.core.samples import Ping, Pong, RecordingSequencer, Zap, numbers

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(name="make_bus", params=["fresh", "instrumented", "sequenced"])
def _make_bus(request: pytest.FixtureRequest) -> Iterator[Callable[..., EventBus]]:
    """Build buses fresh, instrumented, or with a sequencer attached.

    "instrumented" is a fresh bus while a signal receiver is connected, so every
    publish takes the timed dispatch path instead of the fast one. "sequenced"
    attaches a `RecordingSequencer` for every type (as ``bus.sequencer``).
    """

    def make(**kwargs: int | bool) -> EventBus:
        bus = EventBus(**kwargs)  # type: ignore[arg-type]
        if request.param == "sequenced":
            bus.set_sequencer(RecordingSequencer())
        return bus

    if request.param == "instrumented":
        with signals.handler_completed.connected_to(_ignore):
            yield make
    else:
        yield make


def _ignore(sender: object, **kwargs: object) -> None:
    """A signal receiver that does nothing (its presence changes the dispatch path)."""


class TestDepthFirst:
    """A handler may publish; the nested event is dispatched depth-first."""

    def test_nested_publish_order(self, make_bus: Callable[..., EventBus]) -> None:
        """The nested event's handlers all run before the outer event's next handler."""
        bus = make_bus()
        log: list[str] = []

        def first(event: Ping) -> None:
            log.append(f"first:{event.n}")
            if event.n < 2:
                bus.publish_sync(Ping(n=event.n + 1))

        def second(event: Ping) -> None:
            log.append(f"second:{event.n}")

        bus.subscribe(Ping, first)
        bus.subscribe(Ping, second)
        bus.publish_sync(Ping(n=0))
        assert log == [
            "first:0",
            "first:1",
            "first:2",
            "second:2",
            "second:1",
            "second:0",
        ]

    async def test_nested_async_publish_order(self, make_bus: Callable[..., EventBus]) -> None:
        """Under await publish, nesting through sync and async handlers is depth-first."""
        bus = make_bus()
        log: list[str] = []

        async def first(event: Ping) -> None:
            log.append(f"first:{event.n}")
            if event.n < 2:
                await bus.publish(Ping(n=event.n + 1))

        def second(event: Ping) -> None:
            log.append(f"second:{event.n}")

        bus.subscribe(Ping, first)
        bus.subscribe(Ping, second)
        await bus.publish(Ping(n=0))
        assert log == ["first:0", "first:1", "first:2", "second:2", "second:1", "second:0"]


class TestCycles:
    """Re-publishing deeper than max_depth raises EventCycleError naming the chain."""

    def test_ping_pong_cycle(self, make_bus: Callable[..., EventBus]) -> None:
        """An endless Ping -> Pong -> Ping ... cycle stops at max_depth, chain named."""
        bus = make_bus(max_depth=5, raise_errors=True)
        bus.subscribe(Ping, lambda e: bus.publish_sync(Pong()))
        bus.subscribe(Pong, lambda e: bus.publish_sync(Ping()))
        with pytest.raises(ExceptionGroup) as info:
            bus.publish_sync(Ping())
        cycle = _innermost(info.value)
        assert isinstance(cycle, EventCycleError)
        assert cycle.chain == ("Ping", "Pong", "Ping", "Pong", "Ping", "Pong")
        assert "max_depth=5" in str(cycle)
        assert "Ping -> Pong -> Ping -> Pong -> Ping -> Pong" in str(cycle)

    @pytest.mark.parametrize("max_depth", [1, 2, 3, None], ids=["1", "2", "3", "default"])
    def test_exact_limit(self, make_bus: Callable[..., EventBus], max_depth: int | None) -> None:
        """max_depth=N (default 64) allows exactly N levels, from the first publish on."""
        bus = make_bus() if max_depth is None else make_bus(max_depth=max_depth)
        limit = max_depth or 64
        depths: list[int] = []
        refused: list[EventCycleError] = []

        def again(event: Ping) -> None:
            depths.append(event.n)
            try:
                bus.publish_sync(Ping(n=event.n + 1))
            except EventCycleError as exc:
                refused.append(exc)

        bus.subscribe(Ping, again)
        bus.publish_sync(Ping(n=1))
        assert depths == list(range(1, limit + 1))
        assert [len(e.chain) for e in refused] == [limit + 1]

    @pytest.mark.parametrize("max_depth", [1, 2, 3])
    async def test_small_max_depth_async(
        self, make_bus: Callable[..., EventBus], max_depth: int
    ) -> None:
        """The same exact limit under await publish with async handlers."""
        bus = make_bus(max_depth=max_depth)
        depths: list[int] = []
        refused: list[EventCycleError] = []

        async def again(event: Ping) -> None:
            depths.append(event.n)
            try:
                await bus.publish(Ping(n=event.n + 1))
            except EventCycleError as exc:
                refused.append(exc)

        bus.subscribe(Ping, again)
        await bus.publish(Ping(n=1))
        assert depths == list(range(1, max_depth + 1))
        assert [len(e.chain) for e in refused] == [max_depth + 1]

    def test_bus_usable_after_cycle(self, make_bus: Callable[..., EventBus]) -> None:
        """After a cycle error the bus is back at top level and publishes normally."""
        bus = make_bus(max_depth=3)
        sub = bus.subscribe(Ping, lambda e: bus.publish_sync(Ping()))
        bus.publish_sync(Ping())  # the refusal is isolated and logged
        sub.cancel()
        seen: list[DomainEvent | None] = []
        bus.subscribe(Ping, lambda e: seen.append(bus.current_event()))
        event = Ping()
        bus.publish_sync(event)
        assert seen == [event]
        assert bus.current_event() is None


def _innermost(group: BaseException) -> BaseException:
    """Unwrap nested ExceptionGroups (one per level) down to the first leaf."""
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


class TestCurrentEvent:
    """current_event() is the event being dispatched here; None at top level."""

    def test_none_at_top_level(self, make_bus: Callable[..., EventBus]) -> None:
        """Outside any handler there is no current event, before and after publishing."""
        bus = make_bus()
        assert bus.current_event() is None
        assert bus.event_chain() == ()
        bus.subscribe(Ping, lambda e: None)
        bus.publish_sync(Ping())
        assert bus.current_event() is None
        assert bus.event_chain() == ()

    def test_first_publish_and_cached_plan_agree(self, make_bus: Callable[..., EventBus]) -> None:
        """The first publish (plan compiled) and the next (plan cached) see the same chains."""
        bus = make_bus()
        seen: list[tuple[str, object]] = []
        outer, inner = Ping(n=0), Pong(n=1)

        def on_ping(event: Ping) -> None:
            bus.publish_sync(inner)
            seen.append(("outer-after", bus.current_event()))

        def on_pong(event: Pong) -> None:
            seen.append(("inner", bus.current_event()))
            seen.append(("inner-chain", bus.event_chain()))

        bus.subscribe(Ping, on_ping)
        bus.subscribe(Pong, on_pong)
        expected = [("inner", inner), ("inner-chain", (outer, inner)), ("outer-after", outer)]
        for _ in range(2):
            seen.clear()
            bus.publish_sync(outer)
            assert seen == expected
            assert bus.current_event() is None

    def test_sync_every_depth(self, make_bus: Callable[..., EventBus]) -> None:
        """At each nesting depth, before and after publishing, the answer is right."""
        bus = make_bus()
        seen: list[tuple[int, str, object, tuple[int, ...]]] = []

        def handler(event: Ping) -> None:
            chain = numbers(bus.event_chain())
            seen.append((event.n, "before", bus.current_event(), chain))
            if event.n < 3:
                bus.publish_sync(Ping(n=event.n + 1))
            chain = numbers(bus.event_chain())
            seen.append((event.n, "after", bus.current_event(), chain))

        events: dict[int, Ping] = {}
        bus.subscribe(Ping, lambda e: events.__setitem__(e.n, e), priority=1)
        bus.subscribe(Ping, handler)
        bus.publish_sync(Ping(n=0))
        expected = [(n, "before", events[n], tuple(range(n + 1))) for n in range(4)]
        expected += [(n, "after", events[n], tuple(range(n + 1))) for n in reversed(range(4))]
        assert seen == expected
        assert bus.current_event() is None

    async def test_async_every_depth(self, make_bus: Callable[..., EventBus]) -> None:
        """Async and sync handlers under await publish see their own event at each depth."""
        bus = make_bus()
        seen: list[tuple[int, str, int | None]] = []

        def number() -> int | None:
            current = bus.current_event()
            return current.n if isinstance(current, Ping) else None

        async def handler(event: Ping) -> None:
            seen.append((event.n, "async-before", number()))
            await asyncio.sleep(0)  # yield to the loop mid-handler
            if event.n < 2:
                await bus.publish(Ping(n=event.n + 1))
            seen.append((event.n, "async-after", number()))

        bus.subscribe(Ping, lambda e: seen.append((e.n, "sync", number())))
        bus.subscribe(Ping, handler)
        await bus.publish(Ping(n=0))
        assert seen == [
            (0, "sync", 0),
            (0, "async-before", 0),
            (1, "sync", 1),
            (1, "async-before", 1),
            (2, "sync", 2),
            (2, "async-before", 2),
            (2, "async-after", 2),
            (1, "async-after", 1),
            (0, "async-after", 0),
        ]
        assert bus.current_event() is None

    async def test_sync_publish_inside_async_handler(
        self, make_bus: Callable[..., EventBus]
    ) -> None:
        """publish_sync from inside an async handler nests under the async event."""
        bus = make_bus()
        outer, inner = Ping(), Pong()
        seen: list[tuple[DomainEvent, ...]] = []

        async def on_ping(event: Ping) -> None:
            bus.publish_sync(inner)
            seen.append(bus.event_chain())

        bus.subscribe(Ping, on_ping)
        bus.subscribe(Pong, lambda e: seen.append(bus.event_chain()))
        await bus.publish(outer)
        assert seen == [(outer, inner), (outer,)]

    async def test_concurrent_publishes_each_see_their_own(
        self, make_bus: Callable[..., EventBus]
    ) -> None:
        """Two publishes interleaved on one loop: each handler sees its own event."""
        bus = make_bus()
        first, second = Ping(n=1), Ping(n=2)
        entered = {1: asyncio.Event(), 2: asyncio.Event()}
        seen: dict[int, list[object]] = {1: [], 2: []}

        async def handler(event: Ping) -> None:
            seen[event.n].append(bus.current_event())
            entered[event.n].set()
            # Both dispatches are now in flight at once, in two tasks.
            await entered[3 - event.n].wait()
            seen[event.n].append(bus.current_event())
            seen[event.n].append(bus.event_chain())

        bus.subscribe(Ping, handler)
        await asyncio.gather(bus.publish(first), bus.publish(second))
        assert seen == {1: [first, first, (first,)], 2: [second, second, (second,)]}
        assert bus.current_event() is None

    async def test_concurrent_handlers(self, make_bus: Callable[..., EventBus]) -> None:
        """concurrent=True handlers (own tasks) see the event, including nested ones."""
        bus = make_bus()
        outer = Ping(n=0)
        seen: list[tuple[str, tuple[DomainEvent, ...]]] = []
        nested: list[DomainEvent] = []

        async def worker(event: Ping) -> None:
            seen.append((f"worker{event.n}", bus.event_chain()))
            pong = Pong(n=event.n)
            nested.append(pong)
            await bus.publish(pong)

        async def on_pong(event: Pong) -> None:
            seen.append(("pong", bus.event_chain()))

        bus.subscribe(Ping, worker, concurrent=True)
        bus.subscribe(Ping, worker, concurrent=True)
        bus.subscribe(Pong, on_pong)
        await bus.publish(outer)
        workers = [item for item in seen if item[0].startswith("worker")]
        pongs = sorted(
            (item[1] for item in seen if item[0] == "pong"), key=lambda c: nested.index(c[-1])
        )
        assert workers == [("worker0", (outer,)), ("worker0", (outer,))]
        assert pongs == [(outer, pong) for pong in nested]
        assert bus.current_event() is None

    def test_threads_see_their_own(self, make_bus: Callable[..., EventBus]) -> None:
        """Two threads dispatching at once each see their own event (thread-local)."""
        bus = make_bus()
        both_inside = threading.Barrier(2, timeout=10)
        seen: dict[int, list[object]] = {1: [], 2: []}

        def handler(event: Ping) -> None:
            seen[event.n].append(bus.current_event())
            both_inside.wait()  # both dispatches in flight, one per thread
            seen[event.n].append(bus.current_event())

        bus.subscribe(Ping, handler)
        events = {n: Ping(n=n) for n in (1, 2)}
        threads = [threading.Thread(target=bus.publish_sync, args=(events[n],)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert seen == {n: [events[n], events[n]] for n in (1, 2)}
        assert bus.current_event() is None

    def test_separate_buses_do_not_mix(self) -> None:
        """Context is per bus: another bus's dispatch is not this bus's current event."""
        bus_a, bus_b = EventBus(), EventBus()
        seen: list[tuple[tuple[DomainEvent, ...], DomainEvent | None]] = []
        bus_a.subscribe(Ping, lambda e: bus_b.publish_sync(Pong()))
        bus_b.subscribe(Pong, lambda e: seen.append((bus_a.event_chain(), bus_b.current_event())))
        outer = Ping()
        bus_a.publish_sync(outer)
        assert len(seen) == 1
        chain_a, current_b = seen[0]
        assert chain_a == (outer,)
        assert isinstance(current_b, Pong)


class TestTasksThreadsAndLoops:
    """The chain follows tasks and threads started with a copy of the context.

    The async part of a chain is a ``ContextVar``: a task or thread started with
    a copy of the context (``create_task``, ``asyncio.to_thread``) continues it.
    Sync levels are on their thread's stack: a task started by a sync handler
    does not see them (publish inside ``caused_by(event)`` there), and a loop
    run inside a sync handler (``asyncio.run``) nests under its event.
    """

    async def test_nesting_on_the_async_fast_path(self, make_bus: Callable[..., EventBus]) -> None:
        """A cached async plan whose handler nests: exact chain and exact limit."""
        bus = make_bus(max_depth=2)
        chains: list[tuple[int, ...]] = []
        refused: list[EventCycleError] = []

        async def handler(event: Ping) -> None:
            if event.n >= 99:
                return  # the warm-up publish: compiles and caches the plan
            chains.append(numbers(bus.event_chain()))
            try:
                await bus.publish(Ping(n=event.n + 1))
            except EventCycleError as exc:
                refused.append(exc)

        bus.subscribe(Ping, handler)
        await bus.publish(Ping(n=99))
        await bus.publish(Ping(n=0))
        assert chains == [(0,), (0, 1)]
        assert [len(e.chain) for e in refused] == [3]

    @pytest.mark.parametrize("max_depth", [1, 2, 3])
    async def test_sync_publishes_under_an_async_dispatch(
        self, make_bus: Callable[..., EventBus], max_depth: int
    ) -> None:
        """publish_sync inside an async handler nests under it; the limit counts both kinds."""
        bus = make_bus(max_depth=max_depth)
        chains: list[tuple[int, ...]] = []
        refused: list[EventCycleError] = []

        async def on_ping(event: Ping) -> None:
            if event.n < 99:
                republish(event)

        def republish(event: DomainEvent) -> None:
            chains.append(numbers(bus.event_chain()))
            try:
                bus.publish_sync(Pong(n=numbers([event])[0] + 1))
            except EventCycleError as exc:
                refused.append(exc)

        bus.subscribe(Ping, on_ping)
        bus.subscribe(Pong, republish)
        await bus.publish(Ping(n=99))  # warm-up: plans cached
        await bus.publish(Ping(n=0))
        assert chains == [tuple(range(k + 1)) for k in range(max_depth)]
        assert [e.chain for e in refused] == [("Ping",) + ("Pong",) * max_depth]

    async def test_sibling_tasks_each_see_their_own(
        self, make_bus: Callable[..., EventBus]
    ) -> None:
        """Two roots in flight in sibling tasks: each nested chain holds its own root only."""
        bus = make_bus()
        inside = {1: asyncio.Event(), 2: asyncio.Event()}
        seen: dict[int, list[tuple[int, ...]]] = {1: [], 2: []}

        async def handler(event: Ping) -> None:
            root = event.n // 10
            if event.n % 10 == 0:
                inside[root].set()
                await inside[3 - root].wait()  # both roots in flight at once
                await bus.publish(Ping(n=event.n + 1))
            seen[root].append(numbers(bus.event_chain()))

        bus.subscribe(Ping, handler)
        await asyncio.gather(bus.publish(Ping(n=10)), bus.publish(Ping(n=20)))
        assert seen == {1: [(10, 11), (10,)], 2: [(20, 21), (20,)]}

    async def test_sibling_task_does_not_count_as_depth(
        self, make_bus: Callable[..., EventBus]
    ) -> None:
        """max_depth=2 allows two levels in a task even while a sibling task is dispatching."""
        bus = make_bus(max_depth=2)
        a_inside, b_done = asyncio.Event(), asyncio.Event()
        refused: list[EventCycleError] = []

        async def handler(event: Ping) -> None:
            if event.n == 0:  # task A: stays in flight
                a_inside.set()
                await b_done.wait()
            elif event.n == 10:  # task B: nests one level while A is in flight
                await a_inside.wait()
                try:
                    await bus.publish(Ping(n=11))
                except EventCycleError as exc:
                    refused.append(exc)
                b_done.set()

        bus.subscribe(Ping, handler)
        await asyncio.wait_for(
            asyncio.gather(bus.publish(Ping(n=0)), bus.publish(Ping(n=10))), timeout=10
        )
        assert refused == []

    async def test_to_thread_from_an_async_handler(self, make_bus: Callable[..., EventBus]) -> None:
        """publish_sync run via asyncio.to_thread from a handler nests under its event."""
        bus = make_bus()
        seen: list[tuple[int, ...]] = []

        async def on_ping(event: Ping) -> None:
            if event.n == 0:
                await asyncio.to_thread(bus.publish_sync, Pong(n=1))

        def on_pong(event: Pong) -> None:
            seen.append(numbers(bus.event_chain()))
            if event.n < 3:
                bus.publish_sync(Pong(n=event.n + 1))  # nested again, in the worker thread

        bus.subscribe(Ping, on_ping)
        bus.subscribe(Pong, on_pong)
        await bus.publish(Ping(n=5))  # warm-up: plan cached
        await bus.publish(Ping(n=0))
        assert seen == [(0, 1), (0, 1, 2), (0, 1, 2, 3)]

    async def test_to_thread_depth_counts_the_async_levels(self) -> None:
        """In the worker thread the limit counts the levels of the task that started it."""
        bus = EventBus(max_depth=3)
        refused: list[EventCycleError] = []
        chains: list[tuple[int, ...]] = []

        async def on_ping(event: Ping) -> None:
            if event.n == 0:
                await bus.publish(Ping(n=1))
            else:
                await asyncio.to_thread(bus.publish_sync, Pong(n=2))

        def on_pong(event: Pong) -> None:
            chains.append(numbers(bus.event_chain()))
            try:
                bus.publish_sync(Pong(n=event.n + 1))
            except EventCycleError as exc:
                refused.append(exc)

        bus.subscribe(Ping, on_ping)
        bus.subscribe(Pong, on_pong)
        await bus.publish(Ping(n=0))
        assert chains == [(0, 1, 2)]
        assert [e.chain for e in refused] == [("Ping", "Ping", "Pong", "Pong")]

    async def test_task_created_in_an_async_dispatch_continues_its_chain(
        self, make_bus: Callable[..., EventBus]
    ) -> None:
        """A task a handler of ``await publish`` starts sees the handler's chain, even later."""
        bus = make_bus()
        seen: list[tuple[int, ...]] = []
        tasks: list[asyncio.Task[None]] = []

        async def spawned() -> None:
            seen.append(numbers(bus.event_chain()))

        def handler(event: Ping) -> None:  # sync, but under an async dispatch
            tasks.append(asyncio.ensure_future(spawned()))

        bus.subscribe(Ping, handler)
        await bus.publish(Ping(n=1))
        await asyncio.gather(*tasks)  # the dispatch is over; the copy remains
        assert seen == [(1,)]

    async def test_task_created_in_a_sync_dispatch_sees_its_async_part_only(
        self, make_bus: Callable[..., EventBus]
    ) -> None:
        """Sync levels stay on their thread: a task started by a sync handler does not see them.

        Under ``await publish(Ping)`` a sync handler of ``publish_sync(Pong)``
        starts a task: it sees (Ping,). A task started by a sync handler of a
        root ``publish_sync`` sees nothing: it publishes roots (or uses
        ``caused_by``).
        """
        bus = make_bus()
        seen: dict[int, tuple[int, ...]] = {}
        tasks: list[asyncio.Task[None]] = []

        async def spawned(n: int) -> None:
            seen[n] = numbers(bus.event_chain())

        async def on_ping(event: Ping) -> None:
            bus.publish_sync(Pong(n=1))

        def on_pong(event: Pong) -> None:
            tasks.append(asyncio.ensure_future(spawned(event.n)))

        bus.subscribe(Ping, on_ping)
        bus.subscribe(Pong, on_pong)
        await bus.publish(Ping(n=0))
        bus.publish_sync(Pong(n=2))  # a root sync dispatch, on the loop's thread
        await asyncio.gather(*tasks)
        assert seen == {1: (0,), 2: ()}

    def test_asyncio_run_inside_a_sync_handler(self, make_bus: Callable[..., EventBus]) -> None:
        """A loop run by a sync handler nests under that handler's event."""
        bus = make_bus()
        outer, inner = Ping(), Pong()
        seen: list[tuple[DomainEvent, ...]] = []

        async def on_pong(event: Pong) -> None:
            seen.append(bus.event_chain())

        bus.subscribe(Pong, on_pong)
        bus.subscribe(Ping, lambda e: asyncio.run(bus.publish(inner)))
        bus.publish_sync(outer)
        assert seen == [(outer, inner)]
        assert bus.event_chain() == ()

    @pytest.mark.parametrize("max_depth", [2, 3, 4])
    def test_async_nesting_inside_that_loop(
        self, make_bus: Callable[..., EventBus], max_depth: int
    ) -> None:
        """Nested awaits inside a loop a sync handler runs: each event once, exact limit.

        A regression: every async level copied the thread's sync stack into its
        chain again, so the chain read (0, 1, 0, 2) and the limit came early.
        """
        bus = make_bus(max_depth=max_depth)
        chains: list[tuple[int, ...]] = []
        refused: list[EventCycleError] = []

        async def on_pong(event: Pong) -> None:
            chain = numbers(bus.event_chain())
            chains.append(chain)
            if len(chain) < max_depth:
                bus.publish_sync(Zap(n=10 + event.n))  # a sync level inside the loop too
            try:
                await bus.publish(Pong(n=event.n + 1))
            except EventCycleError as exc:
                refused.append(exc)

        bus.subscribe(Pong, on_pong)
        bus.subscribe(Zap, lambda e: chains.append(numbers(bus.event_chain())))
        bus.subscribe(Ping, lambda e: asyncio.run(bus.publish(Pong(n=1))))
        bus.publish_sync(Ping(n=0))
        expected: list[tuple[int, ...]] = []
        for n in range(1, max_depth):
            expected.append(tuple(range(n + 1)))
            if n + 1 < max_depth:
                expected.append((*range(n + 1), 10 + n))
        assert chains == expected
        assert [e.chain for e in refused] == [("Ping",) + ("Pong",) * max_depth]

    @pytest.mark.parametrize("max_depth", [2, 3, 4])
    def test_task_of_that_loop_publishing_after_its_dispatch(
        self, make_bus: Callable[..., EventBus], max_depth: int
    ) -> None:
        """A task an async handler in that loop started, run after the handler: exact limit.

        A regression: once the loop's async dispatch was over, the sync fast
        path trusted the thread's stack alone, which does not show the task's
        async levels, and let its publishes go one level too deep.
        """
        bus = make_bus(max_depth=max_depth)
        chains: list[tuple[int, ...]] = []
        refused: list[EventCycleError] = []
        tasks: list[asyncio.Task[None]] = []

        def publish(event: Zap) -> None:
            try:
                bus.publish_sync(event)
            except EventCycleError as exc:
                refused.append(exc)

        async def spawned() -> None:
            publish(Zap(n=2))

        async def on_pong(event: Pong) -> None:
            tasks.append(asyncio.ensure_future(spawned()))  # runs after this dispatch

        def on_zap(event: Zap) -> None:
            chains.append(numbers(bus.event_chain()))
            publish(Zap(n=event.n + 1))

        def on_ping(event: Ping) -> None:
            async def main() -> None:
                await bus.publish(Pong(n=1))
                await asyncio.gather(*tasks)

            asyncio.run(main())

        bus.subscribe(Ping, on_ping)
        bus.subscribe(Pong, on_pong)
        bus.subscribe(Zap, on_zap)
        bus.publish_sync(Ping(n=0))
        assert chains == [tuple(range(k + 1)) for k in range(2, max_depth)]
        assert [e.chain for e in refused] == [("Ping", "Pong") + ("Zap",) * (max_depth - 1)]
        # And the thread is back to normal: a root nests to exactly max_depth.
        chains.clear()
        refused.clear()
        bus.publish_sync(Zap(n=0))
        assert chains == [tuple(range(k + 1)) for k in range(max_depth)]
        assert [len(e.chain) for e in refused] == [max_depth + 1]

    def test_context_copied_in_that_loop_used_after_it(self) -> None:
        """A context copied inside the nested loop, run later on the same thread: still exact.

        The copy remembers that its chain holds the thread's sync stack of that
        moment; later the stack holds something else, which is not skipped.
        """
        bus = EventBus()
        saved: list[contextvars.Context] = []
        seen: list[tuple[int, ...]] = []

        async def on_pong(event: Pong) -> None:
            saved.append(contextvars.copy_context())

        bus.subscribe(Pong, on_pong)
        bus.subscribe(Ping, lambda e: asyncio.run(bus.publish(Pong(n=1))))
        bus.subscribe(Zap, lambda e: seen.append(numbers(bus.event_chain())))
        bus.publish_sync(Ping(n=0))
        saved[0].run(bus.publish_sync, Zap(n=2))
        assert seen == [(0, 1, 2)]

    async def test_top_level_publish_while_a_threadsafe_event_is_in_flight(self) -> None:
        """A thread's top-level publish_sync is its own root (depth 1), whatever that
        thread handed to the loop with publish_threadsafe and is still running there."""
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
            bus.publish_sync(Pong())
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


class TestCausedBy:
    """Publishing later, on behalf of a cause, makes derived events, not roots."""

    async def test_events_published_inside_are_derived(self) -> None:
        """A handler sees (cause, event); after the block, publishing makes roots again."""
        bus = EventBus()
        chains: list[tuple[int, ...]] = []

        async def handler(event: Ping) -> None:
            chains.append(numbers(bus.event_chain()))

        bus.subscribe(Ping, handler)
        with bus.caused_by(Ping(n=1)):
            await bus.publish(Ping(n=2))
        await bus.publish(Ping(n=3))
        assert chains == [(1, 2), (3,)]

    def test_counts_towards_max_depth(self) -> None:
        """The cause is one level: with max_depth=1 nothing can be published inside."""
        bus = EventBus(max_depth=1)
        bus.subscribe(Ping, lambda e: None)
        with bus.caused_by(Ping(n=1)), pytest.raises(EventCycleError):
            bus.publish_sync(Ping(n=2))

    def test_refused_inside_a_sync_dispatch(self) -> None:
        """Inside a sync handler publishing is derived already: a clear error, not a wrong chain."""
        bus = EventBus(raise_errors=True)
        errors: list[BaseException] = []

        def handler(event: Ping) -> None:
            try:
                with bus.caused_by(Ping(n=9)):
                    pass
            except RuntimeError as exc:
                errors.append(exc)

        bus.subscribe(Ping, handler)
        bus.publish_sync(Ping(n=1))
        assert len(errors) == 1
        assert "inside a sync dispatch" in str(errors[0])
