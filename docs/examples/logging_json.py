"""JSON lines for eventbus's event log: a stdlib formatter using orjson.

Included verbatim by docs/plugins/logging.md and exercised by
tests/plugins/test_logging.py, so the recipe cannot drift from the plugin.
"""

from __future__ import annotations

import logging

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JSONLinesFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field.

    The logging plugin's ``extra`` values come from ``eventbus.codec``
    (UUIDs and Decimals already strings), so orjson needs no ``default=`` hook
    and amounts stay exact.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def log_events_as_json_lines(level: int = logging.DEBUG) -> logging.Handler:
    """Send the ``eventbus.events`` logger to stderr as JSON lines; return the handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(JSONLinesFormatter())
    logger = logging.getLogger("eventbus.events")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
