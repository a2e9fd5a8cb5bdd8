"""The ``eventbus`` console script: ``eventbus demo | plugins | bench``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _cmd_plugins(args: argparse.Namespace) -> int:
    import dataclasses

    import orjson

    from eventbus import EventBus

    bus = EventBus()
    bus.load_entry_points()
    infos = [dataclasses.asdict(info) for info in bus.plugins()]
    if args.json:
        sys.stdout.write(orjson.dumps(infos, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    for info in infos:
        print(f"{info['name']}  ({info['distribution']} {info['version']})")
        print(f"  hooks: {', '.join(info['hooks']) or '-'}")
        for sub in info["subscriptions"]:
            print(f"  {sub['event_type']} -> {sub['handler']} (priority {sub['priority']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the ``eventbus`` command."""
    parser = argparse.ArgumentParser(prog="eventbus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    plugins = sub.add_parser("plugins", help="list discovered plugins")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(func=_cmd_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventbus`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
