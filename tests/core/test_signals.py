"""Instrumentation signals (`eventbus.signals`): payloads, timing, broken receivers, muting.

Receivers are connected with blinker's ``connected_to`` so none outlives its test
(the signals are process-wide).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from eventbus import EventBus, signals
from tests.core.samples import Ping, Pong


@contextmanager
def recorded() -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Record handler_completed and event_published sends while the block runs."""
    completed: list[dict[str, Any]] = []
    published: list[dict[str, Any]] = []
    with (
        signals.handler_completed.connected_to(_collector(completed)),
        signals.event_published.connected_to(_collector(published)),
    ):
        yield completed, published


def _collector(into: list[dict[str, Any]]) -> Any:
    def receiver(sender: object, **kw: Any) -> None:
        into.append({"sender": sender, **kw})

    return receiver


class TestSyncSignals:
    """Signals sent by publish_sync."""

    def test_handler_completed_and_event_published(self, bus: EventBus) -> None:
        """Each handler's completion and the whole dispatch are reported with elapsed_ns."""

        def first(event: Ping) -> None:
            """Does nothing."""

        def second(event: Ping) -> None:
            """Does nothing either."""

        bus.subscribe(Ping, first)
        bus.subscribe(Ping, second)
        event = Ping()
        with recorded() as (completed, published):
            bus.publish_sync(event)
        assert [(c["sender"], c["event"], c["handler"]) for c in completed] == [
            (bus, event, first),
            (bus, event, second),
        ]
        assert all(isinstance(c["elapsed_ns"], int) and c["elapsed_ns"] >= 0 for c in completed)
        assert len(published) == 1
        assert published[0]["sender"] is bus
        assert published[0]["event"] is event
        assert published[0]["handlers"] == 2
        assert isinstance(published[0]["elapsed_ns"], int)
        assert published[0]["elapsed_ns"] >= 0

    def test_event_published_with_no_handlers(self, bus: EventBus) -> None:
        """A publish nobody handles is still reported, with handlers=0."""
        published: list[dict[str, Any]] = []
        with signals.event_published.connected_to(_collector(published)):
            bus.publish_sync(Ping())
        assert [(p["handlers"], p["elapsed_ns"]) for p in published] == [(0, 0)]

    def test_failed_handler_not_reported_as_completed(self, bus: EventBus) -> None:
        """A failing handler sends handler_failed, not handler_completed."""
        completed: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []

        def broken(event: Ping) -> None:
            raise ValueError("x")

        bus.subscribe(Ping, broken)
        with (
            signals.handler_completed.connected_to(_collector(completed)),
            signals.handler_failed.connected_to(_collector(failed)),
        ):
            bus.publish_sync(Ping())
        assert completed == []
        assert [f["handler"] for f in failed] == [broken]
        # Exactly the documented keyword arguments.
        assert set(failed[0]) == {"sender", "event", "handler", "exception"}

    def test_receiver_for_another_sender_not_called(self, bus: EventBus) -> None:
        """Receivers connected for one bus do not hear another bus."""
        published: list[dict[str, Any]] = []
        other = EventBus()
        with signals.event_published.connected_to(_collector(published), sender=other):
            bus.publish_sync(Ping())
            other.publish_sync(Ping())
        assert [p["sender"] for p in published] == [other]


class TestHandlerIdentity:
    """Signals and logs name the handler as subscribed, whatever wraps it inside."""

    @pytest.mark.parametrize("weak", [False, True])
    def test_once_handler_named(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture, weak: bool
    ) -> None:
        """A once-handler (which cancels itself first) is still reported as itself."""
        completed: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []

        class Listener:
            def fine_once(self, event: Ping) -> None:
                """Returns normally."""

            def broken_once(self, event: Ping) -> None:
                raise ValueError("once and broken")

        listener = Listener()
        bus.subscribe(Ping, listener.fine_once, once=True, weak=weak)
        bus.subscribe(Ping, listener.broken_once, once=True, weak=weak)
        with (
            caplog.at_level(logging.ERROR, logger="eventbus"),
            signals.handler_completed.connected_to(_collector(completed)),
            signals.handler_failed.connected_to(_collector(failed)),
        ):
            bus.publish_sync(Ping())
        assert [c["handler"] for c in completed] == [listener.fine_once]
        assert [f["handler"] for f in failed] == [listener.broken_once]
        [record] = [r for r in caplog.records if r.name == "eventbus"]
        assert "Listener.broken_once" in record.getMessage()


class TestAsyncSignals:
    """Signals sent by await publish."""

    async def test_async_timing(self, bus: EventBus) -> None:
        """Under await publish both signals carry elapsed_ns, sync and async handlers alike."""

        async def async_handler(event: Ping) -> None:
            """Does nothing."""

        def sync_handler(event: Ping) -> None:
            """Does nothing."""

        bus.subscribe(Ping, async_handler)
        bus.subscribe(Ping, sync_handler)
        event = Ping()
        with recorded() as (completed, published):
            await bus.publish(event)
        assert [c["handler"] for c in completed] == [async_handler, sync_handler]
        assert all(c["elapsed_ns"] >= 0 for c in completed)
        assert [(p["event"], p["handlers"]) for p in published] == [(event, 2)]
        assert published[0]["elapsed_ns"] >= 0


class TestBrokenReceivers:
    """A receiver that raises is disconnected and logged; dispatch goes on."""

    def test_raising_receiver_disconnected_dispatch_continues(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The receiver's error is logged once, it is dropped, and handlers still ran."""
        calls: list[str] = []
        seen: list[Ping] = []

        def bad_receiver(sender: object, **kw: Any) -> None:
            calls.append("bad")
            raise RuntimeError("observer bug")

        good: list[dict[str, Any]] = []
        bus.subscribe(Ping, seen.append)
        bus.subscribe(Ping, seen.append)
        with (
            caplog.at_level(logging.ERROR, logger="eventbus"),
            signals.handler_completed.connected_to(_collector(good)),
        ):
            signals.handler_completed.connect(bad_receiver)
            try:
                bus.publish_sync(Ping())  # must not raise
                bus.publish_sync(Ping())
            finally:
                signals.handler_completed.disconnect(bad_receiver)
        assert len(seen) == 4
        assert calls == ["bad"]  # disconnected after its first failure
        assert len(good) == 4  # the well-behaved receiver kept hearing everything
        records = [r for r in caplog.records if r.name == "eventbus"]
        assert len(records) == 1
        assert "disconnected" in records[0].getMessage()
        assert records[0].exc_info is not None

    async def test_raising_receiver_under_async_publish(self, bus: EventBus) -> None:
        """The same isolation for event_published under await publish."""
        seen: list[Ping] = []

        def bad_receiver(sender: object, **kw: Any) -> None:
            raise RuntimeError("observer bug")

        bus.subscribe(Ping, seen.append)
        signals.event_published.connect(bad_receiver)
        try:
            await bus.publish(Ping())
            assert bad_receiver not in list(signals.event_published.receivers_for(bus))
            await bus.publish(Ping())
        finally:
            signals.event_published.disconnect(bad_receiver)
        assert len(seen) == 2


class TestMuted:
    """blinker's ``signal.muted()`` silences that signal for the bus; dispatch is unchanged."""

    @pytest.mark.parametrize(
        "muted",
        [signals.event_published, signals.handler_completed, signals.handler_failed],
        ids=lambda s: s.name.rsplit(".", 1)[-1],
    )
    async def test_a_muted_signal_reaches_nobody(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture, muted: Any
    ) -> None:
        """While one signal is muted its receivers hear nothing; the others hear everything."""
        heard: dict[str, list[dict[str, Any]]] = {}
        every = [signals.event_published, signals.handler_completed, signals.handler_failed]
        ran: list[str] = []

        def broken(event: Ping) -> None:
            ran.append("broken")
            raise ValueError("fails while muted")

        async def fine(event: Ping) -> None:
            ran.append("fine")

        bus.subscribe(Ping, broken)
        bus.subscribe(Ping, fine)
        bus.subscribe(Pong, lambda e: ran.append("pong"))
        with contextlib.ExitStack() as stack:
            for signal in every:
                heard[signal.name] = []
                stack.enter_context(signal.connected_to(_collector(heard[signal.name])))
            with muted.muted(), caplog.at_level(logging.ERROR, logger="eventbus"):
                await bus.publish(Ping())
                bus.publish_sync(Pong())
            assert heard[muted.name] == []
            assert all(heard[s.name] for s in every if s is not muted)
            assert ran[:2] == ["broken", "fine"]
            assert len(ran) == 3
            assert "fails while muted" in caplog.text  # still logged
            # Unmuted again after the block.
            await bus.publish(Ping())
            assert heard[muted.name] != []
