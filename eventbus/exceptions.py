"""The eventbus exception tree.

Every exception the library raises on purpose derives from `EventBusError`, so
``except EventBusError`` catches all of them. Errors about bad *values* also
derive from `ValueError`, and errors about bad *usage* from `TypeError` or
`RuntimeError`, so code written against the builtins keeps working:

    EventBusError
    ├── InvalidEventError        (ValueError)   an event field failed validation
    ├── EncodeError              (ValueError)   an event cannot be encoded exactly
    ├── DecodeError              (ValueError)   bytes are not a valid encoded event
    ├── AsyncHandlerError        (TypeError)    publish_sync() met an async handler
    ├── EventCycleError          (RuntimeError) re-entrant publishing went too deep
    ├── BusNotRunningError       (RuntimeError) publish_threadsafe() with no loop
    ├── StreamOverflowError      (RuntimeError) bus.stream() fell too far behind
    └── PluginError
        ├── PluginLoadError                     an entry point failed to import
        ├── PluginNotFoundError  (LookupError)  get_plugin(SomeClass): none registered
        └── PluginRegistrationError             a plugin failed while registering

Handler failures are never wrapped: with ``EventBus(raise_errors=True)`` they are
re-raised, untouched, inside an `ExceptionGroup`.
"""

from __future__ import annotations

__all__ = [
    "AsyncHandlerError",
    "BusNotRunningError",
    "DecodeError",
    "EncodeError",
    "EventBusError",
    "EventCycleError",
    "InvalidEventError",
    "PluginError",
    "PluginLoadError",
    "PluginNotFoundError",
    "PluginRegistrationError",
    "StreamOverflowError",
]


class EventBusError(Exception):
    """Base class of every error raised by eventbus."""


class InvalidEventError(EventBusError, ValueError):
    """An event was constructed with an invalid field.

    Attributes:
        event_type: Name of the event class being constructed.
        field: Name of the offending field.
    """

    def __init__(self, event_type: str, field: str, message: str) -> None:
        self.event_type = event_type
        self.field = field
        super().__init__(f"{event_type}.{field}: {message}")


class EncodeError(EventBusError, ValueError):
    """An event cannot be encoded, or not exactly (`eventbus.codec`).

    Its class has no wire name or a field type the codec does not support, or
    a value has no exact JSON form: a float inf or nan, an int beyond 64 bits,
    a string with a lone surrogate, a value of another type than its field's.
    Nothing is ever written changed instead.

    Attributes:
        event_type: Name of the event class being encoded.
        field: Name of the offending field, or ``None`` when the class itself is at fault.
    """

    def __init__(self, event_type: str, field: str | None, message: str) -> None:
        self.event_type = event_type
        self.field = field
        where = event_type if field is None else f"{event_type}.{field}"
        super().__init__(f"{where}: {message}")


class DecodeError(EventBusError, ValueError):
    """Bytes could not be decoded into a registered `DomainEvent`."""


class AsyncHandlerError(EventBusError, TypeError):
    """`EventBus.publish_sync` was called for a type that has async handlers.

    Raised before any handler runs, so a publish is never half-delivered.
    """


class EventCycleError(EventBusError, RuntimeError):
    """Handlers re-published events deeper than ``max_depth``.

    Attributes:
        chain: The event type names from the outermost event to the one refused.
    """

    def __init__(self, chain: tuple[str, ...], max_depth: int) -> None:
        self.chain = chain
        super().__init__(
            f"event dispatch exceeded max_depth={max_depth}; chain: " + " -> ".join(chain)
        )


class BusNotRunningError(EventBusError, RuntimeError):
    """The bus has no running event loop to hand a thread's event to."""


class StreamOverflowError(EventBusError, RuntimeError):
    """An `eventbus.EventBus.stream` buffer filled up under ``overflow="error"``.

    Raised by the iteration once the buffered events are consumed: the events
    after them were lost, and the stream is closed.
    """


class PluginError(EventBusError):
    """Base class for plugin discovery and registration failures."""


class PluginLoadError(PluginError):
    """An ``eventbus`` entry point could not be loaded.

    Attributes:
        entry_point: The entry point's name.
        distribution: ``"name version"`` of the distribution declaring it.
    """

    def __init__(
        self, entry_point: str, value: str, distribution: str, cause: BaseException
    ) -> None:
        self.entry_point = entry_point
        self.distribution = distribution
        super().__init__(
            f"failed to load eventbus plugin entry point {entry_point!r} ({value}) "
            f"from distribution {distribution}: {type(cause).__name__}: {cause}"
        )


class PluginNotFoundError(PluginError, LookupError):
    """`EventBus.get_plugin` was given a class, and no registered plugin is one.

    Attributes:
        plugin_class: The class asked for.
    """

    def __init__(self, plugin_class: type) -> None:
        self.plugin_class = plugin_class
        super().__init__(
            f"no registered plugin is a {plugin_class.__module__}.{plugin_class.__qualname__} "
            "(load it with bus.load_entry_points() or bus.register_plugin(...))"
        )


class PluginRegistrationError(PluginError):
    """A plugin was rejected, or raised, while being registered.

    The bus is left exactly as it was: the plugin's subscriptions are cancelled
    and it is unregistered.

    Attributes:
        plugin: The plugin's name.
    """

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")
