"""`eventbus.testing`: capture_events, and the pytest fixtures of the pytest11 plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eventbus import AsyncHandlerError, DomainEvent, EventBus, Priority
from eventbus.testing import capture_events
from tests.core.samples import Ping, Pong, balance

pytestmark = pytest.mark.timeout(120)


class TestCaptureEvents:
    """capture_events records what is published, in dispatch order."""

    def test_records_nested_publishes_in_dispatch_order(self, bus: EventBus) -> None:
        """An outer event is recorded before the events its handlers publish."""

        def cascade(event: Ping) -> None:
            if event.n < 2:
                bus.publish_sync(Ping(n=event.n + 1))
            bus.publish_sync(Pong(n=event.n))

        bus.subscribe(Ping, cascade, priority=100)  # even a high priority runs after capture
        with capture_events(bus) as events:
            bus.publish_sync(Ping(n=0))
        assert [(type(e).__name__, e.n) for e in events] == [  # type: ignore[attr-defined]
            ("Ping", 0),
            ("Ping", 1),
            ("Ping", 2),
            ("Pong", 2),
            ("Pong", 1),
            ("Pong", 0),
        ]

    def test_runs_at_priority_first(self, bus: EventBus) -> None:
        """The capture subscribes at Priority.FIRST: before the bands below it, even OBSERVE."""
        order: list[str] = []

        def observer(event: Ping) -> None:
            order.append(f"observer saw {len(events)} captured")

        bus.subscribe(Ping, observer, priority=Priority.FIRST - 1)
        with capture_events(bus) as events:
            [capture] = [s for s in bus.subscriptions() if s.handler is not observer]
            assert capture.priority == Priority.FIRST
            bus.publish_sync(Ping())
        assert order == ["observer saw 1 captured"]

    async def test_records_async_publishes(self, bus: EventBus) -> None:
        """Events published with await publish are recorded too, nested ones in order."""

        async def cascade(event: Ping) -> None:
            await bus.publish(Pong(n=event.n))

        bus.subscribe(Ping, cascade)
        first = Ping(n=1)
        with capture_events(bus) as events:
            await bus.publish(first)
        assert [type(e) for e in events] == [Ping, Pong]
        assert events[0] is first

    def test_filters_by_type(self, bus: EventBus) -> None:
        """Only instances of the given types (subclasses included) are recorded."""
        with capture_events(bus, Pong) as pongs, capture_events(bus, DomainEvent) as every:
            bus.publish_sync(Ping())
            bus.publish_sync(Pong())
            bus.publish_sync(balance())
        assert [type(e) for e in pongs] == [Pong]
        assert len(every) == 3

    def test_stops_recording_and_unsubscribes(self, bus: EventBus) -> None:
        """After the block nothing more is recorded and no subscription is left."""
        with capture_events(bus) as events:
            bus.publish_sync(Ping())
        bus.publish_sync(Ping())
        assert len(events) == 1
        assert bus.subscriptions() == ()

    def test_publish_sync_still_refuses_async_handlers(self, bus: EventBus) -> None:
        """Capturing does not hide AsyncHandlerError (the capture handler is sync)."""

        async def handler(event: Ping) -> None:
            """Never called."""

        bus.subscribe(Ping, handler)
        with capture_events(bus) as events, pytest.raises(AsyncHandlerError):
            bus.publish_sync(Ping())
        assert events == []


INNER_TESTS = textwrap.dedent(
    """
    from dataclasses import dataclass

    import pytest

    from eventbus import DomainEvent, EventBus


    @dataclass(frozen=True, kw_only=True, slots=True)
    class Thing(DomainEvent):
        n: int = 0


    SEEN_BUSES = []


    def test_fixtures(event_bus, captured_events):
        assert isinstance(event_bus, EventBus)
        assert event_bus.raise_errors
        thing = Thing(n=1)
        event_bus.subscribe(Thing, lambda e: event_bus.publish_sync(Thing(n=e.n + 1)) if e.n < 2 else None)
        event_bus.publish_sync(thing)
        assert [e.n for e in captured_events] == [1, 2]
        assert captured_events[0] is thing
        SEEN_BUSES.append(event_bus)


    def test_fresh_bus_per_test(event_bus, captured_events):
        assert captured_events == []
        assert event_bus not in SEEN_BUSES
        assert len(event_bus.subscriptions()) == 1  # only the capture


    def test_failing_handler_fails_the_test(event_bus):
        def broken(event):
            raise ValueError("handler bug")

        event_bus.subscribe(Thing, broken)
        with pytest.raises(ExceptionGroup) as info:
            event_bus.publish_sync(Thing())
        assert str(info.value.exceptions[0]) == "handler bug"
    """
)


def _run_inner(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    (tmp_path / "test_inner.py").write_text(INNER_TESTS, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # isolate from ours
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "test_inner.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class TestPytestPlugin:
    """The event_bus and captured_events fixtures, as another project's tests use them."""

    def test_fixtures_via_installed_entry_point(self, tmp_path: Path) -> None:
        """Installed eventbus registers its pytest11 plugin: the fixtures just work."""
        stdout = _run_inner(tmp_path)
        assert "3 passed" in stdout

    def test_fixtures_via_explicit_plugin(self, tmp_path: Path) -> None:
        """With plugin autoload off, '-p eventbus.testing' provides the fixtures."""
        stdout = _run_inner(
            tmp_path, "-p", "eventbus.testing", env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        )
        assert "3 passed" in stdout
