"""`OTelPlugin`: traces its bus with a `TracingObserver` once enabled."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final, final

from eventbus import EventBus, hookimpl

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from eventbus_otel._observer import TracingObserver

__all__ = ["ENV_ENABLE", "OTelPlugin"]

#: Set to ``1`` to enable the plugin when `load_entry_points` creates it.
ENV_ENABLE: Final = "EVENTBUS_OTEL"


@final
class OTelPlugin:
    """Traces the bus's dispatch with OpenTelemetry (see `eventbus_otel`).

    Args:
        tracer_provider: Where spans go; default: the global tracer provider
            (``opentelemetry.trace.set_tracer_provider``). Giving one enables
            the plugin.
        enabled: Trace from registration on. Default: only if a tracer
            provider is given or ``EVENTBUS_OTEL=1``.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, enabled: bool | None = None
    ) -> None:
        if enabled is None:
            flag = os.environ.get(ENV_ENABLE, "").strip().lower() in {"1", "true", "yes", "on"}
            enabled = tracer_provider is not None or flag
        self._provider = tracer_provider
        self._enabled = enabled
        self._bus: EventBus | None = None
        self.observer: TracingObserver | None = None

    def __repr__(self) -> str:
        return f"<OTelPlugin tracing={self.observer is not None}>"

    @hookimpl
    def eventbus_register(self, bus: EventBus) -> None:
        """Remember ``bus``; start tracing it if enabled."""
        self._bus = bus
        if self._enabled:
            self.enable(self._provider)

    def enable(self, tracer_provider: TracerProvider | None = None) -> None:
        """Start tracing the bus (again, with ``tracer_provider`` if given).

        Raises:
            RuntimeError: The plugin is not registered with a bus.
            ImportError: opentelemetry-api is not installed.
        """
        if self._bus is None:
            raise RuntimeError("register the otel plugin with a bus before enabling it")
        try:
            from eventbus_otel._observer import TracingObserver
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the otel plugin needs opentelemetry-api: pip install 'eventbus[otel]'"
            ) from exc
        self.disable()
        self._provider = tracer_provider or self._provider
        self.observer = TracingObserver(self._provider)
        self._bus.add_observer(self.observer)

    def disable(self) -> None:
        """Stop tracing: the bus's dispatch costs nothing for this plugin again."""
        if self._bus is not None and self.observer is not None:
            self._bus.remove_observer(self.observer)
        self.observer = None
