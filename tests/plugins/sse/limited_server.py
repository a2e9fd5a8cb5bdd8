"""A stream server under a low descriptor limit: ``python -m tests.plugins.sse.limited_server N``.

Lowers its soft ``RLIMIT_NOFILE`` to ``N``, builds a default `Broadcaster`
(so its global cap is derived from ``N``), serves its stream app with uvicorn
on a free loopback port, and prints ``<port> <max_clients>``. The test-only
authenticator takes the user from ``?user=<uuid>``.
"""

from __future__ import annotations

import resource
import socket
import sys
from uuid import UUID

import uvicorn

from eventbus_sse import Broadcaster
from eventbus_sse._auth import Scope, query_params


async def authenticate(scope: Scope) -> UUID | None:
    """The user named in the query string (tests only)."""
    users = query_params(scope).get("user")
    return UUID(users[0]) if users else None


def main() -> None:
    """Serve until killed."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard))
    broadcaster = Broadcaster()
    app = broadcaster.asgi_app(authenticate=authenticate, heartbeat=3600)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    print(sock.getsockname()[1], broadcaster.max_clients, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
