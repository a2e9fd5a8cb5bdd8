"""Generated per-class encoders and decoders behind `eventbus.codec`.

Each registered event class gets, on first use, two functions written for its
fields (with `exec`), so that encoding and decoding do no introspection:

* an *encoder* building the envelope dict and handing it to ``orjson.dumps``.
  orjson writes UUIDs and datetimes itself, in the same text ``str()`` and
  ``isoformat()`` give; Decimals go as ``str()``.
* a *decoder* for an envelope ``orjson.loads`` parsed. It converts each value
  with a strict check of its spelling (``bytes.fromhex`` on the 32 hex digits
  of a hyphenated UUID, ``str(Decimal(text)) == text`` for amounts), checks the
  rules construction would check that the conversion does not already imply,
  and builds the instance through its slot descriptors.

Neither decides anything on a doubt. The encoder raises `Slow` at a value it
does not know to be exact, and the decoder at anything unusual (another
spelling, a missing key, a rule that fails); the caller then runs the
general, slower path, which accepts, refuses or explains exactly as it always
has. So the generated code only ever makes the common case faster.
"""

from __future__ import annotations

import operator
import types
import typing
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID, SafeUUID

import orjson

from eventbus._checks import CURRENCY, INLINE, MONEY, UUIDS, WHEN
from eventbus._compile import Layout, hooks_of

__all__ = ["Slow", "field_type", "make_decoder", "make_encoder"]

#: The JSON types the codec carries, each as its Python type.
SUPPORTED: Final = (UUID, Decimal, datetime, str, int, bool, float)


class Slow(Exception):  # a signal, not an error anyone sees
    """The generated code met a case it leaves to the general path."""


def field_type(hint: object) -> tuple[type, bool] | None:
    """``(type, optional)`` of a field annotated ``hint``, or ``None`` if the codec cannot carry it."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and inner[0] in SUPPORTED:
            return inner[0], True
        return None
    if hint in SUPPORTED:
        return typing.cast(type, hint), False
    return None


def _names(layout: Layout) -> dict[str, Any]:
    names: dict[str, Any] = dict(INLINE)
    names.update(
        __eb_Slow=Slow,
        __eb_dumps=orjson.dumps,
        __eb_dstr=Decimal.__str__,  # the canonical text, whatever a subclass's __str__ says
        __eb_dict=dict,
        __eb_len=len,
        __eb_bool=bool,
        __eb_float=float,
        __eb_fromhex=bytes.fromhex,
        __eb_from_bytes=int.from_bytes,
        __eb_fromiso=datetime.fromisoformat,
        __eb_new=object.__new__,
        __eb_set_int=UUID.__dict__["int"].__set__,
        __eb_set_safe=UUID.__dict__["is_safe"].__set__,
        __eb_UNKNOWN=SafeUUID.unknown,
        __eb_M128=(1 << 128) - 1,
        __eb_cls=layout.cls,
        __eb_setattr=object.__setattr__,
    )
    for i, f in enumerate(layout.fields):
        names[f"__eb_set_{i}"] = f.setter
    return names


def _compile(src: str, names: dict[str, Any], layout: Layout, fn: str) -> Any:
    cls = layout.cls
    exec(compile(src, f"<eventbus.codec {cls.__module__}.{cls.__qualname__}.{fn}>", "exec"), names)
    return names[fn]


def _types(layout: Layout) -> list[tuple[type, bool]]:
    kinds = []
    for f in layout.fields:
        kind = field_type(f.hint)
        if kind is None:  # the caller checked every field first
            raise TypeError(f"unsupported field {f.name}")
        kinds.append(kind)
    return kinds


# ----------------------------------------------------------------------- encoder

# Checks (raising Slow) and the JSON-ready expression, per type, for a value
# no construction rule vouches for.
_ENCODE: Final[dict[type, tuple[str, str]]] = {
    UUID: ("__eb_type({v}) is not __eb_UUID", "{v}"),
    Decimal: ("__eb_type({v}) is not __eb_Decimal or not {v}.is_finite()", "__eb_dstr({v})"),
    datetime: ("__eb_type({v}) is not __eb_datetime", "{v}.isoformat()"),
    # orjson itself refuses lone surrogates and ints beyond 64 bits (TypeError).
    str: ("__eb_type({v}) is not __eb_str", "{v}"),
    int: ("__eb_type({v}) is not __eb_int", "{v}"),
    bool: ("__eb_type({v}) is not __eb_bool", "{v}"),
    # orjson writes inf and nan as null; v - v is 0.0 for finite floats only.
    float: ("__eb_type({v}) is not __eb_float or {v} - {v} != 0.0", "{v}"),
}


def make_encoder(layout: Layout, name: str) -> Callable[[Any], bytes]:
    """The fast ``dumps`` of ``layout.cls`` under wire name ``name``; raises `Slow` or TypeError."""
    lines, values = [], []
    for i, (f, (kind, optional)) in enumerate(zip(layout.fields, _types(layout), strict=True)):
        v = f"__eb_{i}"
        lines.append(f"{v} = __eb_e.{f.name}")
        ruled = layout.ruled and any(k.carries is kind for k in f.kinds)
        if ruled and kind in (UUID, datetime) and not optional:
            values.append(v)  # orjson writes the exact type itself (and fails on a subclass)
            continue
        if ruled:
            expr = "__eb_dstr({v})" if kind is Decimal else "{v}"
        else:
            test, expr = _ENCODE[kind]
            guard = f"{v} is not None and ({test})" if optional else test
            lines.append(f"if {guard.format(v=v)}:")
            lines.append("    raise __eb_Slow")
        value = expr.format(v=v)
        values.append(f"(None if {v} is None else {value})" if optional else value)
    base, data = values[:2], values[2:]
    items = ", ".join(
        f"{f.name!r}: {value}" for f, value in zip(layout.fields[2:], data, strict=True)
    )
    lines.append(
        f"return __eb_dumps({{'type': {name!r}, 'event_id': {base[0]}, "
        f"'occurred_at': {base[1]}, 'data': {{{items}}}}})"
    )
    src = "def encode(__eb_e):\n" + "".join(f"    {line}\n" for line in lines)
    encoder: Callable[[Any], bytes] = _compile(src, _names(layout), layout, "encode")
    return encoder


# ----------------------------------------------------------------------- decoder


def _decode_uuids(pairs: list[tuple[str, str]]) -> list[str]:
    """Statements turning the raw hyphenated UUID texts into UUIDs, with one ``bytes.fromhex``.

    The dashes are checked in place first; then ``fromhex`` takes nothing but
    hex digit pairs (and whitespace, which would leave fewer bytes), so 16
    bytes per UUID mean exactly 32 hex digits each. One ``int.from_bytes`` of
    them all, split by shifts, costs less than one per UUID.
    """
    lengths = " == ".join(f"__eb_len({r})" for r, _ in pairs)
    dashes = " or ".join(f"{r}[8:24:5] != '----'" for r, _ in pairs)
    lines = [f"if not {lengths} == 36 or {dashes}:", "    raise __eb_Slow"]
    joined = " + ".join(r for r, _ in pairs)
    lines.append(f"__eb_b = __eb_fromhex(({joined}).replace('-', ''))")
    lines += [f"if __eb_len(__eb_b) != {16 * len(pairs)}:", "    raise __eb_Slow"]
    lines.append("__eb_n = __eb_from_bytes(__eb_b)")
    last = len(pairs) - 1
    for k, (_, v) in enumerate(pairs):
        shift = 128 * (last - k)
        value = "__eb_n" + (f" >> {shift}" if shift else "") + (" & __eb_M128" if k else "")
        lines.append(f"{v} = __eb_new(__eb_UUID)")
        lines.append(f"__eb_set_int({v}, {value})")
        lines.append(f"__eb_set_safe({v}, __eb_UNKNOWN)")
    return lines


def _decode_value(kind: type, kinds: tuple[Any, ...], r: str, v: str) -> tuple[list[str], set[Any]]:
    """Statements turning raw ``r`` into ``v`` (raising on doubt), and the rules they imply."""
    if kind is UUID:
        return _decode_uuids([(r, v)]), {UUIDS}
    if kind is Decimal:
        # The canonical text (what dumps writes) only: no spaces, "+", "_" or other digits.
        test = f"__eb_dstr({v}) != {r} or not {v}.is_finite()"
        implied = set()
        if MONEY in kinds:  # plain notation within 40 characters: within the digit bounds
            test += f" or __eb_len({r}) > 40 or 'E' in {r}"
            implied.add(MONEY)
        return [f"{v} = __eb_Decimal({r})", f"if {test}:", "    raise __eb_Slow"], implied
    if kind is datetime:
        lines = [f"{v} = __eb_fromiso({r})"]
        if WHEN in kinds:  # other offsets are normalised by the general path
            lines += [f"if {v}.tzinfo is not __eb_UTC:", "    raise __eb_Slow"]
        return lines, {WHEN}
    if kind is float:  # an int is a valid float (as JSON writes 1.0 as 1)
        test = f"__eb_type({r}) is not __eb_float and __eb_type({r}) is not __eb_int"
    else:
        test = f"__eb_type({r}) is not __eb_{kind.__name__}"
    return [f"if {test}:", "    raise __eb_Slow", f"{v} = {r}"], set()


def make_decoder(layout: Layout, slow: Callable[[Any], Any]) -> Callable[[dict[str, Any]], Any]:
    """The fast ``decode_payload`` of ``layout.cls``, deferring to ``slow`` on any doubt.

    The envelope given has exactly four keys, and its ``type`` names ``layout.cls``.
    """
    fields = layout.fields
    raw = [f"__eb_r{i}" for i in range(len(fields))]
    # One itemgetter call per dict, not one subscript per key. Only a dict
    # answers d[name] (a list or str raises TypeError), and its length then
    # rules out extra keys.
    lines = [
        f"{raw[0]}, {raw[1]}, __eb_d = __eb_envelope(__eb_p)",
        f"if __eb_len(__eb_d) != {len(fields) - 2}:",
        "    raise __eb_Slow",
    ]
    if len(fields) > 2:  # itemgetter of one key returns the value itself; of more, a tuple
        lines.append(f"{', '.join(raw[2:])} = __eb_data(__eb_d)")
    types_ = _types(layout)
    # The UUIDs (the costliest to parse) together, in one fromhex.
    uuids = [i for i, (kind, optional) in enumerate(types_) if kind is UUID and not optional]
    if uuids:
        lines += _decode_uuids([(f"__eb_r{i}", f"__eb_{i}") for i in uuids])
    for i, (f, (kind, optional)) in enumerate(zip(fields, types_, strict=True)):
        r, v = f"__eb_r{i}", f"__eb_{i}"
        if i in uuids:
            steps, implied = [], {UUIDS}
        elif kind is str and CURRENCY in f.kinds and not optional:
            steps, implied = [f"{v} = {r}"], set()  # the rule's test checks the type
        else:
            steps, implied = _decode_value(kind, f.kinds, r, v)
        if optional:
            steps = [f"{v} = None", f"if {r} is not None:", *(f"    {s}" for s in steps)]
            implied = set()  # None passes no rule: leave it to construction
        lines += steps
        for kind_rule in f.kinds:
            if kind_rule not in implied:
                lines += [f"if not {kind_rule.fast.format(v=v)}:", "    raise __eb_Slow"]
    index = {f.name: i for i, f in enumerate(fields)}
    for i, f in enumerate(fields):
        rule = f.difference
        if rule is not None:
            new, previous = f"__eb_{index[rule.minuend]}", f"__eb_{index[rule.subtrahend]}"
            lines += [f"if __eb_{i} != __eb_subtract({new}, {previous}):", "    raise __eb_Slow"]
    if layout.compilable and not hooks_of(layout.cls):
        # Every rule construction has was just checked: build as construction would.
        lines.append("__eb_e = __eb_new(__eb_cls)")
        for i, f in enumerate(fields):
            setter = f"__eb_set_{i}(__eb_e, " if f.setter else f"__eb_setattr(__eb_e, {f.name!r}, "
            lines.append(f"{setter}__eb_{i})")
        lines.append("return __eb_e")
    else:  # the class validates in __post_init__: let it
        args = ", ".join(f"{f.name}=__eb_{i}" for i, f in enumerate(fields))
        lines.append(f"return __eb_cls({args})")
    src = (
        "def decode(__eb_p):\n    try:\n"
        + "".join(f"        {line}\n" for line in lines)
        # Anything unusual: the general path decides, with its own messages.
        + "    except Exception:\n        pass\n    return __eb_slow(__eb_p)\n"
    )
    names = _names(layout)
    names["__eb_slow"] = slow
    names["__eb_envelope"] = operator.itemgetter("event_id", "occurred_at", "data")
    if len(fields) > 2:
        names["__eb_data"] = operator.itemgetter(*(f.name for f in fields[2:]))
    decoder: Callable[[dict[str, Any]], Any] = _compile(src, names, layout, "decode")
    return decoder
