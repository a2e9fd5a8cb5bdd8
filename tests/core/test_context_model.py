"""A model of the dispatch chain, checked against the bus (hypothesis, stateful).

Each event carries a *script*: what its handler does, step by step. Scripts
nest every way a chain can grow or travel: ``publish_sync`` (also under an
async dispatch), ``await publish``, a concurrent handler, a task created in a
handler, ``asyncio.to_thread``, ``caused_by``, and ``asyncio.run`` inside a
sync handler. The interpreter predicts, before each publish, the chain its
handler must see, with these rules (module ``eventbus._context``):

* a handler's chain is its publisher's chain plus its event;
* a task, or a thread started with a copy of the context, continues the async
  part of the chain where it was started: up to the last level dispatched
  asynchronously (or by ``caused_by``). Sync levels stay on their thread, so
  a task also sees the sync levels that are in progress on its thread while
  it runs: those outside the loop it runs on;
* ``caused_by`` raises RuntimeError while a sync dispatch is in progress on
  the thread;
* a publish raises EventCycleError exactly when the chain would exceed
  ``max_depth`` (naming it), and then no handler of it runs.

Every handler checks `EventBus.event_chain` and `EventBus.current_event`
when it starts and after each step; so do tasks. The machine keeps one bus
across steps (its per-thread stacks and cached plans too), attaches and
detaches a sequencer (whose ``append`` must see every accepted event, in
local context), and connects and disconnects a signal receiver (the careful
paths).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from eventbus import DomainEvent, EventBus, EventCycleError, signals
from tests.core.samples import RecordingSequencer

pytestmark = pytest.mark.timeout(300)

#: A step of a script: (what, the script of what it starts).
Action = tuple[str, "Script"]
Script = tuple[Action, ...]

#: What a script step may do; steps impossible where they run are skipped.
STEPS = ("observe", "sync", "await", "concurrent", "task", "thread", "run", "caused")


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncStep(DomainEvent):
    """Handled by a sync handler, which runs ``script``."""

    script: Script = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class AsyncStep(DomainEvent):
    """Handled by an async handler (awaited in order), which runs ``script``."""

    script: Script = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ConcurrentStep(DomainEvent):
    """Handled by an async handler subscribed with ``concurrent=True``."""

    script: Script = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Cause(DomainEvent):
    """The cause given to ``caused_by`` (never published)."""


@dataclass
class Loop:
    """An event loop of the run: where it started, and the tasks created on it.

    Attributes:
        outside: How many levels of the chain were in progress when it started.
        outside_sync: How many of those are sync levels on its thread's stack.
    """

    outside: int
    outside_sync: int
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def drain(self) -> None:
        """Await every task created on this loop, including those tasks create."""
        while self.tasks:
            await asyncio.wait_for(self.tasks.pop(0), timeout=30)


@dataclass(frozen=True)
class Where:
    """What the model knows about a point of execution.

    Attributes:
        chain: The chain `EventBus.event_chain` must return there.
        kinds: ``"sync"`` or ``"async"`` for each level of ``chain``.
        thread_sync: Sync levels in progress on this thread (its stack).
        loop: The loop running on this thread, if any.
    """

    chain: tuple[DomainEvent, ...]
    kinds: tuple[str, ...]
    thread_sync: int
    loop: Loop | None

    def async_part(self) -> int:
        """How many levels the ``ContextVar`` holds: up to the last async one."""
        return max((i + 1 for i, kind in enumerate(self.kinds) if kind == "async"), default=0)

    def under(self, event: DomainEvent, kind: str, **changes: Any) -> Where:
        """The point where the handler of ``event``, published here, starts."""
        values: dict[str, Any] = {
            "chain": (*self.chain, event),
            "kinds": (*self.kinds, kind),
            "thread_sync": self.thread_sync,
            "loop": self.loop,
        }
        values.update(changes)
        return Where(**values)

    def cut(self, levels: int, **changes: Any) -> Where:
        """This point's first ``levels`` levels, elsewhere (a task, a thread)."""
        values: dict[str, Any] = {
            "chain": self.chain[:levels],
            "kinds": self.kinds[:levels],
            "thread_sync": self.thread_sync,
            "loop": self.loop,
        }
        values.update(changes)
        return Where(**values)


class Interpreter:
    """Runs scripts on a bus and collects every disagreement with the model."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.expected: dict[Any, Where] = {}
        self.accepted: list[DomainEvent] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        bus.subscribe(SyncStep, self._on_sync)
        bus.subscribe(AsyncStep, self._on_async)
        bus.subscribe(ConcurrentStep, self._on_async, concurrent=True)

    # ----------------------------------------------------------------- checks

    def problem(self, text: str) -> None:
        """Record a disagreement (from any thread)."""
        with self._lock:
            self.problems.append(text)

    def observe(self, where: Where, label: str) -> None:
        """Compare the bus's answers here with the model's."""
        chain = self.bus.event_chain()
        current = self.bus.current_event()
        if chain != where.chain:
            self.problem(f"{label}: event_chain() {_names(chain)} != model {_names(where.chain)}")
        want = where.chain[-1] if where.chain else None
        if current is not want:
            self.problem(f"{label}: current_event() {_name(current)} != model {_name(want)}")

    def _expect(self, event: DomainEvent, where: Where) -> bool:
        """Register ``event``'s handler context; whether its publish must be refused."""
        refused = len(where.chain) > self.bus.max_depth
        if not refused:
            with self._lock:
                self.expected[event.event_id] = where
                self.accepted.append(event)
        return refused

    def _check_outcome(self, event: DomainEvent, where: Where, refused: bool, error: Any) -> None:
        label = f"publish {_name(event)} at depth {len(where.chain)}"
        if refused:
            names = tuple(type(e).__qualname__ for e in where.chain)
            if not isinstance(error, EventCycleError):
                self.problem(f"{label}: expected EventCycleError, got {error!r}")
            elif error.chain != names:
                self.problem(f"{label}: EventCycleError names {error.chain}, model {names}")
        elif error is not None:
            self.problem(f"{label}: unexpected {error!r}")
        elif event.event_id in self.expected:
            self.problem(f"{label}: its handler never ran")

    # --------------------------------------------------------------- handlers

    def _start(self, event: DomainEvent) -> Where | None:
        with self._lock:
            where = self.expected.pop(event.event_id, None)
        if where is None:
            self.problem(f"{_name(event)} handled, but not expected (refused, or twice)")
        return where

    def _on_sync(self, event: SyncStep) -> None:
        where = self._start(event)
        if where is not None:
            self.run_sync(event.script, where)

    async def _on_async(self, event: AsyncStep | ConcurrentStep) -> None:
        where = self._start(event)
        if where is not None:
            await self.run_async(event.script, where)

    # ---------------------------------------------------------------- scripts

    def run_sync(self, script: Script, where: Where) -> None:
        """Run ``script`` where nothing may be awaited (a sync handler, a thread)."""
        self.observe(where, "sync handler start")
        for what, inner in script:
            try:
                self._sync_step(what, inner, where)
            except Exception as exc:  # every surprise is a finding
                self.problem(f"sync step {what}: {exc!r}")
            self.observe(where, f"after sync step {what}")

    def _sync_step(self, what: str, inner: Script, where: Where) -> None:
        if what == "observe":
            return
        if what == "sync":
            self.publish_sync(SyncStep(script=inner), where)
        elif what == "task" and where.loop is not None:
            where.loop.tasks.append(asyncio.ensure_future(self._task(inner, where)))
        elif what == "run" and where.loop is None:
            self._run_loop(inner, where)
        elif what == "caused":
            self._caused_refused()

    async def run_async(self, script: Script, where: Where) -> None:
        """Run ``script`` where awaiting is allowed (an async handler, a task)."""
        self.observe(where, "async start")
        for what, inner in script:
            try:
                await self._async_step(what, inner, where)
            except Exception as exc:  # every surprise is a finding
                self.problem(f"async step {what}: {exc!r}")
            self.observe(where, f"after async step {what}")

    async def _async_step(self, what: str, inner: Script, where: Where) -> None:
        if what == "sync":
            self.publish_sync(SyncStep(script=inner), where)
        elif what == "await":
            await self.publish(AsyncStep(script=inner), where)
        elif what == "concurrent":
            await self.publish(ConcurrentStep(script=inner), where)
        elif what == "task" and where.loop is not None:
            task = asyncio.ensure_future(self._task(inner, where))
            if inner and inner[0][0] == "observe":
                await task  # sometimes while the dispatch still runs, sometimes later
            else:
                where.loop.tasks.append(task)
        elif what == "thread":
            # The worker thread gets a copy of the context: the async part only.
            there = where.cut(where.async_part(), thread_sync=0, loop=None)
            await asyncio.to_thread(self.publish_sync, SyncStep(script=inner), there)
        elif what == "caused":
            await self._caused(inner, where)

    async def _task(self, script: Script, where: Where) -> None:
        loop = where.loop
        assert loop is not None
        levels = max(where.async_part(), loop.outside)
        await self.run_async(script, where.cut(levels, thread_sync=loop.outside_sync))

    def _run_loop(self, script: Script, where: Where) -> None:
        loop = Loop(outside=len(where.chain), outside_sync=where.thread_sync)

        async def main() -> None:
            inside = Where(where.chain, where.kinds, where.thread_sync, loop)
            await self.publish(AsyncStep(script=script), inside)
            await loop.drain()

        asyncio.run(main())

    def _caused_refused(self) -> None:
        try:
            with self.bus.caused_by(Cause()):
                pass
        except RuntimeError:
            return
        self.problem("caused_by() during a sync dispatch did not raise RuntimeError")

    async def _caused(self, script: Script, where: Where) -> None:
        if where.thread_sync:
            self._caused_refused()
            return
        cause = Cause()
        inside = where.under(cause, "async")
        try:
            block = self.bus.caused_by(cause)
            block.__enter__()
        except EventCycleError as exc:
            self._check_outcome(cause, inside, len(inside.chain) > self.bus.max_depth, exc)
            return
        try:
            if len(inside.chain) > self.bus.max_depth:
                self.problem(f"caused_by at depth {len(inside.chain)} was not refused")
            self.observe(inside, "inside caused_by")
            await self.publish(AsyncStep(script=script), inside)
        finally:
            block.__exit__(None, None, None)

    # ------------------------------------------------------------- publishing

    def publish_sync(self, event: SyncStep, where: Where) -> None:
        """``publish_sync`` from ``where``, checked against the model."""
        there = where.under(event, "sync", thread_sync=where.thread_sync + 1)
        refused = self._expect(event, there)
        error: Exception | None = None
        try:
            self.bus.publish_sync(event)
        except Exception as exc:  # compared with the model below
            error = exc
        self._check_outcome(event, there, refused, error)

    async def publish(self, event: AsyncStep | ConcurrentStep, where: Where) -> None:
        """``await publish`` from ``where``, checked against the model."""
        there = where.under(event, "async")
        refused = self._expect(event, there)
        error: Exception | None = None
        try:
            await self.bus.publish(event)
        except Exception as exc:  # compared with the model below
            error = exc
        self._check_outcome(event, there, refused, error)


def _name(event: DomainEvent | None) -> str:
    return "None" if event is None else f"{type(event).__qualname__}({str(event.event_id)[-4:]})"


def _names(chain: tuple[DomainEvent, ...]) -> str:
    return "(" + ", ".join(_name(e) for e in chain) + ")"


def _observer(sender: object, **kwargs: object) -> None:
    """A signal receiver that does nothing: connected, it sends dispatch the careful way."""


scripts: st.SearchStrategy[Script] = st.recursive(
    st.just(()) | st.just((("observe", ()),)),
    lambda inner: st.lists(st.tuples(st.sampled_from(STEPS), inner), min_size=1, max_size=3).map(
        tuple
    ),
    max_leaves=16,
)

#: How a script's first event is published, from the test's main thread.
ENTRIES = ("publish_sync", "await publish", "publish_sync in a loop", "thread", "caused_by")

TOP = Where((), (), 0, None)


#: The buses' max_depth values: every script meets the limit at several depths.
DEPTHS = (1, 2, 3, 4, 6)


class DispatchModel(RuleBasedStateMachine):
    """Buses kept across steps; each step runs a generated script on each of them.

    The buses differ only in ``max_depth``, so each script checks the depth
    guard at several limits, and their per-thread stacks and cached plans
    live on from one step to the next.
    """

    def __init__(self) -> None:
        super().__init__()
        self.models = [Interpreter(EventBus(max_depth=depth)) for depth in DEPTHS]
        self.sequencers = [RecordingSequencer() for _ in DEPTHS]
        self.observing = False

    @rule(entry=st.sampled_from(ENTRIES), script=scripts)
    def publish(self, entry: str, script: Script) -> None:
        """Publish a root event running ``script``; the model must agree throughout."""
        for model, sequencer in zip(self.models, self.sequencers, strict=True):
            model.accepted.clear()
            appended_before = len(sequencer.appended)
            _ENTRY[entry](model, script)
            limit = f"max_depth={model.bus.max_depth}"
            assert model.problems == [], "\n".join([limit, *model.problems])
            assert model.expected == {}, f"{limit}: handlers that never ran"
            if model.bus.sequencer is not None:
                # Every accepted event was appended once: all of them are in local context.
                appended = sequencer.appended[appended_before:]
                assert sorted(map(id, appended)) == sorted(map(id, model.accepted)), limit

    @rule()
    def toggle_sequencer(self) -> None:
        """Attach or detach a sequencer (every plan is replaced)."""
        for model, sequencer in zip(self.models, self.sequencers, strict=True):
            model.bus.set_sequencer(None if model.bus.sequencer else sequencer)

    @rule()
    def toggle_observer(self) -> None:
        """Connect or disconnect a timing signal receiver (careful paths while connected)."""
        if self.observing:
            signals.handler_completed.disconnect(_observer)
        else:
            signals.handler_completed.connect(_observer)
        self.observing = not self.observing

    @invariant()
    def back_at_top_level(self) -> None:
        """Between steps this thread is at top level on every bus, whatever happened."""
        for model in self.models:
            assert model.bus.event_chain() == ()
            assert model.bus.current_event() is None

    def teardown(self) -> None:
        """Leave no receiver connected (the signals are process-wide)."""
        if self.observing:
            signals.handler_completed.disconnect(_observer)


def _enter_publish_sync(model: Interpreter, script: Script) -> None:
    model.publish_sync(SyncStep(script=script), TOP)


def _enter_await_publish(model: Interpreter, script: Script) -> None:
    loop = Loop(outside=0, outside_sync=0)

    async def main() -> None:
        await model.publish(AsyncStep(script=script), Where((), (), 0, loop))
        await loop.drain()

    asyncio.run(main())


def _enter_publish_sync_in_a_loop(model: Interpreter, script: Script) -> None:
    loop = Loop(outside=0, outside_sync=0)

    async def main() -> None:
        model.publish_sync(SyncStep(script=script), Where((), (), 0, loop))
        await loop.drain()

    asyncio.run(main())


def _enter_thread(model: Interpreter, script: Script) -> None:
    thread = threading.Thread(target=model.publish_sync, args=(SyncStep(script=script), TOP))
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the publishing thread did not finish"


def _enter_caused_by(model: Interpreter, script: Script) -> None:
    loop = Loop(outside=0, outside_sync=0)

    async def main() -> None:
        await model._caused(script, Where((), (), 0, loop))
        await loop.drain()

    asyncio.run(main())


_ENTRY: dict[str, Callable[[Interpreter, Script], None]] = {
    "publish_sync": _enter_publish_sync,
    "await publish": _enter_await_publish,
    "publish_sync in a loop": _enter_publish_sync_in_a_loop,
    "thread": _enter_thread,
    "caused_by": _enter_caused_by,
}


class TestDispatchModel(DispatchModel.TestCase):  # type: ignore[valid-type, misc]
    """The bus agrees with the model of the dispatch chain (module docstring)."""

    settings = settings(
        max_examples=300,
        stateful_step_count=8,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
