"""Compiled event classes: a generated constructor and validator per class.

For each event class this module reads the fields once (their types and the
checks declared on them, see `eventbus.events`) and generates, with `exec`:

* a *validator* ``validate(event)``: every field's rule, in field order, then
  the cross-field rules. `DomainEvent.__post_init__` runs it, so the dataclass
  constructor of any event class validates through it.
* for classes whose every rule is declared on its fields (no ``__post_init__``
  of their own, plain keyword-only fields), a replacement ``__init__`` with the
  same rules inlined: no ``__post_init__`` call, no ``getattr`` loop, and the
  fields stored through their slot descriptors (about half the cost of the
  ``object.__setattr__`` a frozen dataclass's ``__init__`` makes per field).

Each rule is inlined as its `eventbus._checks.Kind` ``fast`` test and calls the
full rule only when that test fails, so messages are the full rule's, word for
word. The generated code stores nothing but what the rules return: the
instance is the one the dataclass constructor would have built.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from eventbus._checks import INLINE, MONEY, Difference, Kind, wrong_difference

__all__ = ["FACTORY", "FieldSpec", "Layout", "hooks_of", "install_init", "layout_of"]


@final
class _Factory:
    """The default of a parameter whose value comes from a default factory."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"  # as dataclasses shows it in signatures


FACTORY: Final = _Factory()


@final
@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an event class, as the compiled code and the codec see it.

    Attributes:
        name: The field's name.
        hint: Its type, ``Annotated`` stripped; ``None`` when the class's
            annotations could not be resolved.
        kinds: The rules declared on it, in order.
        difference: Its cross-field rule, if any.
        setter: Its slot descriptor's ``__set__`` (``None`` for a class without slots).
        default: Its default value, or `dataclasses.MISSING`.
        factory: Its default factory, or `dataclasses.MISSING`.
    """

    name: str
    hint: object
    kinds: tuple[Kind, ...]
    difference: Difference | None
    setter: Callable[[object, object], None] | None
    default: object
    factory: object


@final
@dataclass(frozen=True, slots=True)
class Layout:
    """What this module knows of one event class.

    Attributes:
        cls: The class.
        fields: Its fields, in dataclass order (``event_id``, ``occurred_at`` first).
        validate: Runs every declared rule on a built instance (normalising in place).
        ruled: Every instance was checked by ``validate``'s rules (its construction
            runs them, and nothing else): a value a rule vouches for (``Kind.carries``) needs no
            further check to be encoded.
        compilable: A generated ``__init__`` may replace the dataclass one.
        resolved: The class's annotations resolved (``typing.get_type_hints``).
            Until they do (a name defined later in its module), only the base
            fields' rules are known, and the layout is not cached.
    """

    cls: type
    fields: tuple[FieldSpec, ...]
    validate: Callable[[Any], None]
    ruled: bool
    compilable: bool
    resolved: bool


# --------------------------------------------------------------------- analysis

_layouts: dict[type, Layout] = {}


def layout_of(
    cls: type,
    checks: Mapping[object, Kind],
    base_kinds: Mapping[str, Kind],
    base_post_init: object,
) -> Layout:
    """The (cached) `Layout` of event class ``cls``.

    Args:
        cls: A dataclass subclass of `DomainEvent`.
        checks: Which ``Annotated`` metadata objects (the ``check_*`` helpers)
            stand for which rule.
        base_kinds: The rule of each base field, by name.
        base_post_init: ``DomainEvent.__post_init__``: a class whose
            ``__post_init__`` is another function validates in its own way.
    """
    layout = _layouts.get(cls)
    if layout is None:
        layout = _analyse(cls, checks, base_kinds, base_post_init)
        if layout.resolved:
            _layouts[cls] = layout
    return layout


def _analyse(
    cls: type,
    checks: Mapping[object, Kind],
    base_kinds: Mapping[str, Kind],
    base_post_init: object,
) -> Layout:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
        resolved = True
    except Exception:  # not (yet) resolvable: the base rules only, as before
        hints, resolved = {}, False
    specs = []
    for f in dataclasses.fields(cls):
        hint: Any = hints.get(f.name)
        kinds: list[Kind] = []
        difference = None
        if typing.get_origin(hint) is typing.Annotated:
            for meta in hint.__metadata__:
                if isinstance(meta, Difference):
                    difference = meta
                elif _hashable(meta) and meta in checks:
                    kinds.append(checks[meta])
            hint = hint.__origin__
        if f.name in base_kinds:
            kinds.insert(0, base_kinds[f.name])
        specs.append(
            FieldSpec(
                f.name,
                hint if f.name in hints else None,
                tuple(kinds),
                difference,
                _slot_setter(cls, f.name),
                f.default,
                f.default_factory,
            )
        )
    fields = tuple(specs)
    _check_differences(cls, fields)
    own_rules = getattr(cls, "__post_init__", None) is base_post_init
    plain = len(cls.__dataclass_fields__) == len(fields) and all(  # type: ignore[attr-defined]
        f.init and f.kw_only for f in dataclasses.fields(cls)
    )
    compilable = own_rules and plain and resolved
    return Layout(cls, fields, _validator(cls, fields), own_rules, compilable, resolved)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None] | None:
    for klass in cls.__mro__:
        member = klass.__dict__.get(name)
        if isinstance(member, types.MemberDescriptorType):
            setter: Callable[[object, object], None] = member.__set__
            return setter
    return None


def _check_differences(cls: type, fields: tuple[FieldSpec, ...]) -> None:
    money = {f.name for f in fields if MONEY in f.kinds}
    for f in fields:
        if f.difference is not None:
            needed = {f.name, f.difference.minuend, f.difference.subtrahend}
            if not needed <= money:
                # Bounds first: exact arithmetic on unbounded amounts can build
                # numbers of millions of digits.
                raise TypeError(
                    f"{cls.__qualname__}.{f.name}: a difference rule needs "
                    f"check_decimal on {', '.join(sorted(needed - money))}"
                )


# ------------------------------------------------------------------- generation


def hooks_of(cls: type) -> tuple[Callable[[Any], None], ...]:
    """The ``validate`` methods ``cls`` and its bases define, base first.

    The validation hook of `eventbus.events.DomainEvent` subclasses: each class
    that defines ``validate(self)`` has it called once its fields are checked,
    with no ``super()`` call needed (which slotted dataclasses cannot make).
    """
    return tuple(
        c.__dict__["validate"]
        for c in reversed(cls.__mro__)
        if isinstance(c.__dict__.get("validate"), types.FunctionType)
    )


def _hook_calls(hooks: tuple[Callable[[Any], None], ...]) -> list[str]:
    return [f"__eb_hook_{k}(__eb_self)" for k in range(len(hooks))]


def _namespace(
    fields: tuple[FieldSpec, ...], hooks: tuple[Callable[[Any], None], ...] = ()
) -> dict[str, Any]:
    names: dict[str, Any] = dict(INLINE)
    for k, hook in enumerate(hooks):
        names[f"__eb_hook_{k}"] = hook
    names["__eb_FACTORY"] = FACTORY
    names["__eb_wrong_difference"] = wrong_difference
    names["__eb_setattr"] = object.__setattr__
    for i, f in enumerate(fields):
        names[f"__eb_set_{i}"] = f.setter
        names[f"__eb_factory_{i}"] = f.factory
        names[f"__eb_default_{i}"] = f.default
        for j, kind in enumerate(f.kinds):
            names[f"__eb_slow_{i}_{j}"] = kind.slow
    return names


_OWNER: Final = "__eb_type(__eb_self).__name__"  # evaluated only when a rule fails


def _store(i: int, f: FieldSpec, value: str) -> str:
    if f.setter is not None:
        return f"__eb_set_{i}(__eb_self, {value})"
    return f"__eb_setattr(__eb_self, {f.name!r}, {value})"


def _field_rules(i: int, f: FieldSpec, v: str, *, write_back: bool, skip_first: bool) -> list[str]:
    """Statements applying field ``i``'s rules to local ``v``, rebinding it to what they return.

    With ``write_back``, a value a rule changed (normalised) is stored on the
    instance too. With ``skip_first``, the first rule's test starts with
    ``elif``, to follow an ``if`` that produced a value known to pass it.
    """
    lines = []
    for j, kind in enumerate(f.kinds):
        keyword = "elif" if skip_first and j == 0 else "if"
        lines.append(f"{keyword} not {kind.fast.format(v=v)}:")
        if write_back:
            lines.append(f"    __eb_v = __eb_slow_{i}_{j}({_OWNER}, {f.name!r}, {v})")
            lines.append(f"    if __eb_v is not {v}:")
            lines.append(f"        {_store(i, f, '__eb_v')}")
            lines.append(f"    {v} = __eb_v")
        else:
            lines.append(f"    {v} = __eb_slow_{i}_{j}({_OWNER}, {f.name!r}, {v})")
    return lines


def _difference_rules(fields: tuple[FieldSpec, ...], var: Callable[[int], str]) -> list[str]:
    index = {f.name: i for i, f in enumerate(fields)}
    lines = []
    for i, f in enumerate(fields):
        rule = f.difference
        if rule is not None:
            new, previous = var(index[rule.minuend]), var(index[rule.subtrahend])
            lines.append(f"if {var(i)} != __eb_subtract({new}, {previous}):")
            lines.append(
                f"    __eb_wrong_difference({_OWNER}, {f.name!r}, {new}, {previous}, {var(i)})"
            )
    return lines


def _exec(src: str, names: dict[str, Any], cls: type, fn: str) -> Any:
    code = compile(src, f"<eventbus {cls.__module__}.{cls.__qualname__}.{fn}>", "exec")
    exec(code, names)
    made = names[fn]
    made.__qualname__ = f"{cls.__qualname__}.{fn}"
    made.__module__ = cls.__module__
    # Argument errors ("missing 1 required keyword-only argument") quote the code's qualname.
    made.__code__ = made.__code__.replace(co_qualname=made.__qualname__)
    return made


def _validator(cls: type, fields: tuple[FieldSpec, ...]) -> Callable[[Any], None]:
    def var(i: int) -> str:
        return f"__eb_{i}"

    body = []
    for i, f in enumerate(fields):
        if f.kinds:  # (difference rules need check_decimal on every operand)
            body.append(f"{var(i)} = __eb_self.{f.name}")
        body += _field_rules(i, f, var(i), write_back=True, skip_first=False)
    body += _difference_rules(fields, var)
    hooks = hooks_of(cls)
    body += _hook_calls(hooks)
    src = "def validate(__eb_self):\n" + "".join(f"    {line}\n" for line in body or ["pass"])
    names = _namespace(fields, hooks)
    return typing.cast(Callable[[Any], None], _exec(src, names, cls, "validate"))


def install_init(layout: Layout, trusted_factories: Mapping[object, Kind]) -> None:
    """Replace ``layout.cls.__init__`` by a generated one with every rule inlined.

    Args:
        layout: A `Layout` whose ``compilable`` is true.
        trusted_factories: Default factories whose values pass a rule as they
            are (``uuid7`` makes UUIDs): their first rule is skipped for them.
    """
    cls, fields = layout.cls, layout.fields
    required, optional, lines = [], [], []
    for i, f in enumerate(fields):
        trusted = False
        if f.factory is not dataclasses.MISSING:
            optional.append(f"{f.name}=__eb_FACTORY")
            lines.append(f"if {f.name} is __eb_FACTORY:")
            lines.append(f"    {f.name} = __eb_factory_{i}()")
            kind = trusted_factories.get(f.factory) if _hashable(f.factory) else None
            trusted = kind is not None and f.kinds[:1] == (kind,)
        elif f.default is not dataclasses.MISSING:
            optional.append(f"{f.name}=__eb_default_{i}")
        else:
            required.append(f.name)
        lines += _field_rules(i, f, f.name, write_back=False, skip_first=trusted)
    lines += _difference_rules(fields, lambda i: fields[i].name)
    lines += [_store(i, f, f.name) for i, f in enumerate(fields)]
    hooks = hooks_of(cls)
    lines += _hook_calls(hooks)  # on the stored instance, as after __post_init__'s checks
    src = f"def __init__(__eb_self, *, {', '.join(required + optional)}):\n" + "".join(
        f"    {line}\n" for line in lines
    )
    init = _exec(src, _namespace(fields, hooks), cls, "__init__")
    init.__eventbus_compiled__ = True
    cls.__init__ = init  # type: ignore[misc]
