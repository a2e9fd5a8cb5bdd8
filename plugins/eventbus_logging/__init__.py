"""eventbus-logging: log every `DomainEvent` on the stdlib logger ``eventbus.events``.

Loaded by ``bus.load_entry_points()`` (entry point ``logging``), or by hand:

    import logging
    from eventbus_logging import LoggingPlugin

    bus.register_plugin(LoggingPlugin(levels={MyEvent: logging.WARNING}), name="logging")

See `LoggingPlugin` for levels, the ``extra`` fields and the cost when disabled,
and `JSONLinesFormatter` to write the event log as JSON lines.
"""

from eventbus_logging._json import JSONLinesFormatter
from eventbus_logging._plugin import DEFAULT_LEVELS, LOGGER_NAME, LoggingPlugin

__all__ = ["DEFAULT_LEVELS", "LOGGER_NAME", "JSONLinesFormatter", "LoggingPlugin"]
