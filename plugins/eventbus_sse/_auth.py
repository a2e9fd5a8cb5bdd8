"""Authentication for the event stream: the `Authenticate` contract and `SignedTokenAuth`.

An authenticator is any ``async (scope) -> UUID | None``: it reads the ASGI
scope (headers, query string, cookies) and returns the user the connection
belongs to, or ``None`` to refuse it with a 401. The stream app has no
allow-all default.

Browsers' ``EventSource`` cannot set headers, so a token may arrive three ways,
checked in this order: an ``Authorization: Bearer <token>`` header, a
``?token=`` query parameter, a cookie (default name ``eventbus_token``). Use
`token_from_scope` in your own authenticator to get the same behaviour.

Cookies are read by `cookie_value`, a linear scan for the one cookie wanted,
never by `http.cookies.SimpleCookie`: that parser runs on the event loop before
anyone is authenticated, and before Python 3.11.10 / 3.12.6 it is quadratic in
backslashes (CVE-2024-7592). A Cookie header over `MAX_COOKIE_BYTES` is not
read at all.

`SignedTokenAuth` is a small stdlib (HMAC-SHA256) token scheme for the demo and
for tests. In production, plug in your session or JWT check instead:

    async def authenticate(scope):
        token = token_from_scope(scope)
        session = await sessions.get(token) if token else None
        return session.user_id if session else None
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, final
from urllib.parse import parse_qs
from uuid import UUID

__all__ = [
    "DEFAULT_TTL",
    "MAX_COOKIE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_TTL",
    "Authenticate",
    "Scope",
    "SignedTokenAuth",
    "cookie_value",
    "query_params",
    "token_from_scope",
]

#: An ASGI connection scope.
Scope = MutableMapping[str, Any]

#: ``async (scope) -> UUID | None``: who is connecting, or ``None`` for a 401.
Authenticate = Callable[[Scope], Awaitable[UUID | None]]

DEFAULT_COOKIE: Final = "eventbus_token"
#: Headers plus query string, in bytes, above which the stream app answers 431.
MAX_HEADER_BYTES: Final = 16 * 1024
#: Cookie headers (all of a request's together) longer than this are not read.
MAX_COOKIE_BYTES: Final = MAX_HEADER_BYTES
_PAYLOAD: Final = struct.Struct(">16sQ")  # user UUID, expiry (unix seconds)
#: The canonical text of a token: 24 payload bytes in 32 characters, then a
#: 32-byte signature in 43; URL-safe alphabet, no padding, nothing around it.
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}")

#: A token's lifetime when `SignedTokenAuth.issue` is not given one: an hour.
DEFAULT_TTL: Final = 3600.0
#: The longest lifetime `SignedTokenAuth.issue` accepts: 366 days.
MAX_TTL: Final = 366 * 86400


def query_params(scope: Scope) -> dict[str, list[str]]:
    """Parse the scope's query string (``keep_blank_values``)."""
    raw: bytes = scope.get("query_string", b"")
    return parse_qs(raw.decode("latin-1"), keep_blank_values=True)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text
    return None


def cookie_value(scope: Scope, name: str) -> str | None:
    """Return the value of cookie ``name`` in the scope's Cookie headers, or ``None``.

    One linear pass over ``name=value`` pairs separated by ``;`` (RFC 6265),
    in every Cookie header (HTTP/2 may send several); one pair of surrounding
    double quotes is removed, and nothing is unescaped. Headers longer than
    `MAX_COOKIE_BYTES` in all are not read: ``None``.
    """
    headers = [v for k, v in scope.get("headers", ()) if k.lower() == b"cookie"]
    if not headers or sum(len(v) for v in headers) > MAX_COOKIE_BYTES:
        return None
    for header in headers:
        for pair in header.decode("latin-1").split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                return value or None
    return None


def token_from_scope(scope: Scope, cookie: str = DEFAULT_COOKIE) -> str | None:
    """Return the token a client sent: bearer header, then ``?token=``, then cookie."""
    auth = _header(scope, b"authorization")
    if auth is not None:
        kind, _, value = auth.partition(" ")
        if kind.lower() == "bearer" and value.strip():
            return value.strip()
    tokens = query_params(scope).get("token")
    if tokens and tokens[0]:
        return tokens[0]
    return cookie_value(scope, cookie)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _check_ttl(ttl: object) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be seconds (an int or float), got {ttl!r}")
    if not (0 < ttl <= MAX_TTL):  # also refuses nan and inf
        raise ValueError(f"ttl must be finite seconds in (0, {MAX_TTL}], got {ttl!r}")
    return float(ttl)


@final
class SignedTokenAuth:
    """HMAC-signed user tokens; an instance is itself an `Authenticate`.

    A token is ``<payload>.<signature>``, both URL-safe base64 without
    padding: the payload holds the user's UUID and the expiry, the signature
    is HMAC-SHA256 over the payload with ``secret``. Tokens are URL- and
    cookie-safe, so they work in ``?token=``.

    Every token expires: `issue` defaults to `DEFAULT_TTL` (an hour) and
    accepts at most `MAX_TTL`. `verify` accepts only the exact text `issue`
    writes: the 32 + 1 + 43 characters of the canonical encoding, nothing
    else that decodes to the same bytes (no ``+`` or ``/``, padding,
    whitespace or stray characters).

    Args:
        secret: At least 16 bytes of key material; keep it out of the code.
        cookie: The cookie name checked after the header and query.

    Raises:
        TypeError: ``secret`` is not bytes.
        ValueError: ``secret`` is shorter than 16 bytes.
    """

    __slots__ = ("_cookie", "_key")

    def __init__(self, secret: bytes, *, cookie: str = DEFAULT_COOKIE) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
        if len(secret) < 16:
            raise ValueError(f"secret must be at least 16 bytes, got {len(secret)}")
        self._key = bytes(secret)
        self._cookie = cookie

    def __repr__(self) -> str:
        return f"SignedTokenAuth(cookie={self._cookie!r})"  # never the secret

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def issue(self, user_id: UUID, *, ttl: float = DEFAULT_TTL) -> str:
        """Return a token for ``user_id``, valid for ``ttl`` seconds.

        Raises:
            TypeError: ``user_id`` is not a UUID, or ``ttl`` is not a number.
            ValueError: ``ttl`` is not in ``(0, MAX_TTL]`` (nan and inf included).
        """
        if not isinstance(user_id, UUID):
            raise TypeError(f"user_id must be a UUID, got {type(user_id).__name__}")
        expires = int(time.time() + _check_ttl(ttl)) + 1
        payload = _PAYLOAD.pack(user_id.bytes, expires)
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def verify(self, token: str, *, now: float | None = None) -> UUID | None:
        """Return the user a token was issued for, or ``None`` if it is invalid or expired.

        Args:
            token: A token from `issue`, exactly as it wrote it.
            now: The current unix time; defaults to `time.time()`.
        """
        if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
            return None
        head, _, tail = token.partition(".")
        payload = base64.urlsafe_b64decode(head)
        signature = base64.urlsafe_b64decode(tail + "=")
        if _b64(signature) != tail:  # the last character's unused bits must be 0
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        user, expires = _PAYLOAD.unpack(payload)
        if expires < (time.time() if now is None else now):
            return None  # expiry 0 (never) is refused too: older versions issued it
        return UUID(bytes=user)

    async def __call__(self, scope: Scope) -> UUID | None:
        """Authenticate an ASGI connection (bearer header, ``?token=``, cookie)."""
        token = token_from_scope(scope, self._cookie)
        return None if token is None else self.verify(token)
