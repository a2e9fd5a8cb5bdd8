"""`LoggingPlugin`: one ``DomainEvent`` subscription that logs every event.

The hot path is deliberately tiny: one dict lookup for the event type's level
(resolved once per concrete type, then cached) and ``logger.isEnabledFor``.
Nothing is built for an event whose level is disabled or switched off.

The handler is a *local* handler at `eventbus.Priority.OBSERVE`, so an event is
logged once per fleet: a root event on the worker that published it, an event
derived in the fleet (net worth from a balance update) on the worker whose
entry it was derived from. See docs/plugins/logging.md.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, final
from uuid import UUID

from eventbus import DomainEvent, EncodeError, EventBus, Priority, codec, hookimpl
from eventbus.events import event_name
from eventbus.portfolio import (
    AccountBalanceUpdated,
    AccountHoldingsUpdated,
    PortfolioNetWorthRecalculated,
)

__all__ = ["DEFAULT_LEVELS", "LOGGER_NAME", "LoggingPlugin"]

#: The logger every event is logged on.
LOGGER_NAME: Final = "eventbus.events"

#: Built-in levels; ``levels=`` passed to `LoggingPlugin` is layered on top.
DEFAULT_LEVELS: Final[Mapping[type[DomainEvent], int | None]] = MappingProxyType(
    {
        AccountBalanceUpdated: logging.DEBUG,
        AccountHoldingsUpdated: logging.DEBUG,
        PortfolioNetWorthRecalculated: logging.INFO,
    }
)

# ``Logger.makeRecord`` raises KeyError when an ``extra`` key would overwrite a
# LogRecord attribute; computed from a real record so new attributes (taskName in
# 3.12) are covered too.
_RESERVED: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_META: Final = ("event_type", "event_id", "occurred_at")


def _check_level(cls: object, level: object, where: str = "") -> int | None:
    if not isinstance(cls, type):
        raise TypeError(f"levels: keys must be event classes, got {cls!r}")
    if level is None:
        return None
    if not isinstance(level, int) or isinstance(level, bool) or level <= 0:
        raise ValueError(
            f"{where or f'levels[{cls.__qualname__}]'}: must be a positive logging level (e.g. logging.INFO) "
            f"or None for off, got {level!r}"
        )
    return level


def _plain(value: Any) -> Any:
    # Fallback for events the codec cannot encode (no wire name): same rules as the codec.
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@final
class _Shape:
    """How one concrete event type is turned into a log call (computed once per type)."""

    __slots__ = ("fields", "keys", "name", "use_codec")

    def __init__(self, cls: type[DomainEvent]) -> None:
        wire = event_name(cls)
        self.name: Final = wire if wire is not None else cls.__qualname__
        self.use_codec = wire is not None
        self.fields: Final = tuple(
            f.name for f in dataclasses.fields(cls) if f.name not in ("event_id", "occurred_at")
        )
        taken = set(_RESERVED) | set(_META)
        keys: dict[str, str] = {}
        for name in self.fields:
            key = name
            while key in taken:  # e.g. a field called "name" is logged as "event_name"
                key = f"event_{key}"
            taken.add(key)
            keys[name] = key
        self.keys: Final = keys

    def extra(self, event: DomainEvent) -> dict[str, Any]:
        keys = self.keys
        if self.use_codec:
            try:
                payload = codec.encode_payload(event)
            except EncodeError as exc:
                # A class the codec cannot encode at all: plain values from now
                # on. A value it cannot encode exactly (a nan, a 65-bit int):
                # plain values for this event only.
                if exc.field is None:
                    self.use_codec = False
            else:
                extra = {
                    "event_type": self.name,
                    "event_id": payload["event_id"],
                    "occurred_at": payload["occurred_at"],
                }
                for name, value in payload["data"].items():
                    extra[keys[name]] = value
                return extra
        extra = {
            "event_type": self.name,
            "event_id": str(event.event_id),
            "occurred_at": event.occurred_at.isoformat(),
        }
        for name in self.fields:
            extra[keys[name]] = _plain(getattr(event, name))
        return extra


@final
class LoggingPlugin:
    """Log every event published on the bus, with structured ``extra`` fields.

    Each event is logged on logger ``eventbus.events`` with its wire name as the
    message (the class's qualified name if it has none) and these ``extra``
    fields: ``event_type`` (the wire name), ``event_id``, ``occurred_at`` (ISO
    8601) and every event field, UUIDs and Decimals as strings (exactly as
    `eventbus.codec` encodes them). A field whose name clashes with a
    `logging.LogRecord` attribute is prefixed with ``event_`` (``name`` becomes
    ``event_name``).

    Levels: `DEFAULT_LEVELS` (balance and holdings at DEBUG, net worth at INFO),
    then ``levels``; any other event logs at ``default``. A type's level is found
    along its MRO, so configuring a base class covers its subclasses. ``None``
    switches a type off.

    Args:
        levels: ``{event class: level or None}``, layered over `DEFAULT_LEVELS`.
        default: Level for event types with no configured level (``None``: off).
        logger: The logger to use (default: ``logging.getLogger("eventbus.events")``).

    Raises:
        TypeError: A ``levels`` key is not a class.
        ValueError: A level is not a positive int or ``None``; the message names the type.
    """

    __slots__ = ("_configured", "_default", "_levels", "_logger", "_shapes")

    def __init__(
        self,
        levels: Mapping[type[DomainEvent], int | None] | None = None,
        *,
        default: int | None = logging.INFO,
        logger: logging.Logger | None = None,
    ) -> None:
        configured = dict(DEFAULT_LEVELS)
        for cls, level in (levels or {}).items():
            configured[cls] = _check_level(cls, level)
        self._configured = configured
        self._default = _check_level(DomainEvent, default, "default")
        self._logger: Final = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        # Per concrete type: the resolved level (the only thing the hot path reads).
        self._levels: dict[type, int | None] = {}
        self._shapes: dict[type, _Shape] = {}

    @property
    def logger(self) -> logging.Logger:
        """The logger events are logged on."""
        return self._logger

    def level_for(self, cls: type[DomainEvent]) -> int | None:
        """Return the level events of type ``cls`` log at, or ``None`` if off."""
        try:
            return self._levels[cls]
        except KeyError:
            return self._resolve(cls)

    def set_level(self, cls: type[DomainEvent], level: int | None) -> None:
        """Change the level for ``cls`` (and subclasses without their own), ``None`` for off."""
        configured = dict(self._configured)
        configured[cls] = _check_level(cls, level)
        self._configured = configured
        self._levels = {}  # rebinding is atomic: publishers see the old or the new cache

    def _resolve(self, cls: type) -> int | None:
        configured = self._configured
        level = self._default
        for base in cls.__mro__:
            if base in configured:
                level = configured[base]
                break
        else:
            # ABC-registered (virtual) subclasses are not in the MRO.
            for base, candidate in configured.items():
                if issubclass(cls, base):
                    level = candidate
                    break
        self._levels[cls] = level
        return level

    def handle(self, event: DomainEvent) -> None:
        """Log ``event`` if its level is on and enabled (the subscribed handler)."""
        try:
            level = self._levels[type(event)]
        except KeyError:
            level = self._resolve(type(event))
        if level and self._logger.isEnabledFor(level):
            self._emit(event, level)

    def _emit(self, event: DomainEvent, level: int) -> None:
        cls = type(event)
        shape = self._shapes.get(cls)
        if shape is None:
            shape = self._shapes[cls] = _Shape(cls)
        self._logger.log(level, shape.name, extra=shape.extra(event))

    @hookimpl
    def eventbus_register(self, bus: EventBus) -> None:
        """Subscribe `handle` to every `DomainEvent`, locally, at `Priority.OBSERVE`."""
        # OBSERVE, above ordinary handlers: dispatch is depth-first, so an event
        # is logged before the events its handlers publish (causal order).
        # Local, not fleet: every worker would log each event otherwise.
        bus.subscribe(DomainEvent, self.handle, priority=Priority.OBSERVE)

    def __repr__(self) -> str:
        return f"<LoggingPlugin logger={self._logger.name!r}>"
