"""The fleet (ARCHITECTURE §7, module ``eventbus._fleet``): what runs where, and positions.

A worker's `Sequencer` appends the events published there and reads the
fleet's one order back, handing every entry to `EventBus.deliver`. These
tests play the sequencer by hand: a `RecordingSequencer` records what is
appended, and the test calls ``await bus.deliver(event, position, local=...)``
as its reader would. Two buses fed the same deliveries stand for two workers:
``local=True`` on the one that appended the entry, ``local=False`` elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from eventbus import (
    AsyncHandlerError,
    DomainEvent,
    EventBus,
    EventCycleError,
    Priority,
    Projection,
)
from eventbus.events import derived_id
from tests.core.samples import Ping, Pong, RecordingSequencer, Zap, numbers

pytestmark = pytest.mark.timeout(30)

ENTRY = "1700000000000-0"


@pytest.fixture(name="sequencer")
def _sequencer() -> RecordingSequencer:
    """A sequencer for every event type."""
    return RecordingSequencer()


@pytest.fixture(name="fleet_bus")
def _fleet_bus(sequencer: RecordingSequencer) -> EventBus:
    """A strict bus (handler failures raise) with ``sequencer`` attached."""
    bus = EventBus(raise_errors=True)
    bus.set_sequencer(sequencer)
    return bus


def _workers(*types: type[DomainEvent]) -> tuple[EventBus, EventBus]:
    """Two strict buses, each with its own sequencer for ``types`` (default: all)."""
    buses = (EventBus(raise_errors=True), EventBus(raise_errors=True))
    for bus in buses:
        bus.set_sequencer(RecordingSequencer(*types))
    return buses


def _logger(log: list[str], text: str) -> Callable[[DomainEvent], None]:
    """A handler appending ``text`` (formatted with the event as ``e``) to ``log``."""

    def handler(event: DomainEvent) -> None:
        log.append(text.format(e=event))

    return handler


def _appended(bus: EventBus) -> list[DomainEvent]:
    sequencer = bus.sequencer
    assert isinstance(sequencer, RecordingSequencer)
    return sequencer.appended


class TestWhatRunsWhere:
    """Local handlers run where the event is published; fleet handlers on delivery."""

    @pytest.mark.parametrize("sync", [True, False], ids=["publish_sync", "publish"])
    async def test_local_at_publish_fleet_on_delivery(
        self, fleet_bus: EventBus, sequencer: RecordingSequencer, sync: bool
    ) -> None:
        """Publishing runs local handlers and appends; delivering the entry runs fleet ones."""
        log: list[str] = []
        fleet_bus.subscribe(Ping, lambda e: log.append("local"))
        fleet_bus.subscribe(Ping, lambda e: log.append("fleet"), fleet=True)
        event = Ping()
        if sync:
            fleet_bus.publish_sync(event)
        else:
            await fleet_bus.publish(event)
        assert log == ["local"]
        assert sequencer.appended == [event]
        await fleet_bus.deliver(event, ENTRY, local=True)
        assert log == ["local", "fleet"]  # the entry's local handlers ran at publish only
        assert sequencer.appended == [event]  # a delivery appends nothing

    async def test_every_worker_runs_the_fleet_handlers(self) -> None:
        """The entry is delivered everywhere: the other worker runs its fleet handlers only."""
        origin, other = _workers()
        logs: dict[str, list[str]] = {"origin": [], "other": []}
        for name, bus in (("origin", origin), ("other", other)):
            bus.subscribe(Ping, _logger(logs[name], "local"))
            bus.subscribe(Ping, _logger(logs[name], "fleet"), fleet=True)
        event = Ping()
        await origin.publish(event)
        for bus, local in ((origin, True), (other, False)):
            await bus.deliver(event, ENTRY, local=local)
        assert logs == {"origin": ["local", "fleet"], "other": ["fleet"]}

    @pytest.mark.parametrize("attached", ["none", "not-sequencing"])
    async def test_without_sequencing_everything_runs_at_publish(self, attached: str) -> None:
        """No sequencer, or one that does not sequence the type: both kinds, priority order."""
        bus = EventBus(raise_errors=True)
        sequencer = RecordingSequencer(Pong)
        if attached == "not-sequencing":
            bus.set_sequencer(sequencer)
        log: list[str] = []
        bus.subscribe(Ping, lambda e: log.append("local-1"), priority=1)
        bus.subscribe(Ping, lambda e: log.append("fleet-5"), priority=5, fleet=True)
        bus.subscribe(Ping, lambda e: log.append("local-3"), priority=3)
        bus.subscribe(Ping, lambda e: log.append("fleet-0"), fleet=True)
        bus.publish_sync(Ping())
        await bus.publish(Ping())
        assert log == ["fleet-5", "local-3", "local-1", "fleet-0"] * 2
        assert sequencer.appended == []

    async def test_append_runs_first_and_only_in_local_context(
        self, fleet_bus: EventBus, sequencer: RecordingSequencer
    ) -> None:
        """append precedes even Priority.FIRST; nothing in a delivery's fleet context appends."""
        seen_appended: list[int] = []
        fleet_bus.subscribe(
            Ping, lambda e: seen_appended.append(len(sequencer.appended)), priority=Priority.FIRST
        )

        async def derive(event: Ping) -> None:
            await fleet_bus.publish(Pong())
            fleet_bus.publish_sync(Zap())

        fleet_bus.subscribe(Ping, derive, fleet=True)
        event = Ping()
        fleet_bus.publish_sync(event)
        assert seen_appended == [1]
        await fleet_bus.deliver(event, ENTRY, local=True)
        assert sequencer.appended == [event]  # Pong and Zap are derived by every worker

    async def test_sequencer_change_replaces_the_plans(self) -> None:
        """A plan compiled before the sequencer was attached is not used after (nor after detaching)."""
        bus = EventBus(raise_errors=True)
        log: list[str] = []
        bus.subscribe(Ping, lambda e: log.append("fleet"), fleet=True)
        bus.publish_sync(Ping())  # plan compiled: the fleet handler runs at publish
        sequencer = RecordingSequencer()
        bus.set_sequencer(sequencer)
        bus.publish_sync(Ping())
        assert log == ["fleet"]
        assert len(sequencer.appended) == 1
        bus.set_sequencer(None)
        bus.publish_sync(Ping())
        assert log == ["fleet", "fleet"]
        assert len(sequencer.appended) == 1


class TestDerivedEvents:
    """Events published while a fleet handler runs are derived in the fleet."""

    async def test_local_handlers_of_derived_events_only_where_local(self) -> None:
        """A derived event's fleet handlers run everywhere, its local ones on the origin only."""
        origin, other = _workers()
        logs: dict[bool, list[str]] = {True: [], False: []}
        for bus, local in ((origin, True), (other, False)):

            async def derive(event: Ping, bus: EventBus = bus) -> None:
                await bus.publish(Pong())

            bus.subscribe(Ping, derive, fleet=True)
            bus.subscribe(Pong, _logger(logs[local], "local"))
            bus.subscribe(Pong, _logger(logs[local], "fleet"), fleet=True)
        event = Ping()
        for bus, local in ((origin, True), (other, False)):
            await bus.deliver(event, ENTRY, local=local)
        assert logs == {True: ["local", "fleet"], False: ["fleet"]}

    async def test_a_local_handler_publishes_in_local_context(self) -> None:
        """During a delivery, what a local handler publishes is appended: an entry of its own."""
        origin, other = _workers()
        fleet_ran: list[DomainEvent] = []
        for bus in (origin, other):

            def derive(event: Ping, bus: EventBus = bus) -> None:
                bus.publish_sync(Pong())

            def react(event: Pong, bus: EventBus = bus) -> None:
                assert bus.current_position() is None  # a local handler: no position
                bus.publish_sync(Zap())

            bus.subscribe(Ping, derive, fleet=True)
            bus.subscribe(Pong, react)
            bus.subscribe(Zap, fleet_ran.append, fleet=True)
        event = Ping()
        for bus, local in ((origin, True), (other, False)):
            await bus.deliver(event, ENTRY, local=local)
        [zap] = _appended(origin)
        assert isinstance(zap, Zap)
        assert _appended(other) == []
        assert fleet_ran == []  # Zap's fleet handlers wait for its own delivery

    async def test_caused_by_is_local_context(
        self, fleet_bus: EventBus, sequencer: RecordingSequencer
    ) -> None:
        """Publishing later on behalf of a cause (an outbox) appends, and the chain shows it."""
        cause = Ping(n=1)
        chains: list[tuple[int, ...]] = []
        fleet_bus.subscribe(Pong, lambda e: chains.append(numbers(fleet_bus.event_chain())))
        with fleet_bus.caused_by(cause):
            await fleet_bus.publish(Pong(n=2))
        assert chains == [(1, 2)]
        assert [type(e) for e in sequencer.appended] == [Pong]


class TestPositions:
    """`EventBus.current_position` inside fleet handlers: the entry's, then ``.k`` depth-first."""

    @staticmethod
    def _subscribe_cascade(bus: EventBus, log: list[tuple[str, str | None]]) -> None:
        """Ping derives Pong 1 (which derives Zap 11, synchronously) and then Pong 2."""

        async def on_ping(event: Ping) -> None:
            log.append(("Ping", bus.current_position()))
            await bus.publish(Pong(n=1))
            await bus.publish(Pong(n=2))
            log.append(("Ping-after", bus.current_position()))

        def on_pong(event: Pong) -> None:
            log.append((f"Pong{event.n}", bus.current_position()))
            if event.n == 1:
                bus.publish_sync(Zap(n=11))

        def on_zap(event: Zap) -> None:
            log.append((f"Zap{event.n}", bus.current_position()))

        bus.subscribe(Ping, on_ping, fleet=True)
        bus.subscribe(Pong, on_pong, fleet=True)
        bus.subscribe(Zap, on_zap, fleet=True)
        bus.subscribe(DomainEvent, lambda e: log.append(("local", bus.current_position())))

    async def test_depth_first_positions(self, fleet_bus: EventBus) -> None:
        """The entry's event has the entry's position; derived ones .1, .2 ... as they start."""
        log: list[tuple[str, str | None]] = []
        self._subscribe_cascade(fleet_bus, log)
        assert fleet_bus.current_position() is None
        await fleet_bus.deliver(Ping(), ENTRY, local=False)
        assert log == [
            ("Ping", ENTRY),
            ("Pong1", f"{ENTRY}.1"),
            ("Zap11", f"{ENTRY}.2"),
            ("Pong2", f"{ENTRY}.3"),
            ("Ping-after", ENTRY),
        ]
        assert fleet_bus.current_position() is None

    async def test_local_handlers_have_no_position(self, fleet_bus: EventBus) -> None:
        """On the origin the derived events' local handlers run too, with no position."""
        log: list[tuple[str, str | None]] = []
        self._subscribe_cascade(fleet_bus, log)
        await fleet_bus.deliver(Ping(), ENTRY, local=True)
        assert [entry for entry in log if entry[0] == "local"] == [("local", None)] * 3
        assert [entry for entry in log if entry[0] != "local"][:2] == [
            ("Ping", ENTRY),
            ("Pong1", f"{ENTRY}.1"),
        ]
        fleet_bus.publish_sync(Zap())  # local context at top level: no position either
        assert log[-1] == ("local", None)

    async def test_two_workers_fed_the_same_deliveries_agree(self) -> None:
        """Same entries, same positions, whichever worker appended them."""
        buses = _workers()
        logs: list[list[tuple[str, str | None]]] = [[], []]
        for bus, log in zip(buses, logs, strict=True):
            self._subscribe_cascade(bus, log)
        entries = [(Ping(), f"17000000000{k:02d}-0") for k in range(3)]
        for event, position in entries:
            for index, bus in enumerate(buses):
                await bus.deliver(event, position, local=index == 0)
        fleet = [[entry for entry in log if entry[0] != "local"] for log in logs]
        assert fleet[0] == fleet[1]
        assert len(fleet[0]) == 5 * len(entries)

    async def test_local_subscriptions_do_not_shift_positions(self) -> None:
        """A worker's own local handler for a type without fleet handlers changes no position.

        A regression: a sync publish in the fleet took a position only when the
        type's local plan was not empty, so a local handler (a logger on one
        worker) shifted the positions after it, and SSE ids with them.
        """
        buses = _workers(Ping)  # Zap and Pong are not sequenced
        positions: list[list[str | None]] = [[], []]
        for bus, seen in zip(buses, positions, strict=True):

            def derive(event: Ping, bus: EventBus = bus) -> None:
                bus.publish_sync(Zap())  # no fleet handlers
                bus.publish_sync(Pong())

            def on_pong(event: Pong, bus: EventBus = bus, seen: list[str | None] = seen) -> None:
                seen.append(bus.current_position())

            bus.subscribe(Ping, derive, fleet=True)
            bus.subscribe(Pong, on_pong, fleet=True)
        buses[0].subscribe(Zap, lambda e: None)  # one worker logs Zap locally
        event = Ping()
        for bus in buses:
            await bus.deliver(event, ENTRY, local=False)
        assert positions == [[f"{ENTRY}.1"], [f"{ENTRY}.1"]]

    async def test_none_outside_deliveries(self) -> None:
        """Without a sequencer, fleet handlers run at publish and have no position."""
        bus = EventBus(raise_errors=True)
        seen: list[str | None] = []
        bus.subscribe(Ping, lambda e: seen.append(bus.current_position()), fleet=True)
        bus.publish_sync(Ping())
        await bus.publish(Ping())
        assert seen == [None, None]


class TestDeferredSyncPublishes:
    """In a delivery, publish_sync of a type with async handlers is awaited after the step."""

    async def test_deferred_in_order_after_the_step(self, fleet_bus: EventBus) -> None:
        """Positions are taken at publish; the events run after the handler, before the next."""
        log: list[str] = []

        def publisher(event: Ping) -> None:
            fleet_bus.publish_sync(Pong(n=1))  # async handlers: deferred
            fleet_bus.publish_sync(Zap(n=2))  # sync handlers only: runs now
            fleet_bus.publish_sync(Pong(n=3))
            log.append("publisher returns")

        async def on_pong(event: Pong) -> None:
            await asyncio.sleep(0)
            log.append(f"Pong{event.n} at {fleet_bus.current_position()}")

        def on_zap(event: Zap) -> None:
            log.append(f"Zap{event.n} at {fleet_bus.current_position()}")

        fleet_bus.subscribe(Ping, publisher, fleet=True, priority=1)
        fleet_bus.subscribe(Ping, lambda e: log.append("next step"), fleet=True)
        fleet_bus.subscribe(Pong, on_pong, fleet=True)
        fleet_bus.subscribe(Zap, on_zap, fleet=True)
        await fleet_bus.deliver(Ping(), ENTRY, local=False)  # raise_errors: no AsyncHandlerError
        assert log == [
            f"Zap2 at {ENTRY}.2",
            "publisher returns",
            f"Pong1 at {ENTRY}.1",
            f"Pong3 at {ENTRY}.3",
            "next step",
        ]

    async def test_deferral_is_decided_alike_on_every_worker(self) -> None:
        """An async *local* handler defers the event on every worker, running there or not.

        A regression: only the origin (whose plan holds the local handlers)
        deferred, so the fleet handlers saw the events in another order there.
        """
        buses = _workers()
        logs: list[list[str]] = [[], []]
        for bus, log in zip(buses, logs, strict=True):

            def publisher(event: Ping, bus: EventBus = bus) -> None:
                bus.publish_sync(Pong(n=1))
                bus.publish_sync(Zap(n=2))

            async def local_pong(event: Pong) -> None:
                """An async local handler: runs on the origin only."""

            bus.subscribe(Ping, publisher, fleet=True)
            bus.subscribe(Pong, local_pong)
            bus.subscribe(Pong, _logger(log, "Pong{e.n}"), fleet=True)
            bus.subscribe(Zap, _logger(log, "Zap{e.n}"), fleet=True)
        event = Ping()
        for index, bus in enumerate(buses):
            await bus.deliver(event, ENTRY, local=index == 0)
        assert logs[0] == logs[1] == ["Zap2", "Pong1"]

    async def test_from_a_concurrent_fleet_handler(self, fleet_bus: EventBus) -> None:
        """A concurrent handler's deferred publish is awaited before the delivery ends.

        A regression: it was queued after the last step and never run.
        """
        seen: list[str | None] = []
        proceed = asyncio.Event()

        async def concurrent(event: Ping) -> None:
            await proceed.wait()  # the steps are over when this goes on
            fleet_bus.publish_sync(Pong())

        async def on_pong(event: Pong) -> None:
            seen.append(fleet_bus.current_position())

        fleet_bus.subscribe(Ping, concurrent, fleet=True, concurrent=True)
        fleet_bus.subscribe(Ping, lambda e: proceed.set(), fleet=True)
        fleet_bus.subscribe(Pong, on_pong, fleet=True)
        await asyncio.wait_for(fleet_bus.deliver(Ping(), ENTRY, local=False), timeout=10)
        assert seen == [f"{ENTRY}.1"]

    async def test_after_the_delivery_ended_it_is_refused(self, fleet_bus: EventBus) -> None:
        """A task a fleet handler started outlives the delivery: nothing would await it.

        Its publish_sync raises AsyncHandlerError (as outside the fleet) instead
        of queueing an event that never runs.
        """
        later = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        ran: list[Pong] = []

        async def publish_later() -> None:
            await later.wait()
            fleet_bus.publish_sync(Pong())

        async def on_pong(event: Pong) -> None:
            ran.append(event)

        fleet_bus.subscribe(
            Ping, lambda e: tasks.append(asyncio.ensure_future(publish_later())), fleet=True
        )
        fleet_bus.subscribe(Pong, on_pong, fleet=True)
        await fleet_bus.deliver(Ping(), ENTRY, local=False)
        later.set()
        with pytest.raises(AsyncHandlerError, match="on_pong"):
            await asyncio.wait_for(tasks[0], timeout=10)
        assert ran == []

    @pytest.mark.parametrize("shape", ["unsequenced-async-fleet", "async-local"])
    async def test_deferred_whatever_the_local_plan(self, shape: str) -> None:
        """Deferred also when the async handler is in the type's local plan.

        (An unsequenced type's local plan holds its fleet handlers too.) The
        local plan is never compiled for a publish in the fleet, so it cannot
        raise AsyncHandlerError there.
        """
        bus = EventBus(raise_errors=True)
        bus.set_sequencer(
            RecordingSequencer(Ping) if shape.startswith("unseq") else RecordingSequencer()
        )
        ran: list[str] = []

        async def on_pong(event: Pong) -> None:
            ran.append("async")

        bus.subscribe(Ping, lambda e: bus.publish_sync(Pong()), fleet=True)
        bus.subscribe(Pong, on_pong, fleet=shape.startswith("unseq"))
        await bus.deliver(Ping(), ENTRY, local=True)
        assert ran == ["async"]


class TestDeliveryErrors:
    """Failures in a delivery: isolated, or raised as one group with raise_errors."""

    async def test_raise_errors_group_with_notes(self, fleet_bus: EventBus) -> None:
        """Both failing fleet handlers are members, each naming itself and the event."""

        def first(event: Ping) -> None:
            raise ValueError("first")

        async def second(event: Ping) -> None:
            raise KeyError("second")

        fleet_bus.subscribe(Ping, first, fleet=True)
        fleet_bus.subscribe(Ping, second, fleet=True)
        event = Ping()
        with pytest.raises(ExceptionGroup) as info:
            await fleet_bus.deliver(event, ENTRY, local=True)
        members = info.value.exceptions
        assert [type(m) for m in members] == [ValueError, KeyError]
        for member, handler in zip(members, (first, second), strict=True):
            note = "\n".join(member.__notes__)
            assert f"{__name__}.{handler.__qualname__}" in note
            assert f"Ping {event.event_id}" in note

    async def test_a_deferred_event_failure_joins_the_group(self, fleet_bus: EventBus) -> None:
        """A deferred event's failure is reported in the delivery's group, naming that event."""

        async def fails(event: Pong) -> None:
            raise ValueError("deferred failure")

        fleet_bus.subscribe(Ping, lambda e: fleet_bus.publish_sync(Pong()), fleet=True)
        fleet_bus.subscribe(Pong, fails, fleet=True)
        with pytest.raises(ExceptionGroup) as info:
            await fleet_bus.deliver(Ping(), ENTRY, local=False)
        [member] = info.value.exceptions
        assert "on Pong" in "\n".join(member.__notes__)

    async def test_without_raise_errors_deliver_never_raises(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The failure is logged; the other fleet handlers still run."""
        bus = EventBus()
        bus.set_sequencer(RecordingSequencer())
        ran: list[str] = []

        def broken(event: Ping) -> None:
            raise ValueError("broken in the fleet")

        bus.subscribe(Ping, broken, fleet=True)
        bus.subscribe(Ping, lambda e: ran.append("after"), fleet=True)
        with caplog.at_level(logging.ERROR, logger="eventbus"):
            await bus.deliver(Ping(), ENTRY, local=True)
        assert ran == ["after"]
        assert "broken in the fleet" in caplog.text

    @pytest.mark.parametrize("sync", [True, False], ids=["publish_sync", "publish"])
    async def test_depth_limit_applies(self, sync: bool) -> None:
        """The entry's event is level 1; a chain past max_depth is refused, naming it."""
        bus = EventBus(max_depth=3)
        bus.set_sequencer(RecordingSequencer())
        depths: list[int] = []
        refused: list[EventCycleError] = []

        async def again_async(event: Ping) -> None:
            depths.append(len(bus.event_chain()))
            try:
                await bus.publish(Ping(n=event.n + 1))
            except EventCycleError as exc:
                refused.append(exc)

        def again_sync(event: Ping) -> None:
            depths.append(len(bus.event_chain()))
            try:
                bus.publish_sync(Ping(n=event.n + 1))
            except EventCycleError as exc:
                refused.append(exc)

        bus.subscribe(Ping, again_sync if sync else again_async, fleet=True)
        await bus.deliver(Ping(), ENTRY, local=False)
        assert depths == [1, 2, 3]
        assert [e.chain for e in refused] == [("Ping",) * 4]


class TestSequencerAttachment:
    """set_sequencer: type-checked, at most one."""

    def test_not_a_sequencer(self, bus: EventBus) -> None:
        """An object without sequences() and append() is refused."""

        class NoAppend:
            def sequences(self, event_type: type[DomainEvent]) -> bool:
                return True

        with pytest.raises(TypeError, match="sequences\\(\\) and append\\(\\)"):
            bus.set_sequencer(NoAppend())  # type: ignore[arg-type]
        assert bus.sequencer is None

    def test_at_most_one(self, bus: EventBus) -> None:
        """A second sequencer is refused; the same one again is fine; None detaches."""
        first, second = RecordingSequencer(), RecordingSequencer()
        bus.set_sequencer(first)
        bus.set_sequencer(first)
        with pytest.raises(RuntimeError, match="attached already"):
            bus.set_sequencer(second)
        assert bus.sequencer is first
        bus.set_sequencer(None)
        bus.set_sequencer(second)
        assert bus.sequencer is second


class _State:
    """A minimal `Projection`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data = b""

    def snapshot(self) -> bytes:
        return self.data

    def restore(self, data: bytes) -> None:
        self.data = data


class TestProjections:
    """register_projection: by unique name, type-checked, in registration order."""

    def test_register_list_and_unregister(self, bus: EventBus) -> None:
        """Registered projections are listed in order; unregistering forgets one."""
        first, second = _State("networth"), _State("cache")
        assert isinstance(first, Projection)
        bus.register_projection(first)
        bus.register_projection(second)
        assert bus.projections() == (first, second)
        bus.unregister_projection(first)
        bus.unregister_projection(first)  # no error the second time
        assert bus.projections() == (second,)

    def test_duplicate_name(self, bus: EventBus) -> None:
        """A second projection under a taken name is refused, naming it."""
        bus.register_projection(_State("networth"))
        with pytest.raises(ValueError, match="'networth'"):
            bus.register_projection(_State("networth"))
        assert len(bus.projections()) == 1

    @pytest.mark.parametrize(
        "bad",
        [object(), _State.__new__(_State), "networth"],
        ids=["no-methods", "no-name", "a-str"],
    )
    def test_not_a_projection(self, bus: EventBus, bad: Any) -> None:
        """Something without a str name, snapshot() and restore() is a TypeError."""
        with pytest.raises(TypeError, match="projection"):
            bus.register_projection(bad)
        assert bus.projections() == ()


class TestDerivedId:
    """derived_id: the same id on every worker for the same cause and key."""

    def test_deterministic(self) -> None:
        """Same cause and key, same id: computed twice, or from an equal copy of the cause."""
        cause = Ping()
        copy = Ping(event_id=cause.event_id, occurred_at=cause.occurred_at)
        assert derived_id(cause, "networth") == derived_id(cause, "networth")
        assert derived_id(copy, "networth") == derived_id(cause, "networth")

    def test_a_uuid7_stamped_with_the_cause_time(self) -> None:
        """Version 7, RFC variant, and its timestamp is the cause's occurred_at in ms."""
        when = datetime(2026, 5, 4, 3, 2, 1, 987_654, tzinfo=UTC)
        derived = derived_id(Ping(occurred_at=when), "networth")
        assert isinstance(derived, UUID)
        assert derived.version == 7
        assert derived.variant == "specified in RFC 4122"
        millis = derived.int >> 80
        assert millis == (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

    @pytest.mark.parametrize(
        "other",
        [
            lambda cause: derived_id(cause, "networth-2"),
            lambda cause: derived_id(Ping(occurred_at=cause.occurred_at), "networth"),
            lambda cause: cause.event_id,
        ],
        ids=["another-key", "another-cause", "the-cause-itself"],
    )
    def test_different_inputs_differ(self, other: Callable[[Ping], UUID]) -> None:
        """Another key or another cause gives another id, never the cause's own."""
        cause = Ping()
        assert derived_id(cause, "networth") != other(cause)
