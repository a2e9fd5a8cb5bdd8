"""The demo app: one self-contained HTML page plus the event stream.

``GET /`` serves ``demo.html`` (shipped as package data). The page reads its
token from its own URL (``/?token=...``) and opens
``EventSource("./events?token=...")``; ``GET /events`` is the broadcaster's
stream app. Anything else is a 404.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from eventbus_sse._app import ASGIApp, Receive, Send, respond
from eventbus_sse._auth import Authenticate, Scope
from eventbus_sse._broadcaster import Broadcaster

__all__ = ["demo_app"]


@cache
def _page() -> bytes:
    return files("eventbus_sse").joinpath("demo.html").read_bytes()


def demo_app(broadcaster: Broadcaster, authenticate: Authenticate) -> ASGIApp:
    """Return an ASGI app serving the demo page at ``/`` and the stream at ``/events``.

    Args:
        broadcaster: Streams the events.
        authenticate: As for `Broadcaster.asgi_app`; required.
    """
    stream = broadcaster.asgi_app(authenticate=authenticate)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await stream(scope, receive, send)  # lifespan: bind the loop, close on shutdown
            return
        path: str = scope.get("path", "/")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted (Starlette keeps the full path)
            path = path[len(root) :] or "/"
        if path in ("/events", "/events/"):
            await stream(scope, receive, send)
        elif path in ("/", "/index.html"):
            if scope.get("method") not in ("GET", "HEAD"):
                await respond(send, 405, b"method not allowed\n", headers=((b"allow", b"GET"),))
                return
            await respond(
                send,
                200,
                _page(),
                content_type=b"text/html; charset=utf-8",
                headers=((b"cache-control", b"no-store"),),
            )
        else:
            await respond(send, 404, b"not found\n")

    return app
