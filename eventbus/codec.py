"""The wire codec: events to bytes and back, with orjson.

The wire form is a JSON envelope:

    {"type": "portfolio.balance.updated",
     "event_id": "0190f0c6-...", "occurred_at": "2026-11-26T12:00:00.123456+00:00",
     "data": {"user_id": "...", "new_balance": "1234.56", ...}}

Decimals travel as strings, so values are exact to the last digit;
``loads(dumps(e)) == e`` for every registered event. Decoding is strict: an
unknown ``type``, a missing or extra field, or a value of the wrong type raises
`DecodeError` (never a bare ``KeyError`` or ``TypeError``).

Field types supported in event classes: ``UUID``, ``Decimal``, ``datetime``,
``str``, ``int``, ``bool``, ``float`` and ``X | None`` of those.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from uuid import UUID

import orjson

import eventbus.portfolio  # noqa: F401  # registers the built-in wire names, so loads() knows them
from eventbus.events import DomainEvent, event_class, event_name
from eventbus.exceptions import DecodeError, EventBusError

__all__ = ["decode_payload", "dumps", "encode_payload", "loads"]

_BASE_FIELDS: Final = frozenset(("event_id", "occurred_at"))
_ENVELOPE_KEYS: Final = frozenset(("type", "event_id", "occurred_at", "data"))

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


# Plain spellings only: the hyphenated UUID form (either case) and a plain
# decimal with an optional exponent. UUID() and Decimal() also accept braces,
# "urn:uuid:" prefixes, whitespace, underscores, "+" signs and non-ASCII
# digits, and a lenient decoder lets odd spellings of one id onto the bus.
_UUID_TEXT: Final = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_DECIMAL_TEXT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def _dec_uuid(raw: Any) -> UUID:
    if not isinstance(raw, str):
        raise TypeError("expected a UUID string")
    if not _UUID_TEXT.fullmatch(raw):
        raise ValueError("expected a UUID in the 8-4-4-4-12 hex form")
    return UUID(raw)


def _dec_decimal(raw: Any) -> Decimal:
    if not isinstance(raw, str):
        raise TypeError("expected a decimal string")
    if not _DECIMAL_TEXT.fullmatch(raw):
        raise ValueError("expected a plain decimal number such as '-12.50' or '1E+3'")
    return Decimal(raw)


def _dec_datetime(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise TypeError("expected an ISO 8601 string")
    return datetime.fromisoformat(raw)


def _exact(kind: type) -> Decoder:
    def decode(raw: Any) -> Any:
        # bool is an int subclass; refuse it where an int is expected and vice versa.
        if type(raw) is not kind and not (kind is float and type(raw) is int):
            raise TypeError(f"expected {kind.__name__}, got {type(raw).__name__}")
        return raw

    return decode


_CODERS: Final[dict[object, tuple[Encoder, Decoder]]] = {
    UUID: (str, _dec_uuid),
    Decimal: (str, _dec_decimal),
    datetime: (datetime.isoformat, _dec_datetime),
    str: (lambda v: v, _exact(str)),
    int: (lambda v: v, _exact(int)),
    bool: (lambda v: v, _exact(bool)),
    float: (lambda v: v, _exact(float)),
}


def _optional(coder: tuple[Encoder, Decoder]) -> tuple[Encoder, Decoder]:
    enc, dec = coder
    return (lambda v: None if v is None else enc(v)), (lambda r: None if r is None else dec(r))


class _Spec:
    """Precomputed per-class field coders, so encoding does no introspection."""

    __slots__ = ("cls", "fields", "name", "names")

    def __init__(self, cls: type[DomainEvent], name: str) -> None:
        self.cls = cls
        self.name = name
        hints = typing.get_type_hints(cls)
        fields: list[tuple[str, Encoder, Decoder]] = []
        for f in dataclasses.fields(cls):
            if f.name in _BASE_FIELDS:
                continue
            hint = hints[f.name]
            args = typing.get_args(hint)
            if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
                inner = [a for a in args if a is not type(None)]
                coder = _CODERS.get(inner[0]) if len(inner) == 1 else None
                coder = _optional(coder) if coder else None
            else:
                coder = _CODERS.get(hint)
            if coder is None:
                raise EventBusError(
                    f"{cls.__qualname__}.{f.name}: type {hint!r} is not supported by eventbus.codec"
                )
            fields.append((f.name, *coder))
        self.fields = tuple(fields)
        self.names = frozenset(f[0] for f in fields)


_specs: dict[type[DomainEvent], _Spec] = {}


def _spec_for(cls: type[DomainEvent]) -> _Spec:
    spec = _specs.get(cls)
    if spec is None:
        name = event_name(cls)
        if name is None:
            raise EventBusError(
                f"{cls.__qualname__} has no wire name; decorate it with @eventbus.events.event_type"
            )
        spec = _specs[cls] = _Spec(cls, name)
    return spec


def encode_payload(event: DomainEvent) -> dict[str, Any]:
    """Return the JSON-ready envelope dict for ``event`` (see the module docstring)."""
    spec = _spec_for(type(event))
    return {
        "type": spec.name,
        "event_id": str(event.event_id),
        "occurred_at": event.occurred_at.isoformat(),
        "data": {name: enc(getattr(event, name)) for name, enc, _ in spec.fields},
    }


def dumps(event: DomainEvent) -> bytes:
    """Encode ``event`` as compact JSON bytes.

    Raises:
        EventBusError: The event's class has no wire name or an unsupported field type.
    """
    return orjson.dumps(encode_payload(event))


def decode_payload(payload: Any) -> DomainEvent:
    """Build an event from an already-parsed envelope dict.

    Raises:
        DecodeError: The envelope is malformed, names an unknown type, or a field is invalid.
    """
    if not isinstance(payload, dict):
        raise DecodeError(f"expected a JSON object envelope, got {type(payload).__name__}")
    if payload.keys() != _ENVELOPE_KEYS:
        raise DecodeError(
            "envelope must have exactly the keys type, event_id, occurred_at, data; "
            f"got {sorted(map(str, payload))}"
        )
    name = payload["type"]
    cls = event_class(name) if isinstance(name, str) else None
    if cls is None:
        raise DecodeError(f"unknown event type {name!r}")
    spec = _spec_for(cls)
    data = payload["data"]
    if not isinstance(data, dict):
        raise DecodeError(f"{name}: 'data' must be an object, got {type(data).__name__}")
    expected = spec.names
    if data.keys() != expected:
        missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
        raise DecodeError(f"{name}: missing fields {missing}, unexpected fields {extra}")
    kwargs: dict[str, Any] = {}
    for key, decode in (("event_id", _dec_uuid), ("occurred_at", _dec_datetime)):
        try:
            kwargs[key] = decode(payload[key])
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"{name}: bad envelope field {key}: {exc}") from exc
    for field_name, _, dec in spec.fields:
        try:
            kwargs[field_name] = dec(data[field_name])
        except (TypeError, ValueError, InvalidOperation) as exc:
            raise DecodeError(f"{name}.{field_name}: {exc or type(exc).__name__}") from exc
    try:
        return cls(**kwargs)
    except ValueError as exc:  # InvalidEventError names the field already
        raise DecodeError(f"{name}: {exc}") from exc


def loads(data: bytes | bytearray | memoryview | str) -> DomainEvent:
    """Decode bytes produced by `dumps` back into an equal event.

    Raises:
        DecodeError: The bytes are not JSON, or not a valid event (see `decode_payload`).
    """
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc
    return decode_payload(payload)
