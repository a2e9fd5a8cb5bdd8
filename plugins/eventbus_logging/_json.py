"""`JSONLinesFormatter`: one JSON object per log record, for the event log.

The logging plugin's ``extra`` values come from `eventbus.codec` (UUIDs and
Decimals as strings, timestamps in ISO 8601), so they go to orjson as they are
and amounts stay exact.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final, final

import orjson

__all__ = ["JSONLinesFormatter"]

# Attributes every LogRecord has; anything else on a record came from ``extra``.
# Computed from a real record, so attributes added by later Pythons (taskName,
# 3.12) are never mistaken for extra fields.
_STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


@final
class JSONLinesFormatter(logging.Formatter):
    """Format each record as one line of JSON: the record's basics, then its ``extra`` fields.

    The keys are ``time`` (the record's creation time, ISO 8601 in UTC, with
    microseconds), ``level``, ``logger`` and ``message``, then every ``extra``
    field in the order it was given, then ``exc_info`` and ``stack_info`` when
    the record has them. An ``extra`` key equal to one of the four basics is
    written with an ``event_`` prefix (``level`` becomes ``event_level``), so it
    can never hide them. A value orjson cannot encode is written as ``str(value)``.

    For `LoggingPlugin`'s records, the ``extra`` fields are ``event_type``,
    ``event_id``, ``occurred_at`` and the event's fields, exactly as
    `eventbus.codec` encodes them::

        import logging
        from eventbus_logging import LOGGER_NAME, JSONLinesFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JSONLinesFormatter())
        logging.getLogger(LOGGER_NAME).addHandler(handler)
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as one line of JSON (no newline: the handler adds it)."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD:
                continue
            while key in line:
                key = f"event_{key}"
            line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits, which ``default`` never sees
            return orjson.dumps({key: _plain(value) for key, value in line.items()}).decode()


def _plain(value: object) -> object:
    return value if value is None or isinstance(value, str | bool | float) else str(value)
