"""Thread safety: publishing from many threads while others (un)subscribe.

Threads are started together on a barrier and joined with a deadline; no test
sleeps to synchronise.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventbus import DomainEvent, EventBus, Subscription
from tests.core.samples import Ping, Pong, RecordingSequencer

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("fast_switching")]

PUBLISHERS = 4
PER_THREAD = 10_000


class Counter:
    """A thread-safe event counter usable as a handler.

    ``list.append`` is a single C call, atomic under the GIL, so no lock is
    needed (a lock would make the publisher threads convoy).
    """

    def __init__(self) -> None:
        self._calls: list[None] = []

    def __call__(self, event: DomainEvent) -> None:
        self._calls.append(None)

    @property
    def count(self) -> int:
        """Calls so far."""
        return len(self._calls)


def run_threads(targets: list[Callable[[], None]], timeout: float = 45.0) -> list[BaseException]:
    """Start every target at once, join them, and return what any of them raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets), timeout=timeout)

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait()
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"
    return errors


@pytest.fixture(name="fast_switching")
def _fast_switching() -> Iterator[None]:
    """Make the interpreter switch threads ~500x more often, so races actually interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


class TestConcurrentPublishing:
    """4 publisher threads x 10k events while another thread churns subscriptions."""

    @pytest.mark.parametrize("sequenced", [False, True], ids=["plain", "sequenced"])
    def test_publish_while_subscribing_and_unsubscribing(self, sequenced: bool) -> None:
        """No exception, and every handler subscribed throughout gets exactly 40k events.

        With a sequencer attached, its ``append`` (the first step of every
        plan) is called once per event too, from the publishing threads.
        """
        bus = EventBus(raise_errors=True)
        sequencer = RecordingSequencer()
        if sequenced:
            bus.set_sequencer(sequencer)
        stable = [Counter(), Counter(), Counter()]
        bus.subscribe(Ping, stable[0])
        bus.subscribe(DomainEvent, stable[1], priority=5)
        bus.subscribe(Ping, stable[2], priority=-5)
        publishers_done = threading.Event()
        churn_rounds = [0]

        # Built up front: creating events takes the UUIDv7 lock, which would make
        # the publisher threads convoy and the test slow, not stricter.
        events = [Ping(n=i) for i in range(PER_THREAD)]

        def publish() -> None:
            for event in events:
                bus.publish_sync(event)

        def churn() -> None:
            # Subscribe and unsubscribe in a loop until every publisher finished,
            # invalidating the plan cache under the publishers' feet.
            counter = Counter()
            while not publishers_done.is_set():
                subs: list[Subscription[Any]] = [
                    bus.subscribe(Ping, counter),
                    bus.subscribe(DomainEvent, counter, priority=1),
                    bus.subscribe(Pong, counter),
                ]
                for sub in subs:
                    sub.cancel()
                churn_rounds[0] += 1

        finished = Counter()

        def publisher() -> None:
            try:
                publish()
            finally:
                finished(Ping())
                if finished.count == PUBLISHERS:
                    publishers_done.set()

        errors = run_threads([publisher] * PUBLISHERS + [churn])
        assert errors == []
        assert [c.count for c in stable] == [PUBLISHERS * PER_THREAD] * 3
        assert churn_rounds[0] > 0
        assert len(sequencer.appended) == (PUBLISHERS * PER_THREAD if sequenced else 0)
        assert bus.current_event() is None  # whatever happened, back at top level
        # Only the stable subscriptions are left.
        assert len(bus.subscriptions()) == 3

    def test_once_under_threads_delivers_exactly_once(self) -> None:
        """Many threads racing on a once-subscription: exactly one delivery."""
        for _ in range(20):
            bus = EventBus()
            hits = Counter()
            sub = bus.subscribe(Ping, hits, once=True)

            def publish(bus: EventBus = bus) -> None:
                for _ in range(50):
                    bus.publish_sync(Ping())

            assert run_threads([publish] * 4) == []
            assert hits.count == 1
            assert not sub.active

    def test_weak_listener_dies_while_threads_publish(self) -> None:
        """A weak listener collected mid-run is dropped without errors or lost events."""
        bus = EventBus(raise_errors=True)
        stable = Counter()
        bus.subscribe(Ping, stable)

        class Listener:
            def on_ping(self, event: Ping) -> None:
                """Receives events until it dies."""

        listeners = [Listener() for _ in range(50)]
        for listener in listeners:
            bus.subscribe(Ping, listener.on_ping, weak=True)
        del listener  # the loop variable would keep the last one alive

        def publish() -> None:
            for _ in range(2_000):
                bus.publish_sync(Ping())

        def kill() -> None:
            while listeners:
                listeners.pop()
                gc.collect()

        assert run_threads([publish, publish, kill]) == []
        gc.collect()
        bus.subscribe(Pong, stable)  # any change purges deferred cancellations
        assert stable.count == 4_000
        assert [s.handler for s in bus.subscriptions()] == [stable, stable]
