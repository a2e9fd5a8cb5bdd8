"""The event lifecycle comparison of ``eventbus bench``: eventbus, pydantic v2, msgspec.

One event's life outside dispatch: construct it (validated), build it with
`AccountBalanceUpdated.from_change`, encode it (`eventbus.codec.dumps`) and
decode it (`eventbus.codec.loads`). Each step is timed against models of
`AccountBalanceUpdated` in the typed-event libraries people would otherwise pick:

* ``pydantic``: the equivalent model. A frozen, strict ``BaseModel`` with the
  same field types and the same rules, written the cheapest pydantic way: a
  pattern for the currency, ``allow_inf_nan=False`` on the amounts, and one
  ``after`` validator for the digit bounds and the delta. The targets are
  ratios to it.
* ``pydantic types-only``: the same model checking types alone. It validates
  less than eventbus does, so it is a stricter yardstick, shown alongside.
* ``msgspec``: a frozen ``Struct`` of the same types, decoded by a typed
  ``msgspec.json.Decoder``: compiled C throughout, the limit to aim for. It
  checks types and formats when decoding only, none on construction.

Every candidate gets the same id and clock (`eventbus.events.uuid7`,
``datetime.now(UTC)``), so id generation is not what is compared. The peers
encode their flat model and are handed the type to decode; eventbus writes and
reads its envelope and finds the type from its wire name. The
``benchmarks/test_events.py`` suite times the same `lifecycle_calls`.
"""

# No "from __future__ import annotations": the peers' models are defined in
# functions (their libraries are optional) and their annotations must be
# evaluated there, where the local names are.
import importlib.util
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, final
from uuid import UUID

from eventbus import codec
from eventbus.cli import _bench
from eventbus.cli._bench import Call, sample_event
from eventbus.events import EXACT, fits_decimal_bounds, uuid7
from eventbus.portfolio import AccountBalanceUpdated

__all__ = [
    "LIBRARIES",
    "PEERS",
    "STEPS",
    "TARGETS",
    "LifecycleReport",
    "format_lifecycle",
    "lifecycle_calls",
    "missing_peers",
    "run_lifecycle",
]

#: The steps of an event's life that are timed, in order.
STEPS: Final = ("construct", "from_change", "encode", "decode")
EVENTBUS: Final = "eventbus"
PYDANTIC: Final = "pydantic"
PYDANTIC_TYPES: Final = "pydantic types-only"
MSGSPEC: Final = "msgspec"
#: The peers' distributions (the ``bench`` extra installs them).
PEERS: Final = ("pydantic", "msgspec")
#: Library names as they appear in tables, JSON and plots.
LIBRARIES: Final = (EVENTBUS, PYDANTIC, PYDANTIC_TYPES, MSGSPEC)
#: (step, peer, limit): eventbus's time over the peer's must be at most the limit.
TARGETS: Final = (
    ("construct", PYDANTIC, 1.0),
    ("encode", PYDANTIC, 1.0),
    ("decode", PYDANTIC, 1.5),
    # Stricter: against a model that validates less than eventbus.
    ("construct", PYDANTIC_TYPES, 1.0),
    ("encode", PYDANTIC_TYPES, 1.0),
)


def missing_peers() -> list[str]:
    """The peers that are not installed (the comparison needs them all)."""
    return [name for name in PEERS if importlib.util.find_spec(name) is None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _from_change(cls: Any, **fields: Any) -> Any:
    delta = EXACT.subtract(fields["new_balance"], fields["previous_balance"])
    return cls(delta=delta, **fields)


def _pydantic_models() -> tuple[Any, Any]:
    from pydantic import (
        AwareDatetime,
        BaseModel,
        ConfigDict,
        Field,
        StringConstraints,
        model_validator,
    )

    class PydanticTypesOnly(BaseModel):
        """`AccountBalanceUpdated` in pydantic: the same types, checked strictly."""

        model_config = ConfigDict(frozen=True, strict=True, extra="forbid")
        event_id: UUID = Field(default_factory=uuid7)
        occurred_at: AwareDatetime = Field(default_factory=_utcnow)
        user_id: UUID
        account_id: UUID
        previous_balance: Decimal
        new_balance: Decimal
        delta: Decimal
        currency: str

        @classmethod
        def from_change(cls, **fields: Any) -> Any:
            return _from_change(cls, **fields)

    Money = Annotated[Decimal, Field(allow_inf_nan=False)]

    class PydanticBalance(PydanticTypesOnly):
        """The same, with eventbus's rules: the equivalent model."""

        previous_balance: Money
        new_balance: Money
        delta: Money
        currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

        @model_validator(mode="after")
        def _rules(self) -> Any:
            for amount in (self.previous_balance, self.new_balance, self.delta):
                if not fits_decimal_bounds(amount):
                    raise ValueError("at most 40 digits before and after the decimal point")
            if self.delta != EXACT.subtract(self.new_balance, self.previous_balance):
                raise ValueError("delta must equal new_balance - previous_balance")
            return self

    return PydanticBalance, PydanticTypesOnly


def _msgspec_model() -> Any:
    import msgspec

    class MsgspecBalance(msgspec.Struct, frozen=True, kw_only=True):
        """`AccountBalanceUpdated` in msgspec: the same types (checked when decoding)."""

        user_id: UUID
        account_id: UUID
        previous_balance: Decimal
        new_balance: Decimal
        delta: Decimal
        currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
        event_id: UUID = msgspec.field(default_factory=uuid7)
        occurred_at: Annotated[datetime, msgspec.Meta(tz=True)] = msgspec.field(
            default_factory=_utcnow
        )

        @classmethod
        def from_change(cls, **fields: Any) -> Any:
            return _from_change(cls, **fields)

    return MsgspecBalance


def lifecycle_calls() -> dict[str, dict[str, Call]]:
    """``{step: {library: Call}}``: every candidate of every step, built once.

    Raises:
        ImportError: A peer is missing (see `missing_peers`).
    """
    import msgspec

    event = sample_event()
    change = {
        "user_id": event.user_id,
        "account_id": event.account_id,
        "previous_balance": event.previous_balance,
        "new_balance": event.new_balance,
        "currency": event.currency,
    }
    fields = {**change, "delta": event.delta}
    models: dict[str, Any] = dict(zip((PYDANTIC, PYDANTIC_TYPES), _pydantic_models(), strict=True))
    models[MSGSPEC] = _msgspec_model()
    models[EVENTBUS] = AccountBalanceUpdated
    calls: dict[str, dict[str, Call]] = {step: {} for step in STEPS}
    for lib in LIBRARIES:
        calls["construct"][lib] = Call(models[lib], (), fields)
        calls["from_change"][lib] = Call(models[lib].from_change, (), change)
    calls["encode"][EVENTBUS] = Call(codec.dumps, (event,))
    calls["decode"][EVENTBUS] = Call(codec.loads, (codec.dumps(event),))
    for lib in (PYDANTIC, PYDANTIC_TYPES):
        instance = models[lib](**fields)
        calls["encode"][lib] = Call(instance.model_dump_json)
        calls["decode"][lib] = Call(models[lib].model_validate_json, (instance.model_dump_json(),))
    struct = models[MSGSPEC](**fields)
    calls["encode"][MSGSPEC] = Call(msgspec.json.encode, (struct,))
    decoder = msgspec.json.Decoder(models[MSGSPEC])
    calls["decode"][MSGSPEC] = Call(decoder.decode, (msgspec.json.encode(struct),))
    return calls


# --------------------------------------------------------------------- the run


@final
@dataclass(slots=True)
class LifecycleReport:
    """The numbers of one lifecycle run: nanoseconds per call, by (step, library)."""

    ns: dict[tuple[str, str], float]
    meta: dict[str, Any]

    def ratio(self, step: str, numerator: str, denominator: str) -> float | None:
        """``numerator``'s time over ``denominator``'s for ``step``, if both were measured."""
        top, bottom = self.ns.get((step, numerator)), self.ns.get((step, denominator))
        return None if top is None or bottom is None else top / bottom

    def rows(self) -> list[dict[str, Any]]:
        """One row per step: eventbus's time over each peer's."""
        return [
            {
                "step": step,
                **{f"vs_{lib}": self.ratio(step, EVENTBUS, lib) for lib in LIBRARIES[1:]},
            }
            for step in STEPS
        ]

    def targets(self) -> list[dict[str, Any]]:
        """The targets, each with its measured ratio and whether it is met."""
        rows = []
        for step, peer, limit in TARGETS:
            value = self.ratio(step, EVENTBUS, peer)
            rows.append(
                {
                    "target": f"{step}: at most {limit}x {peer}",
                    "ratio": value,
                    "limit": limit,
                    "met": None if value is None else value <= limit,
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        """The same numbers as the table, as a JSON-ready dict."""
        results = [
            {"step": step, "library": lib, "ns_per_call": value}
            for (step, lib), value in sorted(self.ns.items())
        ]
        return {"results": results, "rows": self.rows(), "targets": self.targets()}


def run_lifecycle(*, rounds: int, min_time: float, progress: bool) -> LifecycleReport:
    """Time every step's candidates, interleaved round by round (as `eventbus.cli._bench.run`).

    Raises:
        ImportError: A peer is missing (see `missing_peers`).
    """
    plans = [
        ((step, 0, lib), _bench.timed_loop(call))
        for step, candidates in lifecycle_calls().items()
        for lib, call in candidates.items()
    ]
    report = _bench.time_plans(plans, rounds, min_time, progress)
    ns = {(step, lib): value for (step, _, lib), value in report.ns.items()}
    return LifecycleReport(ns, report.meta)


_NOTE: Final = (
    "pydantic: the same types and rules (a currency pattern, finite amounts, one after-validator\n"
    "for the digit bounds and the delta); types-only: the same model checking types alone.\n"
    "msgspec: compiled C, checking types and formats on decoding only. Every model makes its id\n"
    "with eventbus's uuid7. Lower is better: 0.50x means eventbus takes half the time."
)


def format_lifecycle(report: LifecycleReport) -> str:
    """The run as a text table: eventbus's time over each peer's, per step, and the targets."""
    head = ["step", *(f"eventbus / {lib}" for lib in LIBRARIES[1:])]
    body = [
        [row["step"], *(_bench.fmt(row[f"vs_{lib}"]) for lib in LIBRARIES[1:])]
        for row in report.rows()
    ]
    lines = [*_bench.columns(head, body), "", _NOTE, "", "Targets:"]
    lines += _bench.target_lines(report.targets())
    return "\n".join(lines)
