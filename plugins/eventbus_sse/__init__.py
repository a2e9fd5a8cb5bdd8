"""eventbus_sse: live per-user event streams over Server-Sent Events.

The ``sse`` plugin feeds a `Broadcaster` from the bus; the broadcaster's
`Broadcaster.asgi_app` is a plain ASGI app (mount it in any framework) that
streams each user their own events, with resume, heartbeats and slow-client
protection. `demo_app` adds a self-contained HTML page. See ``docs/sse.md``.

Example:

    from eventbus import EventBus
    from eventbus_sse import SSEPlugin, SignedTokenAuth

    bus = EventBus()
    plugin = SSEPlugin()
    bus.register_plugin(plugin, name="sse")  # ids from the bus's positions
    auth = SignedTokenAuth(secret)
    app = plugin.broadcaster.asgi_app(authenticate=auth)   # serve with uvicorn
"""

from eventbus_sse._app import SSEApp
from eventbus_sse._auth import (
    Authenticate,
    Scope,
    SignedTokenAuth,
    cookie_value,
    token_from_scope,
)
from eventbus_sse._broadcaster import Broadcaster, Encoder, PositionSource
from eventbus_sse._clients import ClientLimitError
from eventbus_sse._demo import demo_app
from eventbus_sse._plugin import SSEPlugin
from eventbus_sse._subscriber import Subscriber

__all__ = [
    "Authenticate",
    "Broadcaster",
    "ClientLimitError",
    "Encoder",
    "PositionSource",
    "SSEApp",
    "SSEPlugin",
    "Scope",
    "SignedTokenAuth",
    "Subscriber",
    "cookie_value",
    "demo_app",
    "token_from_scope",
]
