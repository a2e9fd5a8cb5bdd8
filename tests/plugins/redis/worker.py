"""A second process for the two-process test: its own bus, bridge and fleet handler.

Usage: ``python -m tests.plugins.redis.worker URL EXPECTED``. Prints ``ready``
once its startup has returned (the bridge reads the stream from then on),
then, after its fleet handler received ``EXPECTED`` events, one JSON line
``{"ids": [...event ids in delivery order...], "positions": [...], "local": n,
"stats": {...}}`` and exits. Closing its stdin makes it exit early.
"""

from __future__ import annotations

import asyncio
import json
import sys

from eventbus import DomainEvent, EventBus
from eventbus_redis import RedisBridgePlugin


async def main(url: str, expected: int) -> None:
    """Run until ``expected`` events reached the fleet handler, then report them."""
    bus = EventBus(raise_errors=True)
    plugin = RedisBridgePlugin(url)
    bus.register_plugin(plugin, name="redis")
    ids: list[str] = []
    positions: list[str | None] = []
    local: list[DomainEvent] = []
    done = asyncio.Event()

    def record(event: DomainEvent) -> None:
        ids.append(str(event.event_id))
        positions.append(bus.current_position())
        if len(ids) == expected:
            done.set()

    bus.subscribe(DomainEvent, record, fleet=True)
    bus.subscribe(DomainEvent, local.append)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    async with bus:
        print("ready", flush=True)
        await asyncio.wait(
            [asyncio.ensure_future(done.wait()), stdin_closed],
            return_when=asyncio.FIRST_COMPLETED,
        )
    report = {"ids": ids, "positions": positions, "local": len(local), "stats": plugin.statistics()}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
