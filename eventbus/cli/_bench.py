"""The quick dispatch benchmark behind ``eventbus bench``.

It times `EventBus.publish_sync` and `EventBus.publish` against the practical
floor (a hand-written ``for h in table[type(e)]: h(e)`` dispatcher, a bare
``dict.get`` for "no subscribers", a bare sequential ``await`` loop for async)
and against the libraries people would otherwise pick: blinker, pluggy and
pyee. The ``benchmarks/`` pytest-benchmark suite builds its candidates from the
same factories (`dispatchers`), so both tools measure the same code.

Method: each candidate call is compiled into its own timing loop (as `timeit`
does, so no wrapper call is added to anyone's cost); a sample runs the loop
long enough to dwarf the timer; the candidates of a run are *interleaved*,
round after round, and the minimum per call is kept. The minimum is the
figure least disturbed by a noisy, shared machine. Only ratios between
candidates of the same run are meaningful.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import itertools
import platform
import sys
import time
import types
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, final

from eventbus._bus import EventBus
from eventbus.portfolio import AccountBalanceUpdated

__all__ = [
    "COUNTS",
    "Call",
    "Report",
    "case_label",
    "columns",
    "compile_loop",
    "dispatchers",
    "fmt",
    "format_table",
    "noop_handlers",
    "peer_calls",
    "run",
    "sample_event",
    "target_lines",
    "time_plans",
    "timed_loop",
]

#: Handler counts of the sync comparison (the x axis of ``--plot``).
COUNTS: Final = (0, 1, 3, 10)
#: Library names as they appear in tables, JSON and plots.
EVENTBUS: Final = "eventbus"
HAND: Final = "hand loop"
DICT_GET: Final = "dict.get"
AWAIT_LOOP: Final = "await loop"
PEERS: Final = ("blinker", "pluggy", "pyee")

# (case, handlers, numerator, denominator, limit). With eventbus as the numerator
# the ratio must be at most the limit; with a peer, at least the limit.
_TARGETS: Final = (
    ("sync", 3, EVENTBUS, HAND, 2.2),
    ("sync", 3, "blinker", EVENTBUS, 5.0),
    ("sync", 3, "pluggy", EVENTBUS, 5.0),
    ("sync", 3, "pyee", EVENTBUS, 3.0),
    ("sync", 0, EVENTBUS, DICT_GET, 3.0),
    ("async", 3, EVENTBUS, AWAIT_LOOP, 2.2),
    # The deployed shape (eventbus bench --redis URL): every plugin, the bridge on.
    ("sync deployed", 3, EVENTBUS, HAND, 2.2),
    ("sync deployed", 3, "blinker", EVENTBUS, 5.0),
    ("sync deployed", 3, "pluggy", EVENTBUS, 5.0),
    ("sync deployed", 3, "pyee", EVENTBUS, 3.0),
    ("async deployed", 3, EVENTBUS, AWAIT_LOOP, 2.2),
)


def sample_event() -> AccountBalanceUpdated:
    """A realistic event, built once, outside any timed loop."""
    return AccountBalanceUpdated.from_change(
        user_id=uuid.UUID("0190a5f2-7c1e-7b3a-9d4e-3f2a1b0c9d8e"),
        account_id=uuid.UUID("0190a5f2-7c1e-7b3a-9d4e-3f2a1b0c9d8f"),
        previous_balance=Decimal("1520.75"),
        new_balance=Decimal("1735.20"),
        currency="USD",
    )


def _noop(event: object) -> None:
    return None


async def _async_noop(event: object) -> None:
    return None


def noop_handlers(count: int, *, is_async: bool = False) -> list[Callable[[Any], Any]]:
    """``count`` distinct no-op one-argument handlers.

    Distinct objects, because blinker and pluggy dedupe receivers. One argument
    suits every library: blinker calls ``receiver(sender)`` (the event is sent
    as the sender), pluggy ``impl(event)``, pyee ``listener(event)``.
    """
    proto = _async_noop if is_async else _noop
    return [types.FunctionType(proto.__code__, proto.__globals__, f"noop{i}") for i in range(count)]


@final
@dataclass(frozen=True, slots=True)
class Call:
    """One candidate: how a library dispatches one event (``fn(*args, **kwargs)``).

    ``expr``, when given, replaces the call in the timing loop; it may use
    ``fn`` and the positional arguments as ``a0``, ``a1``...
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    is_async: bool = False
    expr: str = ""


def _sync_dispatchers(count: int, event: AccountBalanceUpdated) -> dict[str, Call]:
    handlers = noop_handlers(count)
    bus = EventBus()
    for handler in handlers:
        bus.subscribe(AccountBalanceUpdated, handler)
    table: dict[type, tuple[Callable[..., Any], ...]] = {AccountBalanceUpdated: tuple(handlers)}

    def hand_loop(e: object) -> None:
        for h in table[type(e)]:
            h(e)

    calls = {EVENTBUS: Call(bus.publish_sync, (event,)), HAND: Call(hand_loop, (event,))}
    if count == 0:
        empty: dict[type, object] = {}
        calls[DICT_GET] = Call(empty.get, (event,), expr="fn(type(a0))")
    calls.update(peer_calls(handlers, event))
    return calls


def peer_calls(handlers: list[Callable[[Any], Any]], event: object) -> dict[str, Call]:
    """blinker, pluggy and (when installed) pyee, each dispatching to ``handlers``."""
    import blinker
    import pluggy

    calls = {}
    signal = blinker.Signal()
    for handler in handlers:
        signal.connect(handler, weak=False)
    calls["blinker"] = Call(signal.send, (event,))

    spec = pluggy.HookspecMarker("benchbus")
    impl = pluggy.HookimplMarker("benchbus")

    class Spec:
        @spec
        def on_event(self, event: object) -> None:
            """Called for each event."""

    manager = pluggy.PluginManager("benchbus")
    manager.add_hookspecs(Spec)
    # pluggy calls the last registered first: register in reverse for the same order.
    for handler in reversed(handlers):
        # A namespace holding the callable: pluggy's cheapest kind of impl. A
        # bound method is marked through its function (attributes forward).
        impl(getattr(handler, "__func__", handler))
        manager.register(types.SimpleNamespace(on_event=handler))
    calls["pluggy"] = Call(manager.hook.on_event, (), {"event": event})

    if importlib.util.find_spec("pyee") is not None:  # pyee is only in the bench extra
        from pyee import EventEmitter

        emitter = EventEmitter()
        for handler in handlers:
            emitter.add_listener("portfolio.balance.updated", handler)
        calls["pyee"] = Call(emitter.emit, ("portfolio.balance.updated", event))
    return calls


def _async_dispatchers(count: int, event: AccountBalanceUpdated) -> dict[str, Call]:
    handlers = noop_handlers(count, is_async=True)
    bus = EventBus()
    for handler in handlers:
        bus.subscribe(AccountBalanceUpdated, handler)
    table: dict[type, tuple[Callable[..., Any], ...]] = {AccountBalanceUpdated: tuple(handlers)}

    async def await_loop(e: object) -> None:
        for h in table[type(e)]:
            await h(e)

    return {
        EVENTBUS: Call(bus.publish, (event,), is_async=True),
        AWAIT_LOOP: Call(await_loop, (event,), is_async=True),
    }


def dispatchers(
    count: int, event: AccountBalanceUpdated, *, is_async: bool = False
) -> dict[str, Call]:
    """Every library's way to dispatch ``event`` to ``count`` no-op handlers.

    Sync: ``eventbus`` (`EventBus.publish_sync`), ``hand loop``, ``blinker``
    (``Signal.send``), ``pluggy`` (a hook call), ``pyee`` (``emit``, when pyee is
    installed) and, for ``count == 0``, ``dict.get``. Async: ``eventbus``
    (``await publish``) and ``await loop``.
    """
    return (_async_dispatchers if is_async else _sync_dispatchers)(count, event)


def compile_loop(call: Call, runner: asyncio.Runner | None = None) -> Callable[[int], object]:
    """A function making ``n`` back-to-back dispatches with ``call``.

    The call is compiled into the loop (as `timeit` does), so no wrapper call is
    added to anyone's cost. Async calls are awaited in one coroutine that runs
    on ``runner`` (required for them).
    """
    names: dict[str, Any] = {"fn": call.fn, "_repeat": itertools.repeat}
    params = []
    for i, arg in enumerate(call.args):
        names[f"a{i}"] = arg
        params.append(f"a{i}")
    for key, arg in call.kwargs.items():
        names[f"k_{key}"] = arg
        params.append(f"{key}=k_{key}")
    expr = call.expr or f"fn({', '.join(params)})"
    loop = "for _ in _repeat(None, n):\n        "
    if call.is_async:
        src = f"async def body(n):\n    {loop}await {expr}\n"
    else:
        src = f"def body(n):\n    {loop}{expr}\n"
    exec(compile(src, f"<bench {getattr(call.fn, '__qualname__', call.fn)}>", "exec"), names)
    body: Callable[[int], Any] = names["body"]
    if not call.is_async:
        return body
    if runner is None:
        raise ValueError("an async call needs an asyncio.Runner to run on")
    return lambda n: runner.run(body(n))


def _compile(call: Call, runner: asyncio.Runner | None) -> Callable[[int], float]:
    """``compile_loop``, timed: returns the seconds ``n`` dispatches took."""
    body = compile_loop(call, runner)
    clock = time.perf_counter

    def timed(n: int) -> float:
        start = clock()
        body(n)
        return clock() - start

    return timed


def _calibrate(timed: Callable[[int], float], min_time: float) -> int:
    number = 1
    while True:
        if timed(number) >= min_time or number >= 1 << 24:
            return number
        number *= 4


def _progress(total: int, enabled: bool) -> tuple[Callable[[], object], Callable[[], object]]:
    """``(step, close)`` of a tqdm bar on stderr; a plain counter when tqdm is missing."""
    if not enabled:
        return (lambda: None), (lambda: None)
    if importlib.util.find_spec("tqdm") is not None:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="eventbus bench", unit="sample", file=sys.stderr)
        return (lambda: bar.update(1)), bar.close
    done = itertools.count(1)

    def step() -> None:
        n = next(done)
        if n % 25 == 0 or n == total:
            sys.stderr.write(f"\reventbus bench: {n}/{total} samples")
            sys.stderr.flush()

    return step, (lambda: sys.stderr.write("\n"))


@final
@dataclass(slots=True)
class Report:
    """The numbers of one run: nanoseconds per dispatch, by (case, handlers, library)."""

    ns: dict[tuple[str, int, str], float]
    meta: dict[str, Any]

    def ratio(self, case: str, handlers: int, numerator: str, denominator: str) -> float | None:
        """``numerator`` time divided by ``denominator`` time, if both were measured."""
        top = self.ns.get((case, handlers, numerator))
        bottom = self.ns.get((case, handlers, denominator))
        return None if top is None or bottom is None else top / bottom

    def overhead(self, case: str, handlers: int, peer: str) -> float | None:
        """How many times eventbus's dispatch overhead ``peer``'s is: time minus the hand loop's.

        For the deployed shape, whose handlers do real work (an outbox append,
        a log-level check) that every library pays alike: whole-call ratios
        would measure those handlers, not the dispatchers.
        """
        floor = self.ns.get((case, handlers, HAND))
        ours = self.ns.get((case, handlers, EVENTBUS))
        theirs = self.ns.get((case, handlers, peer))
        if floor is None or ours is None or theirs is None:
            return None
        return (theirs - floor) / max(ours - floor, 1e-9)

    def targets(self) -> list[dict[str, Any]]:
        """The design targets, each with its measured ratio and whether it is met."""
        rows = []
        for case, count, top, bottom, limit in _TARGETS:
            deployed = case.endswith("deployed")
            if deployed and top != EVENTBUS:
                value = self.overhead(case, count, top)
            else:
                value = self.ratio(case, count, top, bottom)
            if value is None and deployed:
                continue  # only measured with --redis
            what = f"{case_label(case)}, {count} handlers"
            if top == EVENTBUS:  # eventbus / floor: at most the limit
                name = f"{what}: at most {limit}x {bottom}"
                met = None if value is None else value <= limit
            else:  # peer / eventbus: at least the limit
                faster = "less dispatch overhead than" if deployed else "faster than"
                name = f"{what}: at least {limit}x {faster} {top}"
                met = None if value is None else value >= limit
            rows.append({"target": name, "ratio": value, "limit": limit, "met": met})
        return rows

    def to_json(self) -> dict[str, Any]:
        """The same numbers as the table, as a JSON-ready dict."""
        results = [
            {"case": case, "handlers": count, "library": lib, "ns_per_call": value}
            for (case, count, lib), value in sorted(self.ns.items())
        ]
        return {
            "meta": self.meta,
            "results": results,
            "rows": _rows(self),
            "targets": self.targets(),
        }


def _platform() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"python": platform.python_version(), "cpu": cpu, "platform": platform.platform()}


def run(
    *,
    rounds: int = 15,
    min_time: float = 0.004,
    progress: bool = True,
    redis_url: str | None = None,
) -> Report:
    """Time every case, interleaving candidates round by round; keep the minimum.

    Args:
        rounds: Samples per candidate (the minimum of them is kept).
        min_time: Least duration of one sample, in seconds (sets the loop count).
        progress: Show a progress bar on stderr.
        redis_url: Also time the deployed shape: every plugin loaded and the
            Redis bridge running on this Redis (module ``_bench_deployed``).
    """
    event = sample_event()
    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(asyncio.Runner())  # one loop for every async candidate
        plans: list[tuple[tuple[str, int, str], Callable[[int], float]]] = []
        for count in COUNTS:
            for lib, call in dispatchers(count, event).items():
                plans.append((("sync", count, lib), _compile(call, runner)))
        for lib, call in dispatchers(3, event, is_async=True).items():
            plans.append((("async", 3, lib), _compile(call, runner)))
        quiets: list[Callable[[], contextlib.AbstractContextManager[None]]] = []
        if redis_url is not None:
            from eventbus.cli._bench_deployed import Deployed

            for case, is_async in (("sync deployed", False), ("async deployed", True)):
                # One deployed bus per case: a bus's handlers are all sync or not.
                deployed = stack.enter_context(Deployed(redis_url))
                quiets.append(deployed.quiet)
                for lib, call in deployed.dispatchers(3, event, is_async=is_async).items():
                    plans.append(((case, 3, lib), _compile(call, runner)))
        return _time(plans, rounds, min_time, progress, quiets)


def _time(
    plans: list[tuple[tuple[str, int, str], Callable[[int], float]]],
    rounds: int,
    min_time: float,
    progress: bool,
    quiets: list[Callable[[], contextlib.AbstractContextManager[None]]],
) -> Report:
    step, close = _progress(len(plans) * (rounds + 1), progress)
    best = [float("inf")] * len(plans)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection inside one sample is noise
    try:
        numbers = []
        for _, timed in plans:
            numbers.append(_calibrate(timed, min_time))
            step()
        for r in range(rounds):
            shift = r % len(plans)  # rotate who goes first, so drift hits everyone alike
            for i in itertools.chain(range(shift, len(plans)), range(shift)):
                with contextlib.ExitStack() as quiet:
                    for hush in quiets:  # the deployed buses' background work waits
                        quiet.enter_context(hush())
                    elapsed = plans[i][1](numbers[i]) / numbers[i]
                best[i] = min(best[i], elapsed)
                step()
    finally:
        if gc_was_enabled:
            gc.enable()
        close()
    meta = {**_platform(), "rounds": rounds, "min_time_s": min_time}
    return Report({key: t * 1e9 for (key, _), t in zip(plans, best, strict=True)}, meta)


def case_label(case: str) -> str:
    """How a case reads in tables: ``"sync deployed"`` -> ``"publish_sync (deployed)"``."""
    kind, _, shape = case.partition(" ")
    label = "await publish" if kind == "async" else "publish_sync"
    return f"{label} ({shape})" if shape else label


def _rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    cases = sorted({(c, n) for c, n, _ in report.ns}, key=lambda c: (c[0] != "sync", c[1]))
    for case, count in cases:
        floor = AWAIT_LOOP if case.startswith("async") else HAND
        row: dict[str, Any] = {
            "case": case_label(case),
            "handlers": count,
            "vs_floor": report.ratio(case, count, EVENTBUS, floor),
            "floor": floor,
            "vs_dict_get": report.ratio(case, count, EVENTBUS, DICT_GET),
        }
        for peer in PEERS:
            row[f"{peer}_slower"] = report.ratio(case, count, peer, EVENTBUS)
        rows.append(row)
    return rows


_LEGEND: Final = (
    "Lower is better for 'eventbus / ...'; 'peer / eventbus' is how many times faster eventbus is."
)


def fmt(value: float | None, suffix: str = "x") -> str:
    """A ratio as tables show it: ``"1.23x"``, or ``"-"`` when not measured."""
    return "-" if value is None else f"{value:.2f}{suffix}"


def columns(head: list[str], body: list[list[str]]) -> list[str]:
    """``head`` and ``body`` as left-aligned text columns, a rule under the head."""
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def target_lines(targets: list[dict[str, Any]]) -> list[str]:
    """One line per target: met / MISSED / not measured, the ratio, what it is."""
    lines = []
    for target in targets:
        mark = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        lines.append(f"  {mark:<12} {fmt(target['ratio']):>7}  {target['target']}")
    return lines


def timed_loop(call: Call) -> Callable[[int], float]:
    """A sync candidate compiled into its timing loop; returns the seconds ``n`` calls took."""
    return _compile(call, None)


def time_plans(
    plans: list[tuple[tuple[str, int, str], Callable[[int], float]]],
    rounds: int,
    min_time: float,
    progress: bool,
) -> Report:
    """Time other comparisons (`eventbus.cli._bench_events`) by `run`'s method: interleaved, minimum."""
    return _time(plans, rounds, min_time, progress, [])


def format_table(report: Report) -> str:
    """The run as a text table of ratios (eventbus against the floor and each peer)."""
    head = ["case", "handlers", "eventbus / floor", "eventbus / dict.get"]
    head += [f"{peer} / eventbus" for peer in PEERS]
    body = []
    for row in _rows(report):
        cells = [row["case"], str(row["handlers"]), f"{fmt(row['vs_floor'])} ({row['floor']})"]
        cells.append(fmt(row["vs_dict_get"]))
        cells += [fmt(row[f"{peer}_slower"]) for peer in PEERS]
        body.append(cells)
    lines = [*columns(head, body), "", _LEGEND, "", "Targets:", *target_lines(report.targets())]
    meta = report.meta
    lines += [
        "",
        f"Python {meta['python']} on {meta['cpu']}; min of {meta['rounds']} interleaved rounds.",
    ]
    return "\n".join(lines)
