"""The stream app alone, as ``uvicorn tests.plugins.sse.plain_app:app`` serves it.

No framework and no bus: the app's own lifespan binds the broadcaster to
uvicorn's loop and closes it. Tokens are signed with ``conftest.SECRET``.
"""

from __future__ import annotations

from eventbus_sse import Broadcaster, SignedTokenAuth
from tests.plugins.sse.conftest import SECRET

broadcaster = Broadcaster()
app = broadcaster.asgi_app(authenticate=SignedTokenAuth(SECRET), heartbeat=3600)
