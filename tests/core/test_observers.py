"""`DispatchObserver`: the public hook around dispatches and handler calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import pytest

from eventbus import DispatchObserver, DomainEvent, EventBus, FleetEntry, Subscription
from eventbus._observed import observed
from tests.core.samples import Ping, Pong, RecordingSequencer

#: What a `Recorder` makes current while a handler of its bus runs.
_current: ContextVar[str | None] = ContextVar("current", default=None)


class Recorder(DispatchObserver):
    """Records every call as a tuple, and sets `_current` while a dispatch or handler runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def publish_started(
        self, bus: EventBus, event: DomainEvent, entry: FleetEntry | None
    ) -> object:
        self.calls.append(("publish", _n(event), entry))
        return _current.set(f"publish {_n(event)}")

    def publish_ended(
        self, bus: EventBus, event: DomainEvent, token: object, error: BaseException | None
    ) -> None:
        self.calls.append(("published", _n(event), error))
        _current.reset(token)  # type: ignore[arg-type]

    def handler_started(
        self, bus: EventBus, event: DomainEvent, subscription: Subscription[Any]
    ) -> object:
        name = subscription.handler.__name__  # type: ignore[union-attr]
        self.calls.append(("handler", _n(event), name))
        return _current.set(f"{name} {_n(event)}")

    def handler_ended(
        self,
        bus: EventBus,
        event: DomainEvent,
        subscription: Subscription[Any],
        token: object,
        error: BaseException | None,
    ) -> None:
        self.calls.append(("handled", _n(event), type(error).__name__ if error else None))
        _current.reset(token)  # type: ignore[arg-type]

    def inject(self, bus: EventBus, event: DomainEvent, headers: dict[str, str]) -> None:
        headers["seen"] = _current.get() or ""


def _n(event: DomainEvent) -> int:
    assert isinstance(event, Ping | Pong)
    return event.n


@pytest.fixture(name="recorder")
def _recorder(bus: EventBus) -> Iterator[Recorder]:
    recorder = Recorder()
    bus.add_observer(recorder)
    yield recorder
    bus.remove_observer(recorder)


class HeaderRecordingSequencer(RecordingSequencer):
    """A `eventbus.HeaderSequencer`: records the headers of each entry too."""

    def __init__(self, *types: type[DomainEvent]) -> None:
        super().__init__(*types)
        self.headers: list[Mapping[str, str]] = []

    def append_with_headers(self, event: DomainEvent, headers: Mapping[str, str]) -> None:
        self.append(event)
        self.headers.append(headers)


class TestCalls:
    """What an observer is told, in which order, and in which context."""

    def test_sync_tree(self, bus: EventBus, recorder: Recorder) -> None:
        """A nested publish runs between its handler's start and end; the context is current."""
        seen: list[str | None] = []

        def outer(event: Ping) -> None:
            seen.append(_current.get())
            bus.publish_sync(Pong(n=2))

        def inner(event: Pong) -> None:
            seen.append(_current.get())

        bus.subscribe(Ping, outer)
        bus.subscribe(Pong, inner)
        bus.publish_sync(Ping(n=1))
        assert seen == ["outer 1", "inner 2"]
        assert recorder.calls == [
            ("publish", 1, None),
            ("handler", 1, "outer"),
            ("publish", 2, None),
            ("handler", 2, "inner"),
            ("handled", 2, None),
            ("published", 2, None),
            ("handled", 1, None),
            ("published", 1, None),
        ]
        assert _current.get() is None

    async def test_async_and_concurrent(self, bus: EventBus, recorder: Recorder) -> None:
        """Awaited handlers run under their own context; a concurrent one inside its task."""
        seen: list[str | None] = []

        async def awaited(event: Ping) -> None:
            await asyncio.sleep(0)
            seen.append(_current.get())

        async def concurrent(event: Ping) -> None:
            await asyncio.sleep(0)
            seen.append(_current.get())

        def plain(event: Ping) -> None:
            seen.append(_current.get())

        bus.subscribe(Ping, awaited)
        bus.subscribe(Ping, concurrent, concurrent=True)
        bus.subscribe(Ping, plain)
        await bus.publish(Ping(n=1))
        assert sorted(map(str, seen)) == ["awaited 1", "concurrent 1", "plain 1"]
        assert recorder.calls[0] == ("publish", 1, None)
        assert recorder.calls[-1] == ("published", 1, None)
        assert ("handled", 1, None) in recorder.calls
        assert len(recorder.calls) == 8

    async def test_failures(self, bus: EventBus, recorder: Recorder, caplog: Any) -> None:
        """A failing handler is logged (inside its context), then its end carries the error."""
        contexts: list[str | None] = []

        class Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                contexts.append(_current.get())

        def broken(event: Ping) -> None:
            raise ValueError("boom")

        async def broken_async(event: Ping) -> None:
            raise KeyError("boom")

        bus.subscribe(Ping, broken)
        bus.subscribe(Ping, broken_async)
        capture = Capture()
        logging.getLogger("eventbus").addHandler(capture)
        try:
            await bus.publish(Ping(n=1))
        finally:
            logging.getLogger("eventbus").removeHandler(capture)
        assert ("handled", 1, "ValueError") in recorder.calls
        assert ("handled", 1, "KeyError") in recorder.calls
        assert contexts == ["broken 1", "broken_async 1"]

    def test_no_handlers(self, bus: EventBus, recorder: Recorder) -> None:
        """A publish with no handlers is still a (empty) dispatch."""
        bus.publish_sync(Ping(n=1))
        assert recorder.calls == [("publish", 1, None), ("published", 1, None)]

    def test_cycle_error_ends_the_dispatch(self, recorder: Recorder) -> None:
        """A refused publish never starts; the handler that made it fails."""
        bus = EventBus(max_depth=2, raise_errors=True)
        bus.add_observer(recorder)

        @bus.on(Ping)
        def again(event: Ping) -> None:
            bus.publish_sync(Ping(n=event.n + 1))

        with pytest.raises(ExceptionGroup):
            bus.publish_sync(Ping(n=1))
        bus.remove_observer(recorder)
        # The third publish is refused before it starts: its publisher fails.
        assert ("handled", 2, "EventCycleError") in recorder.calls
        assert ("handled", 1, "ExceptionGroup") in recorder.calls
        assert [c for c in recorder.calls if c[0] == "publish"] == [
            ("publish", 1, None),
            ("publish", 2, None),
        ]


class TestRegistration:
    """Adding, removing, and what an observer costs when there is none."""

    def test_plans_cached_only_while_unobserved(self, bus: EventBus) -> None:
        """Plans are not cached while a bus has an observer (so the careful path runs)."""
        bus.subscribe(Ping, lambda e: None)
        bus.publish_sync(Ping())
        assert Ping in bus._sync_plans
        recorder = Recorder()
        bus.add_observer(recorder)
        assert observed()
        assert bus.observers() == (recorder,)
        bus.publish_sync(Ping())
        assert Ping not in bus._sync_plans
        assert bus.remove_observer(recorder)
        assert not bus.remove_observer(recorder)
        assert not observed()
        bus.publish_sync(Ping())
        assert Ping in bus._sync_plans

    def test_rejects_other_objects(self, bus: EventBus) -> None:
        """Only `DispatchObserver` instances are accepted."""
        with pytest.raises(TypeError, match="DispatchObserver"):
            bus.add_observer(object())  # type: ignore[arg-type]

    def test_broken_observer_is_removed(self, bus: EventBus, caplog: Any) -> None:
        """An observer that raises is logged and removed; the handlers still run."""

        class Broken(DispatchObserver):
            def handler_started(self, *args: Any) -> object:
                raise RuntimeError("observer bug")

        ran: list[int] = []
        bus.subscribe(Ping, lambda e: ran.append(e.n))
        bus.add_observer(Broken())
        with caplog.at_level(logging.ERROR, logger="eventbus"):
            bus.publish_sync(Ping(n=1))
            bus.publish_sync(Ping(n=2))
        assert ran == [1, 2]
        assert bus.observers() == ()
        assert "handler_started" in caplog.text


class TestFleet:
    """Headers travel through a `HeaderSequencer` and come back on delivery."""

    async def test_headers_round_trip(self, bus: EventBus, recorder: Recorder) -> None:
        """inject() runs in the publish's context; deliver() hands the headers back."""
        sequencer = HeaderRecordingSequencer(Ping)
        bus.set_sequencer(sequencer)
        fleet_seen: list[str | None] = []
        bus.subscribe(Ping, lambda e: fleet_seen.append(_current.get()), fleet=True)
        await bus.publish(Ping(n=1))
        assert sequencer.headers == [{"seen": "publish 1"}]
        await bus.deliver(sequencer.appended[0], "1-0", local=True, headers=sequencer.headers[0])
        entry = FleetEntry("1-0", True, {"seen": "publish 1"})
        assert ("publish", 1, entry) in recorder.calls
        assert fleet_seen == ["<lambda> 1"]

    def test_plain_sequencer_gets_append(self, bus: EventBus, recorder: Recorder) -> None:
        """A sequencer without headers is called as usual while observed."""
        sequencer = RecordingSequencer(Ping)
        bus.set_sequencer(sequencer)
        bus.publish_sync(Ping(n=1))
        assert [e.n for e in sequencer.appended] == [1]  # type: ignore[attr-defined]


class TestPlugins:
    """An observer a plugin adds in its hook is the plugin's."""

    def test_unregistering_removes_it(self, bus: EventBus) -> None:
        """unregister_plugin removes the observer; a failed registration does too."""
        from eventbus import PluginRegistrationError, hookimpl

        class Plugin:
            def __init__(self, fail: bool) -> None:
                self.fail = fail

            @hookimpl
            def eventbus_register(self, bus: EventBus) -> None:
                bus.add_observer(Recorder())
                if self.fail:
                    raise RuntimeError("no")

        bus.register_plugin(Plugin(False), name="good")
        assert len(bus.observers()) == 1
        bus.unregister_plugin("good")
        assert bus.observers() == ()
        with pytest.raises(PluginRegistrationError):
            bus.register_plugin(Plugin(True), name="bad")
        assert bus.observers() == ()
