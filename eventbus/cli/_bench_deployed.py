"""The deployed shape for ``eventbus bench``: every first-party plugin loaded, Redis on.

Dispatch targets must hold where users run the bus, not only on a bare one.
`Deployed` builds that bus: ``load_entry_points()`` (logging, net worth, SSE,
the Redis bridge), the bridge configured on its own throwaway stream and
started on a loop in a background thread, as a web worker runs it. The
candidates of `Deployed.dispatchers` then publish a balance update, the type
every plugin touches, to ``count`` no-op handlers *plus* whatever the plugins
put in its local plan (the bridge's ``append``, the logging handler). The
floors and the peers call that same list of callables, so the ratios still
measure dispatch, not the plugins' own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final, final

from eventbus._bus import EventBus
from eventbus.cli._bench import AWAIT_LOOP, EVENTBUS, HAND, Call, noop_handlers, peer_calls
from eventbus.portfolio import AccountBalanceUpdated

__all__ = ["Deployed"]

#: How long starting or stopping the deployed bus may take, in seconds.
_TIMEOUT: Final = 30.0


@final
class Deployed:
    """A bus with every plugin loaded and the Redis bridge running; a context manager.

    Args:
        redis_url: The Redis to bridge through. The bench appends to a stream
            of its own (``eventbus:bench:<random>``) and deletes it on exit.
    """

    __slots__ = ("_loop", "_release", "_stream", "_thread", "_url", "bus")

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._stream = f"eventbus:bench:{uuid.uuid4().hex}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.bus = EventBus()
        self._release: threading.Event | None = None

    def __enter__(self) -> Deployed:
        bus = self.bus
        bus.load_entry_points()
        # Application code configuring a loaded plugin, the documented way.
        redis = bus.get_plugin("redis")
        configure: Callable[..., None] = getattr(redis, "configure")  # noqa: B009
        # Room for a whole sample: a full outbox would time the overflow path.
        configure(url=self._url, stream=self._stream, buffer_size=1 << 20)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(bus.start(), self._loop).result(_TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._cleanup(), self._loop).result(_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_TIMEOUT)
        self._loop.close()

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Around one sample: `pause` before it, `resume` after it."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def pause(self) -> None:
        """Wait until the bridge is idle, then hold its loop until `resume`.

        The bridge's background work (encoding, XADD, reading back, the fleet
        handlers) runs on another thread and would take the GIL in the middle
        of any candidate's sample; ``pytest benchmarks`` measures that work on
        its own (bridged throughput). Paused, the publish side is timed alone:
        its callables run, and their events wait in the outbox.
        """
        self.resume()
        self._settle()
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            held.set()
            release.wait(_TIMEOUT)  # blocks the bridge's loop on purpose

        self._release = release
        self._loop.call_soon_threadsafe(hold)
        held.wait(_TIMEOUT)

    def resume(self) -> None:
        """Let the bridge's loop run again (no-op when not paused)."""
        release, self._release = self._release, None
        if release is not None:
            release.set()

    def _settle(self) -> None:
        """Wait until the bridge has sent, and read back, all it was given."""
        statistics: Callable[[], dict[str, int]] = getattr(  # noqa: B009
            self.bus.get_plugin("redis"), "statistics"
        )
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline:
            stats = statistics()
            if not stats["buffered"] and stats["own"] >= stats["sent"]:
                return
            time.sleep(0.001)  # polling a condition (with a deadline), not synchronising
        raise TimeoutError("the Redis bridge did not catch up within 30 s")

    async def _cleanup(self) -> None:
        await self.bus.aclose()
        from redis.asyncio import Redis  # the bridge is running, so redis-py is installed

        client = Redis.from_url(self._url)
        try:
            await client.delete(self._stream, f"{self._stream}:snapshots")
        finally:
            await client.aclose()

    def dispatchers(
        self, count: int, event: AccountBalanceUpdated, *, is_async: bool = False
    ) -> dict[str, Call]:
        """eventbus, the floor and the peers, each calling the deployed plan's callables.

        Subscribes ``count`` fresh no-op handlers (cancelled by the next call).
        """
        bus = self.bus
        for sub in bus.subscriptions():
            if sub.plugin is None:
                sub.cancel()
        for handler in noop_handlers(count, is_async=is_async):
            bus.subscribe(AccountBalanceUpdated, handler)
        if is_async:
            plan = bus._registry.compile_async(AccountBalanceUpdated)
            steps = tuple(plan)
            table: dict[type, Any] = {AccountBalanceUpdated: steps}

            async def await_loop(e: object) -> None:
                for h, awaited in table[type(e)]:
                    if awaited:
                        await h(e)
                    else:
                        h(e)

            return {
                EVENTBUS: Call(bus.publish, (event,), is_async=True),
                AWAIT_LOOP: Call(await_loop, (event,), is_async=True),
            }
        callables = list(bus._registry.compile_sync(AccountBalanceUpdated))
        flat: dict[type, tuple[Callable[[Any], Any], ...]] = {
            AccountBalanceUpdated: tuple(callables)
        }

        def hand_loop(e: object) -> None:
            for h in flat[type(e)]:
                h(e)

        calls = {EVENTBUS: Call(bus.publish_sync, (event,)), HAND: Call(hand_loop, (event,))}
        calls.update(peer_calls(callables, event))
        return calls
