"""The ``eventbus`` console script: ``eventbus demo | plugins | bench``.

Imports stay inside the subcommands, so ``eventbus --help`` is instant and a
subcommand pays only for what it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main"]


# ----------------------------------------------------------------------- plugins


def _plugin_report() -> list[dict[str, Any]]:
    """Describe every entry point in group ``eventbus``: loaded, blocked, disabled or broken."""
    import dataclasses
    import os
    from importlib.metadata import entry_points

    from eventbus import EventBus, PluginLoadError, PluginRegistrationError

    bus = EventBus()
    errors: dict[str, str] = {}
    # A broken plugin must not hide the others: note its error, block it, go on.
    while True:
        try:
            bus.load_entry_points()
            break
        except PluginLoadError as exc:
            errors[exc.entry_point] = str(exc)
            bus.block_plugin(exc.entry_point)
        except PluginRegistrationError as exc:
            errors[exc.plugin] = str(exc)
            bus.block_plugin(exc.plugin)
    loaded = {info.name: dataclasses.asdict(info) for info in bus.plugins()}
    blocked = {n.strip() for n in os.environ.get("EVENTBUS_BLOCK_PLUGINS", "").split(",")}
    disabled = os.environ.get("EVENTBUS_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower()
    report = []
    for ep in sorted(entry_points(group="eventbus"), key=lambda ep: ep.name):
        row = loaded.get(ep.name) or {
            "name": ep.name,
            "distribution": ep.dist.name if ep.dist is not None else None,
            "version": ep.dist.version if ep.dist is not None else None,
            "entry_point": ep.value,
            "hooks": [],
            "subscriptions": [],
        }
        if ep.name in errors:
            status = "error"
        elif ep.name in loaded:
            status = "loaded"
        elif ep.name in blocked:
            status = "blocked"
        elif disabled in {"1", "true", "yes", "on"}:
            status = "disabled"
        else:
            status = "not loaded"
        row.update(status=status, blocked=status == "blocked", error=errors.get(ep.name))
        report.append(row)
    return report


def _cmd_plugins(args: argparse.Namespace) -> int:
    import orjson

    report = _plugin_report()
    code = 1 if any(row["status"] == "error" for row in report) else 0
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return code
    if not report:
        print("no plugins found in entry-point group 'eventbus'")
    for row in report:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else "?"
        print(f"{row['name']}  [{row['status']}]  {origin}  ({row['entry_point']})")
        if row["error"]:
            print(f"  error: {row['error']}")
        if row["hooks"]:
            print(f"  hooks: {', '.join(row['hooks'])}")
        for sub in row["subscriptions"]:
            kind = ("async " if sub["is_async"] else "") + ("fleet " if sub.get("fleet") else "")
            print(f"  on {sub['event_type']} (priority {sub['priority']}): {kind}{sub['handler']}")
    return code


# -------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from eventbus.cli._demo import DemoOptions, run_demo

    options = DemoOptions(
        host=args.host,
        port=args.port,
        users=args.users,
        duration=args.duration,
        interval=args.interval,
        redis_url=args.redis,
        seed=args.seed,
        verbose=args.verbose,
        token_ttl=args.token_ttl,
        secret=args.secret,
    )
    return run_demo(options)


def _cmd_bench(args: argparse.Namespace) -> int:
    import orjson

    # Lazy: keeps `eventbus plugins` from importing the peers and matplotlib.
    from eventbus.cli import _bench, _bench_events, _bench_plot

    if args.plot:
        try:
            _bench_plot.require_matplotlib()
        except ImportError as exc:  # fail before spending a minute measuring
            sys.stderr.write(f"eventbus bench: {exc}\n")
            return 2
    rounds, min_time = (2, 0.001) if args.quick else (args.rounds, args.min_time)
    progress = not args.no_progress
    report = _bench.run(rounds=rounds, min_time=min_time, progress=progress, redis_url=args.redis)
    print(_bench.format_table(report))
    print("\nEvent lifecycle: eventbus against pydantic v2 and msgspec\n")
    missing = _bench_events.missing_peers()
    lifecycle = None
    if missing:  # peers only: the comparison is skipped, never the dispatch table
        print(
            f"skipped: {' and '.join(missing)} not installed "
            "(they come with the bench extra: pip install 'eventbus[bench]')"
        )
    else:
        lifecycle = _bench_events.run_lifecycle(rounds=rounds, min_time=min_time, progress=progress)
        print(_bench_events.format_lifecycle(lifecycle))
    if args.json:
        doc = report.to_json()
        doc["lifecycle"] = None if lifecycle is None else lifecycle.to_json()
        with open(args.json, "wb") as out:
            out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    if args.plot:
        _bench_plot.plot(report, args.plot, lifecycle)
    return 0


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    parse.__name__ = "int"
    return parse


# ------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the ``eventbus`` command."""
    parser = argparse.ArgumentParser(prog="eventbus", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="run a live portfolio dashboard: simulated syncs, net worth, SSE",
        description="Load every plugin, simulate users whose accounts sync on a timer, "
        "and serve the live dashboard over SSE. Stops on Ctrl-C or after --duration.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    demo.add_argument(
        "--users",
        type=_at_least(0),
        default=3,
        help="simulated users (default 3; 0 only serves, e.g. a second worker with --redis)",
    )
    demo.add_argument(
        "--duration",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--interval",
        type=_positive(float),
        default=1.0,
        metavar="SECONDS",
        help="time between simulated account syncs (default 1.0)",
    )
    demo.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="bridge events through Redis Streams (e.g. redis://127.0.0.1:6379)",
    )
    demo.add_argument(
        "--seed", type=int, default=None, help="random seed for a repeatable simulation"
    )
    demo.add_argument(
        "--token-ttl",
        type=_positive(float),
        default=86400.0,
        metavar="SECONDS",
        help="lifetime of the printed tokens (default 86400: a day; at most 366 days)",
    )
    demo.add_argument(
        "--secret",
        default=None,
        help="token signing secret, 16 bytes or more, the same on every worker (default: "
        "$EVENTBUS_DEMO_SECRET; else random, shared by the --redis fleet through Redis). "
        "Prefer the variable: a flag shows in the process list",
    )
    demo.add_argument(
        "-v", "--verbose", action="store_true", help="also show the logging plugin's records"
    )
    demo.set_defaults(func=_cmd_demo)

    plugins = sub.add_parser(
        "plugins",
        help="list discovered plugins",
        description="List every plugin in entry-point group 'eventbus': distribution, "
        "status (loaded, blocked, disabled, error), hooks and subscriptions.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(func=_cmd_plugins)
    bench = sub.add_parser(
        "bench",
        help="time dispatch against a hand-written loop, blinker, pluggy and pyee, and an "
        "event's lifecycle against pydantic and msgspec",
        description="Quick benchmark of dispatch and of an event's lifecycle (construct, "
        "from_change, encode, decode); prints ratios (the full suite: pytest benchmarks).",
    )
    bench.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    bench.add_argument(
        "--plot",
        metavar="PATH",
        help="draw latency vs handler count, and the lifecycle ratios (PNG)",
    )
    bench.add_argument(
        "--rounds", type=_positive(int), default=15, help="interleaved samples per case"
    )
    bench.add_argument(
        "--min-time",
        type=_positive(float),
        default=0.004,
        help="least seconds per sample (default 0.004)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="smoke run: tiny samples, meaningless numbers"
    )
    bench.add_argument(
        "--redis",
        metavar="URL",
        help="also time the deployed shape: every plugin loaded, the Redis bridge on URL "
        "(a throwaway stream, deleted afterwards)",
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventbus`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
