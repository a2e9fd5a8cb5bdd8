"""`TracingObserver`: OpenTelemetry spans for publishes, deliveries and handler calls.

Span names and attributes follow the OpenTelemetry messaging semantic
conventions, with ``messaging.system="eventbus"``:

==========================  ========  ==========================================
span                        kind      when
==========================  ========  ==========================================
``publish <wire name>``     PRODUCER  ``publish`` / ``publish_sync`` of an event
``process <wire name>``     CONSUMER  each handler call (``eventbus.handler``)
``receive <wire name>``     CONSUMER  a fleet entry delivered (its fleet handlers)
==========================  ========  ==========================================

Each span is current while it lasts (the observer runs in the handler's own
context), so an event published inside a handler is a child of that
handler's span. Across the fleet, the publish span's context travels in the
entry as W3C ``traceparent`` (`inject`); the ``receive`` span on every worker
is its *child* (same trace), not a link: one entry has exactly one cause, and
a trace viewer then shows the whole fan-out in one tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast, final

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from eventbus import DispatchObserver, DomainEvent, EventBus, FleetEntry, Subscription
from eventbus.events import event_label

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.trace import Span, TracerProvider

__all__ = ["TracingObserver"]

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_Token = tuple["Span", "Token[context.Context]"]


def _handler_name(subscription: Subscription[Any]) -> str:
    handler = subscription.handler
    target = getattr(handler, "__func__", handler)
    module = getattr(target, "__module__", None) or type(handler).__module__
    qualname = getattr(target, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{qualname}"


@final
class TracingObserver(DispatchObserver):
    """Makes spans of a bus's dispatch (module docstring).

    Args:
        tracer_provider: Where spans go; default: the global one.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer: Final = trace.get_tracer("eventbus", tracer_provider=tracer_provider)

    def _attributes(self, event: DomainEvent, operation: str) -> dict[str, str | bool]:
        return {
            "messaging.system": "eventbus",
            "messaging.operation.type": operation,
            "messaging.destination.name": event_label(type(event)),
            "messaging.message.id": str(event.event_id),
        }

    def _start(
        self,
        operation: str,
        event: DomainEvent,
        kind: SpanKind,
        extra: dict[str, str | bool] | None = None,
        parent: context.Context | None = None,
    ) -> _Token:
        attributes = self._attributes(event, operation)
        if extra:
            attributes.update(extra)
        span = self._tracer.start_span(
            f"{operation} {attributes['messaging.destination.name']}",
            context=parent,
            kind=kind,
            attributes=attributes,
        )
        return span, context.attach(trace.set_span_in_context(span, parent))

    @staticmethod
    def _end(token: object, error: BaseException | None) -> None:
        span, attached = cast("_Token", token)
        context.detach(attached)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()

    # ------------------------------------------------------------------ the hook

    def publish_started(
        self, bus: EventBus, event: DomainEvent, entry: FleetEntry | None
    ) -> object:
        """``publish <name>``, or ``receive <name>`` under the entry's ``traceparent``."""
        if entry is None:
            return self._start("publish", event, SpanKind.PRODUCER)
        parent = _PROPAGATOR.extract(entry.headers) if entry.headers else None
        extra: dict[str, str | bool] = {
            "eventbus.position": entry.position,
            "eventbus.local": entry.local,
        }
        return self._start("receive", event, SpanKind.CONSUMER, extra, parent)

    def publish_ended(
        self, bus: EventBus, event: DomainEvent, token: object, error: BaseException | None
    ) -> None:
        """End the publish (or receive) span."""
        self._end(token, error)

    def handler_started(
        self, bus: EventBus, event: DomainEvent, subscription: Subscription[Any]
    ) -> object:
        """``process <name>``, with ``eventbus.handler``."""
        name = _handler_name(subscription)
        return self._start("process", event, SpanKind.CONSUMER, {"eventbus.handler": name})

    def handler_ended(
        self,
        bus: EventBus,
        event: DomainEvent,
        subscription: Subscription[Any],
        token: object,
        error: BaseException | None,
    ) -> None:
        """End the handler's span: exception recorded and status ERROR if it failed."""
        self._end(token, error)

    def inject(self, bus: EventBus, event: DomainEvent, headers: dict[str, str]) -> None:
        """Put the current span's W3C ``traceparent`` (and ``tracestate``) in the entry."""
        _PROPAGATOR.inject(headers)
