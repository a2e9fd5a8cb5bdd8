"""The demo's token-signing secret: random, and one per fleet, shared through Redis.

Every worker of one ``eventbus demo --redis URL`` fleet must accept the tokens
any of them prints, so they all sign with one secret. The first worker to ask
draws 32 random bytes and stores them (hex) under `SECRET_KEY` with
``SET NX``; every worker, that one included, then uses what the key holds, so
whoever wins a race, all agree. Knowing the URL is not enough to forge a
token: reading the key is, as writing the stream is enough to forge events.
Delete the key to rotate the secret (tokens printed before stop working).

Without Redis a worker draws its own secret. ``--secret`` or the environment
variable `SECRET_ENV` overrides both (at least 16 bytes).
"""

from __future__ import annotations

import os
import secrets
from typing import Final

__all__ = ["SECRET_ENV", "SECRET_KEY", "SecretError", "demo_secret"]

#: The Redis key holding a fleet's signing secret.
SECRET_KEY: Final = "eventbus:demo:secret"
#: The environment variable that sets the secret (``--secret`` wins over it).
SECRET_ENV: Final = "EVENTBUS_DEMO_SECRET"
_MIN_BYTES: Final = 16


class SecretError(Exception):
    """The secret cannot be had: too short, Redis unreachable, a bad stored value."""


async def demo_secret(given: str | None, redis_url: str | None) -> bytes:
    """Return the secret the demo signs tokens with.

    Args:
        given: ``--secret``, if passed.
        redis_url: The fleet's Redis, if any.

    Raises:
        SecretError: The secret given is shorter than 16 bytes, or Redis cannot
            be read, or its key holds something shorter.
    """
    configured = given if given is not None else os.environ.get(SECRET_ENV)
    if configured:
        secret = configured.encode()
        if len(secret) < _MIN_BYTES:
            raise SecretError(
                f"the signing secret (--secret or {SECRET_ENV}) must be at least "
                f"{_MIN_BYTES} bytes, got {len(secret)}"
            )
        return secret
    if not redis_url:
        return secrets.token_bytes(32)
    return await _shared(redis_url)


async def _shared(url: str) -> bytes:
    try:
        from redis.asyncio import Redis
        from redis.exceptions import RedisError
    except ImportError as exc:  # pragma: no cover - the bridge fails first without it
        raise SecretError("--redis needs redis-py: pip install -e '.[redis]'") from exc
    client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.set(SECRET_KEY, secrets.token_hex(32), nx=True)
        stored = await client.get(SECRET_KEY)
    except (RedisError, OSError) as exc:
        raise SecretError(f"cannot read the demo's signing secret from Redis: {exc}") from exc
    finally:
        await client.aclose()
    value = stored.encode() if isinstance(stored, str) else stored  # decode_responses in the URL
    if not isinstance(value, bytes) or len(value) < _MIN_BYTES:
        raise SecretError(
            f"Redis key {SECRET_KEY!r} does not hold a signing secret of at least "
            f"{_MIN_BYTES} bytes: delete it, and the next worker draws a new one"
        )
    return value
