"""A second process for the two-process tests: its own bus and bridge.

Usage: ``python -m tests.plugins.redis.worker URL EXPECTED``. Prints ``ready``
once its bridge reads the stream, then, after receiving ``EXPECTED`` events,
one JSON line ``{"ids": [...event ids in arrival order...], "stats": {...}}``
and exits. Closing its stdin makes it exit early.
"""

from __future__ import annotations

import asyncio
import json
import sys

from eventbus import DomainEvent, EventBus
from eventbus_redis import RedisBridgePlugin


async def main(url: str, expected: int) -> None:
    """Run until ``expected`` remote events arrived, then report them."""
    bus = EventBus(raise_errors=True)
    plugin = RedisBridgePlugin(url)
    bus.register_plugin(plugin, name="redis")
    ids: list[str] = []
    done = asyncio.Event()

    def record(event: DomainEvent) -> None:
        ids.append(str(event.event_id))
        if len(ids) == expected:
            done.set()

    bus.subscribe(DomainEvent, record)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    async with bus:
        print("ready", flush=True)
        await asyncio.wait(
            [asyncio.ensure_future(done.wait()), stdin_closed],
            return_when=asyncio.FIRST_COMPLETED,
        )
    print(json.dumps({"ids": ids, "stats": plugin.statistics()}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
