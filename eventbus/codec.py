"""The wire codec: events to bytes and back, with orjson.

The wire form is a JSON envelope:

    {"type": "portfolio.balance.updated",
     "event_id": "0190f0c6-...", "occurred_at": "2026-11-26T12:00:00.123456+00:00",
     "data": {"user_id": "...", "new_balance": "1234.56", ...}}

Decimals travel as strings, so values are exact to the last digit;
``loads(dumps(e)) == e`` for every registered event. Decoding is strict: an
unknown ``type``, a missing or extra field, or a value of the wrong type raises
`DecodeError` (never a bare ``KeyError`` or ``TypeError``).

Encoding never changes a value silently. A value the wire cannot carry
exactly raises `EncodeError`, naming the event type and the field: a float
inf or nan (JSON has neither), an int beyond 64 bits (orjson's range), a
string with a lone surrogate (not UTF-8), a non-finite Decimal, or a value of
another type than the field's.

Field types supported in event classes: ``UUID``, ``Decimal``, ``datetime``,
``str``, ``int``, ``bool``, ``float`` and ``X | None`` of those.

Each class gets an encoder and a decoder generated for its fields on first use
(module ``eventbus._wire``); anything they are unsure of goes through the
general code below, which defines what is accepted and every message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from uuid import UUID

import orjson

import eventbus.events as _events
import eventbus.portfolio  # noqa: F401  # registers the built-in wire names, so loads() knows them
from eventbus._compile import Layout
from eventbus._wire import Slow, field_type, make_decoder, make_encoder
from eventbus.events import DomainEvent, event_name
from eventbus.exceptions import DecodeError, EncodeError, EventBusError

__all__ = ["decode_payload", "dumps", "encode_payload", "loads"]

_ENVELOPE_KEYS: Final = frozenset(("type", "event_id", "occurred_at", "data"))

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


# Plain spellings only: the hyphenated UUID form (either case) and a plain
# decimal with an optional exponent. UUID() and Decimal() also accept braces,
# "urn:uuid:" prefixes, whitespace, underscores, "+" signs and non-ASCII
# digits, and a lenient decoder lets odd spellings of one id onto the bus.
_UUID_TEXT: Final = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_DECIMAL_TEXT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# What orjson writes and reads back exactly.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


# ------------------------------------------------------------------- decoding


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


# ------------------------------------------------------------------- encoding


class _Refused(Exception):
    """A value the wire cannot carry exactly (the message says why)."""


def _enc_uuid(value: Any) -> str:
    if not isinstance(value, UUID):
        raise _Refused(f"expected a UUID, got {type(value).__name__}")
    return UUID.__str__(value)


def _enc_decimal(value: Any) -> str:
    if not isinstance(value, Decimal):
        raise _Refused(f"expected a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise _Refused(f"{value!r} has no JSON form: only finite Decimals travel")
    return Decimal.__str__(value)


def _enc_datetime(value: Any) -> str:
    if not isinstance(value, datetime):
        raise _Refused(f"expected a datetime, got {type(value).__name__}")
    return value.isoformat()


def _enc_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Refused(f"expected a str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Refused(
            f"is not valid Unicode: a lone surrogate at index {exc.start} (JSON text is UTF-8)"
        ) from None
    return value


def _enc_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Refused(f"expected an int, got {type(value).__name__}")
    if not _INT_MIN <= value <= _INT_MAX:
        shown = str(value) if value.bit_length() <= 128 else f"a {value.bit_length()}-bit int"
        raise _Refused(
            f"{shown} is beyond the integers JSON carries exactly here "
            f"({_INT_MIN} to {_INT_MAX}, 64 bits)"
        )
    return int(value)


def _enc_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Refused(f"expected a bool, got {type(value).__name__}")
    return value


def _enc_float(value: Any) -> float | int:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused(f"{value!r} has no JSON form (JSON has no infinity or NaN)")
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _enc_int(value)  # an int is a valid float, and JSON writes it exactly
    raise _Refused(f"expected a float, got {type(value).__name__}")


_CODERS: Final[dict[type, tuple[Encoder, Decoder]]] = {
    UUID: (_enc_uuid, _dec_uuid),
    Decimal: (_enc_decimal, _dec_decimal),
    datetime: (_enc_datetime, _dec_datetime),
    str: (_enc_str, _exact(str)),
    int: (_enc_int, _exact(int)),
    bool: (_enc_bool, _exact(bool)),
    float: (_enc_float, _exact(float)),
}


def _optional(coder: tuple[Encoder, Decoder]) -> tuple[Encoder, Decoder]:
    enc, dec = coder
    return (lambda v: None if v is None else enc(v)), (lambda r: None if r is None else dec(r))


# ---------------------------------------------------------------------- specs


class _Unsupported(EventBusError):
    """A class whose fields the codec cannot carry."""

    def __init__(self, cls: type, field: str | None, message: str) -> None:
        self.field = field
        self.message = message
        where = cls.__qualname__ if field is None else f"{cls.__qualname__}.{field}"
        super().__init__(f"{where}: {message}")


class _Spec:
    """One class's wire name, field coders and generated fast paths."""

    __slots__ = ("cls", "decode", "encode", "fields", "name", "names")

    def __init__(self, cls: type[DomainEvent], name: str) -> None:
        self.cls = cls
        self.name = name
        layout: Layout = _events._layout(cls)
        if not layout.resolved:
            raise _Unsupported(cls, None, "its annotations do not resolve (typing.get_type_hints)")
        fields: list[tuple[str, Encoder, Decoder]] = []
        for f in layout.fields:
            kind = field_type(f.hint)
            if kind is None:
                raise _Unsupported(
                    cls, f.name, f"type {f.hint!r} is not supported by eventbus.codec"
                )
            coder = _CODERS[kind[0]]
            fields.append((f.name, *(_optional(coder) if kind[1] else coder)))
        self.fields = tuple(fields)
        self.names = frozenset(f[0] for f in fields[2:])
        self.encode = make_encoder(layout, name)
        self.decode = make_decoder(layout, _decode_slow)


_specs: dict[type[DomainEvent], _Spec] = {}
# The generated functions by class, one dict lookup from the call.
_encoders: dict[type[DomainEvent], Callable[[DomainEvent], bytes]] = {}
_decoders: dict[type[DomainEvent], Callable[[dict[str, Any]], DomainEvent]] = {}


def _spec_for(cls: type[DomainEvent]) -> _Spec:
    spec = _specs.get(cls)
    if spec is None:
        name = event_name(cls)
        if name is None:
            raise EncodeError(
                cls.__name__,
                None,
                "no wire name; decorate the class with @eventbus.events.event_type",
            )
        spec = _specs[cls] = _Spec(cls, name)
        _encoders[cls] = spec.encode
        _decoders[cls] = spec.decode
    return spec


def _encodable_spec(cls: type[DomainEvent]) -> _Spec:
    try:
        return _spec_for(cls)
    except _Unsupported as exc:
        raise EncodeError(cls.__name__, exc.field, exc.message) from None


def encode_payload(event: DomainEvent) -> dict[str, Any]:
    """Return the JSON-ready envelope dict for ``event`` (see the module docstring).

    Raises:
        EncodeError: The event's class has no wire name or an unsupported field
            type, or a value cannot be carried exactly; the error names the field.
    """
    spec = _encodable_spec(type(event))
    values = {}
    for name, encode, _ in spec.fields:
        try:
            values[name] = encode(getattr(event, name))
        except _Refused as why:
            raise EncodeError(type(event).__name__, name, str(why)) from None
    data = {name: values.pop(name) for name, _, _ in spec.fields[2:]}
    return {"type": spec.name, **values, "data": data}


def dumps(event: DomainEvent) -> bytes:
    """Encode ``event`` as compact JSON bytes.

    Raises:
        EncodeError: As `encode_payload` does.
    """
    encode = _encoders.get(type(event)) or _encodable_spec(type(event)).encode
    try:
        return encode(event)
    except (Slow, TypeError):  # orjson.JSONEncodeError is a TypeError
        pass
    # A value the generated encoder does not vouch for: the general path
    # writes it, or names the field it refuses.
    payload = encode_payload(event)
    try:
        return orjson.dumps(payload)
    except TypeError as exc:
        raise EncodeError(type(event).__name__, None, str(exc)) from None


def decode_payload(payload: Any) -> DomainEvent:
    """Build an event from an already-parsed envelope dict.

    Raises:
        DecodeError: The envelope is malformed, names an unknown type, or a field is invalid.
    """
    if type(payload) is dict and len(payload) == 4:
        name = payload.get("type")
        if type(name) is str:
            # Through the module: tests swap the registry dict for a copy.
            cls = _events._by_name.get(name)
            if cls is not None:
                decode = _decoders.get(cls) or _spec_for(cls).decode
                event: DomainEvent = decode(payload)
                return event
    return _decode_slow(payload)


def _decode_slow(payload: Any) -> DomainEvent:
    """`decode_payload` without the generated fast path: what is valid, and every message."""
    if not isinstance(payload, dict):
        raise DecodeError(f"expected a JSON object envelope, got {type(payload).__name__}")
    if payload.keys() != _ENVELOPE_KEYS:
        raise DecodeError(
            "envelope must have exactly the keys type, event_id, occurred_at, data; "
            f"got {sorted(map(str, payload))}"
        )
    name = payload["type"]
    cls = _events.event_class(name) if isinstance(name, str) else None
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
    for field_name, _, dec in spec.fields[2:]:
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
    # decode_payload, inlined: one call less on every decode.
    if type(payload) is dict and len(payload) == 4:
        name = payload.get("type")
        if type(name) is str:
            cls = _events._by_name.get(name)
            if cls is not None:
                decode = _decoders.get(cls) or _spec_for(cls).decode
                event: DomainEvent = decode(payload)
                return event
    return _decode_slow(payload)
