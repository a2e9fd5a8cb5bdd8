"""The broadcaster's connected clients, by user, and the caps on them.

`Clients` holds every open `Subscriber`, the routing table (user → tuple of
subscribers, replaced on connect and disconnect, never copied per event) and
the count of open streams per user.

Every open stream holds a file descriptor for as long as it lasts. Without a
cap, one user (one token) can open streams until the process runs out of
descriptors, and then ``accept()`` fails for everyone. So `Clients.admit`
refuses a client past either cap with `ClientLimitError`; the ASGI app answers
it with a 429 (the user's cap) or a 503 (the global one), both with
``Retry-After``.

The global cap defaults to the process's descriptor limit (``ulimit -n``, the
soft ``RLIMIT_NOFILE``, read when the broadcaster is built) less an eighth of
it, and at least 64: what stays is for the listening sockets, Redis, logs and
the requests in flight, refused ones included. See docs/sse.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Literal, final
from uuid import UUID

from eventbus import EventBusError
from eventbus_sse._frames import Frame
from eventbus_sse._subscriber import Subscriber

__all__ = ["DEFAULT_PER_USER", "ClientLimitError", "Clients", "descriptor_budget"]

_log = logging.getLogger("eventbus.sse")

#: Concurrent streams one user may have open, by default.
DEFAULT_PER_USER: Final = 32


def descriptor_budget() -> int | None:
    """The default global cap: the soft descriptor limit less max(64, an eighth of it).

    ``None`` (no cap) where the limit is unknown or unlimited.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return max(1, soft - max(64, soft // 8))


class ClientLimitError(EventBusError, RuntimeError):
    """A client was refused: its user, or the whole broadcaster, has the most allowed.

    Attributes:
        user: The user whose client was refused (``None``: refused before
            authentication, at the global cap).
        limit: The cap that was reached.
        per_user: ``True`` for the user's cap (HTTP 429), ``False`` for the
            global one (HTTP 503).
    """

    def __init__(self, user: UUID | None, limit: int, *, per_user: bool) -> None:
        self.user = user
        self.limit = limit
        self.per_user = per_user
        which = f"user {user} has" if per_user else "the broadcaster has"
        super().__init__(f"{which} {limit} SSE clients open, the most allowed")


def _cap(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1 or None (no cap), got {value!r}")
    return value


@final
class Clients:
    """The open subscribers, the routing table, and the caps.

    Args:
        per_user: Streams one user may have open at once, or ``None``.
        total: Streams in all, ``None`` for no cap, or ``"auto"`` for
            `descriptor_budget`.

    Raises:
        ValueError: A cap is not an int >= 1 or ``None`` (or ``"auto"``).
    """

    __slots__ = (
        "_idle",
        "_open",
        "per_user",
        "refused_global",
        "refused_user",
        "routes",
        "subs",
        "total",
    )

    def __init__(self, per_user: int | None, total: int | Literal["auto"] | None) -> None:
        self.per_user: Final = _cap("max_clients_per_user", per_user)
        self.total: Final = descriptor_budget() if total == "auto" else _cap("max_clients", total)
        self.subs: set[Subscriber] = set()
        #: user → that user's routed subscribers; read once per event.
        self.routes: dict[UUID, tuple[Subscriber, ...]] = {}
        self._open: dict[UUID, int] = {}
        self._idle: asyncio.Event | None = None
        self.refused_user = 0
        self.refused_global = 0

    def __len__(self) -> int:
        return len(self.subs)

    def full(self) -> bool:
        """Whether the global cap leaves no room for another client."""
        return self.total is not None and len(self.subs) >= self.total

    def admit(self, user: UUID | None) -> None:
        """Check a new client of ``user`` (``None``: not known yet) against the caps.

        Raises:
            ClientLimitError: A cap is reached (and the refusal is counted).
        """
        if self.full():
            self.refused_global += 1
            raise ClientLimitError(user, self.total or 0, per_user=False)
        if (
            user is not None
            and self.per_user is not None
            and self._open.get(user, 0) >= self.per_user
        ):
            self.refused_user += 1
            raise ClientLimitError(user, self.per_user, per_user=True)

    def add(self, sub: Subscriber) -> None:
        """Open and route ``sub`` (admitted first)."""
        self.subs.add(sub)
        self._open[sub.user] = self._open.get(sub.user, 0) + 1
        self.routes[sub.user] = (*self.routes.get(sub.user, ()), sub)

    def unroute(self, sub: Subscriber, reason: str) -> None:
        """Stop routing to ``sub`` and close it; it stays open until `remove`."""
        subs = self.routes.get(sub.user, ())
        if sub in subs:
            rest = tuple(s for s in subs if s is not sub)
            if rest:
                self.routes[sub.user] = rest
            else:
                del self.routes[sub.user]
        sub._close(reason)

    def remove(self, sub: Subscriber) -> None:
        """Forget ``sub`` entirely; idempotent."""
        self.unroute(sub, "disconnected")
        if sub in self.subs:
            self.subs.remove(sub)
            count = self._open[sub.user] - 1
            if count:
                self._open[sub.user] = count
            else:
                del self._open[sub.user]
        if not self.subs and self._idle is not None:
            self._idle.set()

    def end_all(self) -> int:
        """Close every client (``"shutdown"``): their streams end. Returns how many."""
        ending = sum(1 for sub in self.subs if sub.reason is None)
        for sub in list(self.subs):
            self.unroute(sub, "shutdown")
        return ending

    async def close_all(self, grace: float) -> None:
        """Close every client (``"shutdown"``); wait up to ``grace`` s for them to go."""
        self.end_all()
        if self.subs:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                _log.warning("%d SSE client(s) still open after %ss", len(self.subs), grace)

    def offer_all(self, frame: Frame) -> tuple[int, list[Subscriber]]:
        """Queue ``frame`` for every routed client, whatever its types.

        Returns:
            How many took it, and the clients whose queues were full.
        """
        taken, full = 0, []
        for subs in list(self.routes.values()):
            for sub in subs:
                if sub._offer(frame):
                    taken += 1
                else:
                    full.append(sub)
        return taken, full
