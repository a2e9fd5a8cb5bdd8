"""Hostile request headers: a Cookie header never stalls the loop, oversized headers get 431.

The stream app runs on a real uvicorn server in the test's own loop, so a
stall anywhere in the server stalls everything: another client's stream,
measured by the gaps between the frames it receives, shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from uuid import uuid4

import httpx
import pytest

from eventbus import EventBus
from eventbus_sse import Broadcaster, SignedTokenAuth, token_from_scope
from tests.plugins.sse.helpers import balance, listen, take
from tests.support import wait_until_async

#: A backslash-heavy cookie: `http.cookies.SimpleCookie` is quadratic in it
#: before Python 3.11.10 / 3.12.6 (CVE-2024-7592): 40 KB stalls it for seconds.
BACKSLASHES = 'eventbus_token="' + "\\" * 40_000 + '"'


async def raw_request(url: str, head: str) -> tuple[int, float]:
    """Send one raw HTTP/1.1 GET with the header lines ``head``; its status and seconds taken."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode("latin-1"))
        await writer.drain()
        async with asyncio.timeout(60):
            status_line = await reader.readline()
        return int(status_line.split()[1]), time.monotonic() - started
    finally:
        writer.close()
        await writer.wait_closed()


def cookie_scope(*cookies: str) -> dict[str, object]:
    """A minimal ASGI HTTP scope carrying ``cookies`` as Cookie headers."""
    return {"type": "http", "headers": [(b"cookie", c.encode("latin-1")) for c in cookies]}


class TestHostileCookies:
    """A request with a crafted Cookie header is answered at once; other streams never notice."""

    @pytest.mark.parametrize(
        ("cookie", "statuses"),
        [
            (BACKSLASHES, {431}),  # over the header cap: refused before any parsing
            ('eventbus_token="' + "\\" * 12_000 + '"', {401}),  # under it: parsed, linearly
            ("a=" + ";" * 14_000, {401}),
            ('x="' + '\\"' * 7_000 + '"; eventbus_token=junk', {401}),
            ("eventbus_token=" + "A" * 200_000, {400, 431}),  # the server itself may refuse
        ],
        ids=["backslashes-40k", "backslashes-12k", "semicolons", "escaped-quotes", "200k"],
    )
    async def test_answered_quickly_while_other_streams_flow(
        self,
        cookie: str,
        statuses: set[int],
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """A 4xx for the hostile request; the other client's frames never pause over 0.5 s."""
        user = uuid4()
        arrivals: list[float] = []
        async with listen(client, url, broadcaster, params={"token": auth.issue(user)}) as stream:
            stop = asyncio.Event()

            async def tick() -> None:
                while not stop.is_set():
                    bus.publish_sync(balance(user, "1"))
                    await asyncio.sleep(0.02)  # pacing the publisher, not synchronising

            async def watch() -> None:
                async for frame in stream:
                    if frame.event is not None:
                        arrivals.append(time.monotonic())

            ticking, watching = asyncio.create_task(tick()), asyncio.create_task(watch())
            await take_frames(arrivals, 5)
            status, _ = await raw_request(url, f"Cookie: {cookie}\r\n")
            await take_frames(arrivals, len(arrivals) + 5)  # the stream carries on after it
            stop.set()
            watching.cancel()
            await asyncio.wait_for(ticking, 10)
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert max(gaps) < 0.5, f"the stream stalled for {max(gaps):.2f}s"
        assert status in statuses

    async def test_a_valid_cookie_among_many_still_authenticates(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """The bounded parser finds the token cookie between others, quoted or not."""
        user = uuid4()
        token = auth.issue(user)
        for cookie in (
            f'theme=dark; eventbus_token="{token}"; x=\\\\',
            f"eventbus_token2=no;eventbus_token={token}",
        ):
            async with listen(client, url, broadcaster, headers={"Cookie": cookie}) as stream:
                bus.publish_sync(balance(user, "1"))
                (frame,) = await take(stream, 1)
            assert frame.event == "portfolio.balance.updated"


class TestCookieParser:
    """`token_from_scope`'s cookie lookup: the one cookie it needs, in linear time."""

    @pytest.mark.parametrize(
        ("cookies", "expected"),
        [
            (("eventbus_token=abc",), "abc"),
            (("a=1; eventbus_token=abc; b=2",), "abc"),
            (('eventbus_token="abc"',), "abc"),
            (("  eventbus_token = abc ",), "abc"),
            (("a=1", "eventbus_token=abc"), "abc"),  # HTTP/2 may split the header
            (("eventbus_token=",), None),
            (("eventbus_tokenx=abc; xeventbus_token=abc",), None),
            (("eventbus_token",), None),
            (('eventbus_token="' + "\\" * 100_000,), None),
        ],
    )
    def test_finds_exactly_the_named_cookie(
        self, cookies: tuple[str, ...], expected: str | None
    ) -> None:
        """Name match is exact; one pair of quotes is stripped; anything odd is no token."""
        assert token_from_scope(cookie_scope(*cookies)) == expected


async def take_frames(arrivals: list[float], count: int) -> None:
    """Wait until ``count`` frames have arrived (the watcher appends to ``arrivals``)."""
    await wait_until_async(lambda: len(arrivals) >= count, timeout=30, what=f"{count} frames")
