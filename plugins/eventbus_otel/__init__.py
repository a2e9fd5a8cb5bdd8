"""eventbus_otel: OpenTelemetry traces of every publish and handler call.

The ``otel`` plugin registers a `TracingObserver` (an
`eventbus.DispatchObserver`) with its bus. Spans follow the OpenTelemetry
messaging semantic conventions: ``publish <wire name>`` for each publish,
``process <wire name>`` for each handler call (with the handler's qualified
name as ``eventbus.handler``), and ``receive <wire name>`` when an entry of the
fleet's order is delivered (its parent is the original publish, carried in the
entry as a W3C ``traceparent``). An event published inside a handler gets a
publish span under that handler's span, so one balance update is one tree.
See ``docs/observability.md``.

Inert until enabled, like the Redis bridge: being installed and loaded alone
traces nothing and costs nothing (a bus with an observer takes the careful
dispatch path on every publish). Enable it with ``EVENTBUS_OTEL=1``, with
``OTelPlugin(enabled=True)`` or a tracer provider, or with `OTelPlugin.enable`.
Needs ``opentelemetry-api`` (``pip install 'eventbus[otel]'``) only once
enabled; spans go to the global tracer provider unless it is given one.

Example:

    from eventbus import EventBus
    from eventbus_otel import OTelPlugin

    bus = EventBus()
    bus.load_entry_points()
    bus.get_plugin(OTelPlugin).enable(tracer_provider=provider)
"""

from typing import TYPE_CHECKING, Any

from eventbus_otel._plugin import ENV_ENABLE, OTelPlugin

if TYPE_CHECKING:
    from eventbus_otel._observer import TracingObserver

__all__ = ["ENV_ENABLE", "OTelPlugin", "TracingObserver"]


def __getattr__(name: str) -> Any:
    # TracingObserver imports opentelemetry: only when asked for, so that the
    # plugin loads (inert) without the [otel] extra.
    if name == "TracingObserver":
        from eventbus_otel._observer import TracingObserver

        return TracingObserver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
