"""`SignedTokenAuth`: only the canonical encoding verifies, and every token expires."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import struct
import time
from collections.abc import Callable
from uuid import UUID, uuid4

import httpx
import pytest

from eventbus_sse import Broadcaster, SignedTokenAuth
from eventbus_sse._auth import DEFAULT_TTL, MAX_TTL
from tests.plugins.sse.conftest import SECRET


def token_with(auth: SignedTokenAuth, wanted: str) -> tuple[UUID, str]:
    """A fresh token containing the character ``wanted`` (issue until one does)."""
    for _ in range(10_000):
        user = uuid4()
        token = auth.issue(user)
        if wanted in token:
            return user, token
    raise AssertionError(f"no token with {wanted!r}")


def swap_last_bits(token: str) -> str:
    """The same signature bytes, spelt differently: the last char's unused low bits set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    return token[:-1] + alphabet[last ^ 0b01]


#: Each spells a valid token differently; base64 decoders commonly accept them all.
MALLEATIONS: dict[str, Callable[[str], str]] = {
    "junk-char": lambda t: t[:10] + "!" + t[10:],
    "space": lambda t: t[:10] + " " + t[10:],
    "plus-for-dash": lambda t: t.replace("-", "+"),
    "slash-for-underscore": lambda t: t.replace("_", "/"),
    "padding-on-signature": lambda t: t + "=",
    "padding-on-payload": lambda t: t.replace(".", "=.", 1),
    "double-padding": lambda t: t + "==",
    "trailing-newline": lambda t: t + "\n",
    "leading-space": lambda t: " " + t,
    "unused-bits": swap_last_bits,
    "second-dot": lambda t: t + ".",
}


def malleable(name: str, auth: SignedTokenAuth) -> tuple[UUID, str, str]:
    """A user, their canonical token, and the ``name`` variant of it (which must differ)."""
    needs = {"plus-for-dash": "-", "slash-for-underscore": "_"}.get(name, "")
    user, token = token_with(auth, needs)
    variant = MALLEATIONS[name](token)
    assert variant != token
    return user, token, variant


class TestCanonicalEncoding:
    """A token verifies only as `issue` wrote it, byte for byte."""

    @pytest.mark.parametrize("name", sorted(MALLEATIONS))
    def test_variants_do_not_verify(self, name: str) -> None:
        """Junk, '+' or '/', extra '=', whitespace, a newline or other unused bits: refused."""
        auth = SignedTokenAuth(SECRET)
        user, token, variant = malleable(name, auth)
        assert auth.verify(token) == user
        assert auth.verify(variant) is None

    @pytest.mark.parametrize("name", sorted(MALLEATIONS))
    async def test_variants_get_401_over_http(
        self,
        name: str,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        url: str,
        client: httpx.AsyncClient,
    ) -> None:
        """Sent as ``?token=`` to a real server, a variant is a 401 and no stream starts."""
        _, _, variant = malleable(name, auth)
        response = await client.get(url, params={"token": variant})
        assert response.status_code == 401
        assert broadcaster.statistics()["clients"] == 0

    @pytest.mark.parametrize("token", [None, b"abc.def", 42, "", ".", "a" * 10_000])
    def test_anything_else_is_refused_quietly(self, token: object) -> None:
        """Wrong types and shapes are ``None``, never an exception."""
        assert SignedTokenAuth(SECRET).verify(token) is None  # type: ignore[arg-type]


class TestLifetime:
    """Every token expires; a bad ``ttl`` is a ValueError naming it."""

    def test_the_default_lifetime_is_finite(self) -> None:
        """Without ``ttl`` a token lives `DEFAULT_TTL` seconds (an hour)."""
        auth = SignedTokenAuth(SECRET)
        user = uuid4()
        token = auth.issue(user)
        assert DEFAULT_TTL == 3600
        assert auth.verify(token, now=time.time() + DEFAULT_TTL - 5) == user
        assert auth.verify(token, now=time.time() + DEFAULT_TTL + 5) is None

    def test_a_token_without_expiry_is_refused(self) -> None:
        """A correctly signed payload with expiry 0 (never, as older versions issued) fails."""
        payload = struct.pack(">16sQ", uuid4().bytes, 0)
        signature = hmac.new(SECRET, payload, hashlib.sha256).digest()
        encode = base64.urlsafe_b64encode
        token = f"{encode(payload).decode().rstrip('=')}.{encode(signature).decode().rstrip('=')}"
        assert SignedTokenAuth(SECRET).verify(token) is None

    @pytest.mark.parametrize(
        "ttl",
        [math.inf, -math.inf, 1e30, math.nan, -1, 0, 0.0, MAX_TTL + 1, 2**64],
        ids=["inf", "-inf", "1e30", "nan", "negative", "zero", "zero-float", "max+1", "2**64"],
    )
    def test_bad_ttls_are_value_errors(self, ttl: float) -> None:
        """Never OverflowError or struct.error: a ValueError whose message names ttl."""
        with pytest.raises(ValueError, match="ttl"):
            SignedTokenAuth(SECRET).issue(uuid4(), ttl=ttl)

    @pytest.mark.parametrize("ttl", [None, "60", True])
    def test_ttls_of_the_wrong_type_are_type_errors(self, ttl: object) -> None:
        """``None`` no longer means forever; strings and bools are not seconds."""
        with pytest.raises(TypeError, match="ttl"):
            SignedTokenAuth(SECRET).issue(uuid4(), ttl=ttl)  # type: ignore[arg-type]

    def test_the_longest_ttl_is_accepted(self) -> None:
        """`MAX_TTL` itself is fine, and so is a fractional second."""
        auth = SignedTokenAuth(SECRET)
        user = uuid4()
        assert auth.verify(auth.issue(user, ttl=MAX_TTL)) == user
        assert auth.verify(auth.issue(user, ttl=0.5)) == user
