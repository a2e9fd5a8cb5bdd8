"""`PrometheusPlugin`: the bus's metrics in a registry of its own, and the ASGI app."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final, final

from eventbus import EventBus, hookimpl

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from eventbus_prometheus._metrics import MetricsObserver

__all__ = ["ENV_ENABLE", "PrometheusPlugin"]

#: Set to ``1`` to enable the plugin when `load_entry_points` creates it.
ENV_ENABLE: Final = "EVENTBUS_PROMETHEUS"


@final
class PrometheusPlugin:
    """Measures the bus (see `eventbus_prometheus`).

    Args:
        enabled: Measure from registration on. Default: only if
            ``EVENTBUS_PROMETHEUS=1``.
    """

    def __init__(self, *, enabled: bool | None = None) -> None:
        if enabled is None:
            flag = os.environ.get(ENV_ENABLE, "").strip().lower() in {"1", "true", "yes", "on"}
            enabled = flag
        self._enabled = enabled
        self._bus: EventBus | None = None
        self.observer: MetricsObserver | None = None

    def __repr__(self) -> str:
        return f"<PrometheusPlugin measuring={self.observer is not None}>"

    @hookimpl
    def eventbus_register(self, bus: EventBus) -> None:
        """Remember ``bus``; start measuring it if enabled."""
        self._bus = bus
        if self._enabled:
            self.enable()

    def enable(self) -> None:
        """Start measuring the bus (no-op if it is measured already).

        Raises:
            RuntimeError: The plugin is not registered with a bus.
            ImportError: prometheus-client is not installed.
        """
        if self._bus is None:
            raise RuntimeError("register the prometheus plugin with a bus before enabling it")
        if self.observer is not None:
            return
        try:
            from eventbus_prometheus._metrics import MetricsObserver
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the prometheus plugin needs prometheus-client: pip install 'eventbus[prometheus]'"
            ) from exc
        self.observer = MetricsObserver(self._bus)
        self._bus.add_observer(self.observer)

    def disable(self) -> None:
        """Stop measuring; the registry keeps the figures so far."""
        if self._bus is not None and self.observer is not None:
            self._bus.remove_observer(self.observer)

    @property
    def registry(self) -> CollectorRegistry | None:
        """The registry holding this bus's metrics (its own, never the global one).

        ``None`` until the plugin is enabled.
        """
        return None if self.observer is None else self.observer.registry

    def asgi_app(self) -> Any:
        """An ASGI app serving the metrics in the Prometheus text format: mount it at /metrics.

        Raises:
            RuntimeError: The plugin was never enabled.
        """
        if self.observer is None:
            raise RuntimeError("enable the prometheus plugin before serving its metrics")
        from prometheus_client import make_asgi_app

        return make_asgi_app(self.observer.registry)
