"""The event-stream ASGI app: a plain ASGI callable, no framework needed.

Per request: refuse oversized headers (431, before anything reads them),
refuse when the broadcaster is full (503), authenticate (401 before
streaming), parse ``types=`` (400 for an unknown name), subscribe (429 past
the user's cap), then stream ``retry:``, the replay or a
``stream.reset``, and live frames, with a heartbeat comment whenever the stream
has been idle for ``heartbeat`` seconds.

The body is raced against ``receive()``: a client that goes away is noticed
through ``http.disconnect`` at once, even while no event flows, and its queue
is freed. When the broadcaster closes the subscriber (overflow or shutdown) the
stream ends, with a complete body. The server's shutdown signal (SIGINT,
SIGTERM) closes them all at once: servers wait for open responses before the
lifespan shutdown, and ASGI tells an app nothing in between (module
``_shutdown``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, final
from uuid import UUID

from eventbus_sse._auth import MAX_HEADER_BYTES, Authenticate, Scope, query_params
from eventbus_sse._broadcaster import Broadcaster
from eventbus_sse._clients import ClientLimitError
from eventbus_sse._frames import HEARTBEAT, retry_frame
from eventbus_sse._subscriber import Subscriber

__all__ = [
    "MAX_HEADER_BYTES",
    "ASGIApp",
    "Authenticate",
    "Receive",
    "SSEApp",
    "Send",
    "header_bytes",
    "respond",
]

_log = logging.getLogger("eventbus.sse")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Exactly these: no ``Connection`` header (forbidden in HTTP/2, and the
#: server manages it), ``X-Accel-Buffering: no`` so nginx does not buffer.
STREAM_HEADERS: Final = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Send a complete, small, non-streaming response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def header_bytes(scope: Scope) -> int:
    """The size of a request's header names, values and query string, in bytes."""
    query: bytes = scope.get("query_string", b"")
    return len(query) + sum(len(k) + len(v) for k, v in scope.get("headers", ()))


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _lifespan(broadcaster: Broadcaster, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            broadcaster.bind_loop()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await broadcaster.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


@final
class SSEApp:
    """ASGI app streaming a `Broadcaster`'s events to authenticated users.

    Build it with `Broadcaster.asgi_app`. Serves the stream at whatever path it
    is mounted on, for ``GET`` only. Query parameters: ``types`` (comma-separated
    SSE event names), ``lastEventId`` (when the ``Last-Event-ID`` header cannot
    be sent), ``token`` (read by the authenticator, if it wants).

    A request whose headers and query string together pass ``max_header_bytes``
    gets a 431 before the authenticator or anything else reads them.

    Raises:
        TypeError: ``authenticate`` is missing or not callable.
        ValueError: ``heartbeat`` is not positive, ``retry_ms`` is negative or
            ``max_header_bytes`` is below 1024.
    """

    __slots__ = ("_auth", "_broadcaster", "_busy", "_heartbeat", "_max_header", "_retry")

    def __init__(
        self,
        broadcaster: Broadcaster,
        *,
        authenticate: Authenticate,
        heartbeat: float = 15.0,
        retry_ms: int = 3000,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        if authenticate is None or not callable(authenticate):
            raise TypeError(
                "authenticate is required: an async (scope) -> UUID | None that identifies "
                f"the user; there is no allow-all default (got {authenticate!r})"
            )
        if not (isinstance(heartbeat, int | float) and heartbeat > 0):
            raise ValueError(f"heartbeat must be positive seconds, got {heartbeat!r}")
        if not (isinstance(retry_ms, int) and retry_ms >= 0):
            raise ValueError(f"retry_ms must be an int >= 0, got {retry_ms!r}")
        if not (isinstance(max_header_bytes, int) and max_header_bytes >= 1024):
            raise ValueError(f"max_header_bytes must be an int >= 1024, got {max_header_bytes!r}")
        self._max_header = max_header_bytes
        self._broadcaster = broadcaster
        self._auth = authenticate
        self._heartbeat = float(heartbeat)
        self._retry = retry_frame(retry_ms)
        # Retry-After on 429 and 503: the reconnect delay, in whole seconds (at least 1).
        self._busy = ((b"retry-after", str(max(1, -(-retry_ms // 1000))).encode()),)

    @property
    def broadcaster(self) -> Broadcaster:
        """The broadcaster this app streams from."""
        return self._broadcaster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (``http``; ``lifespan`` binds and closes)."""
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(self._broadcaster, receive, send)
            return
        if kind != "http":
            raise RuntimeError(f"the SSE app serves HTTP only, not {kind!r}")
        if header_bytes(scope) > self._max_header:
            await respond(send, 431, b"request header fields too large\n")
            return
        if scope.get("method") != "GET":
            await respond(send, 405, b"method not allowed\n", headers=((b"allow", b"GET"),))
            return
        if self._broadcaster.closed:
            await respond(send, 503, b"shutting down\n")
            return
        try:
            self._broadcaster.check_capacity()  # before authenticating: it may cost a lookup
        except ClientLimitError as exc:
            await self._refuse(send, exc)
            return
        user = await self._auth(scope)
        if user is None:
            await respond(send, 401, b"unauthorized\n", headers=((b"www-authenticate", b"Bearer"),))
            return
        if not isinstance(user, UUID):
            raise TypeError(f"authenticate must return a UUID or None, got {type(user).__name__}")
        params = query_params(scope)
        types = None
        if "types" in params:
            types = {t.strip() for raw in params["types"] for t in raw.split(",") if t.strip()}
            unknown = sorted(types - self._broadcaster.event_names())
            if unknown or not types:
                known = ", ".join(sorted(self._broadcaster.event_names()))
                problem = f"unknown event names {unknown}" if unknown else "no event name given"
                message = f"types: {problem} (known: {known})\n"
                await respond(send, 400, message.encode())
                return
        last_id = _last_event_id(scope, params)
        try:
            sub = self._broadcaster.connect(user, types=types, last_event_id=last_id)
        except ClientLimitError as exc:
            await self._refuse(send, exc)
            return
        self._broadcaster._serving()  # from now on, a shutdown signal ends the stream
        try:
            await self._stream(sub, receive, send)
        finally:
            self._broadcaster.disconnect(sub)

    async def _refuse(self, send: Send, exc: ClientLimitError) -> None:
        if exc.per_user:
            await respond(send, 429, b"too many streams for this user\n", headers=self._busy)
        else:
            await respond(send, 503, b"too many streams open\n", headers=self._busy)

    async def _stream(self, sub: Subscriber, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(STREAM_HEADERS)})
        await send(
            {
                "type": "http.response.body",
                "body": self._retry + b"".join(sub.preamble),
                "more_body": True,
            }
        )
        self._broadcaster._count_sent(len(sub.preamble))
        sending = [False]
        pump = asyncio.ensure_future(self._pump(sub, send, sending))
        watch = asyncio.ensure_future(_until_disconnect(receive))
        closed = sub.closed_future()
        try:
            await asyncio.wait((pump, watch, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch, closed):
                task.cancel()
            await asyncio.gather(pump, watch, closed, return_exceptions=True)
        if watch.done() and not watch.cancelled():
            return  # the client went away: nothing more to send
        failure = None if pump.cancelled() else pump.exception()
        if failure is not None:
            raise failure
        if not sending[0]:
            # Closed by the broadcaster (shutdown, or overflow while idle): end
            # the body cleanly. A pump stuck in send() means a client that does
            # not read; returning without completing makes the server drop it.
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, sub: Subscriber, send: Send, sending: list[bool]) -> None:
        heartbeat = self._heartbeat
        count = self._broadcaster._count_sent
        while True:
            frames = await sub.next_batch(heartbeat)
            if frames is None:
                return
            sending[0] = True
            if frames:
                body = frames[0].data if len(frames) == 1 else b"".join(f.data for f in frames)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                count(len(frames))
            else:
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})
                count(0, 1)
            sending[0] = False


def _last_event_id(scope: Scope, params: dict[str, list[str]]) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"last-event-id":
            text: str = value.decode("latin-1").strip()
            return text or None
    values = params.get("lastEventId")
    return values[0] if values and values[0] else None
