"""`MetricsObserver`: counts and times a bus's dispatch; reads the SSE and Redis statistics.

The dispatch metrics are updated by an `eventbus.DispatchObserver`; the SSE and
Redis gauges are read when Prometheus scrapes (a custom collector), from the
plugins' public ``statistics()``, found by their class with
`eventbus.EventBus.get_plugin`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any, Final, final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventbus import DispatchObserver, DomainEvent, EventBus, FleetEntry, Subscription
from eventbus.events import event_label
from eventbus.exceptions import PluginNotFoundError

__all__ = ["MetricsObserver"]

#: A Redis stream id: milliseconds since the epoch, a dash, a sequence number.
_STREAM_ID: Final = re.compile(r"(\d+)-\d+")


def _handler_name(subscription: Subscription[Any]) -> str:
    handler = subscription.handler
    target = getattr(handler, "__func__", handler)
    module = getattr(target, "__module__", None) or type(handler).__module__
    qualname = getattr(target, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{qualname}"


def _statistics(bus: EventBus, kind: str) -> dict[str, int] | None:
    """The ``statistics()`` of the bus's SSE or Redis plugin, if loaded (typed access)."""
    try:
        if kind == "sse":
            from eventbus_sse import SSEPlugin

            return dict(bus.get_plugin(SSEPlugin).broadcaster.statistics())
        from eventbus_redis import RedisBridgePlugin

        return dict(bus.get_plugin(RedisBridgePlugin).statistics())
    except (ImportError, PluginNotFoundError):
        return None


@final
class _PluginCollector(Collector):
    """The SSE and Redis figures, read at scrape time."""

    def __init__(self, bus: EventBus, observer: MetricsObserver) -> None:
        self._bus = bus
        self._observer = observer

    def collect(self) -> Iterator[Metric]:
        sse = _statistics(self._bus, "sse")
        if sse is not None:
            yield GaugeMetricFamily(
                "eventbus_sse_clients", "SSE clients connected now", value=sse.get("clients", 0)
            )
            yield CounterMetricFamily(
                "eventbus_sse_dropped",
                "SSE clients disconnected for being too slow",
                value=sse.get("dropped_clients", 0),
            )
        redis = _statistics(self._bus, "redis")
        if redis is not None:
            yield GaugeMetricFamily(
                "eventbus_redis_buffered",
                "events waiting to be written to the stream",
                value=redis.get("buffered", 0),
            )
            yield CounterMetricFamily(
                "eventbus_redis_trimmed",
                "stream entries lost before this worker read them",
                value=redis.get("trimmed", 0),
            )
            yield GaugeMetricFamily(
                "eventbus_redis_lag_seconds",
                "how long after its stream id the last entry was delivered here",
                value=self._observer.lag,
            )


@final
class MetricsObserver(DispatchObserver):
    """Feeds the dispatch metrics of one bus into `registry` (module docstring)."""

    def __init__(self, bus: EventBus) -> None:
        self.registry: Final = CollectorRegistry()
        self.published: Final = Counter(
            "eventbus_events_published",
            "events published, by wire name",
            ["event"],
            registry=self.registry,
        )
        self.duration: Final = Histogram(
            "eventbus_handler_duration_seconds",
            "handler call durations, by handler",
            ["handler"],
            registry=self.registry,
        )
        self.failures: Final = Counter(
            "eventbus_handler_failures",
            "handler failures (timeouts included), by handler and event",
            ["handler", "event"],
            registry=self.registry,
        )
        #: Seconds between the last delivered entry's stream id and its delivery.
        self.lag: float = 0.0
        self.registry.register(_PluginCollector(bus, self))

    def publish_started(
        self, bus: EventBus, event: DomainEvent, entry: FleetEntry | None
    ) -> object:
        """Count a publish; for a delivered entry, note its lag instead."""
        if entry is None:
            self.published.labels(event_label(type(event))).inc()
        else:
            match = _STREAM_ID.fullmatch(entry.position)
            if match is not None:
                self.lag = max(0.0, time.time() - int(match[1]) / 1000)
        return None

    def handler_started(
        self, bus: EventBus, event: DomainEvent, subscription: Subscription[Any]
    ) -> object:
        """The start time."""
        return time.perf_counter()

    def handler_ended(
        self,
        bus: EventBus,
        event: DomainEvent,
        subscription: Subscription[Any],
        token: object,
        error: BaseException | None,
    ) -> None:
        """Time the call; count it as a failure if it raised."""
        assert isinstance(token, float)
        name = _handler_name(subscription)
        self.duration.labels(name).observe(time.perf_counter() - token)
        if error is not None:
            self.failures.labels(name, event_label(type(event))).inc()
