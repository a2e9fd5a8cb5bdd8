"""Settings of the Redis bridge: one frozen, validated value object.

Every limit is explicit and checked up front, so a typo fails at configuration
time with the name of the setting, never later inside a background task.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from eventbus import DomainEvent

__all__ = ["ENV_URL", "RedisBridgeSettings", "check_url", "url_from_env"]

#: The environment variable that configures (and so activates) the bridge.
ENV_URL: Final = "EVENTBUS_REDIS_URL"

_SCHEMES: Final = ("redis://", "rediss://", "unix://")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RedisBridgeSettings:
    """How the bridge talks to Redis. Every field has a working default.

    Attributes:
        stream: The stream every process appends to and reads from.
        maxlen: Approximate length cap of the stream (``XADD ... MAXLEN ~ maxlen``).
            A reader further behind than this misses the trimmed entries.
        buffer_size: Outbound events held while Redis is slow or down; on
            overflow the oldest are dropped (counted and logged).
        batch_size: Most events appended per round trip (one script call).
        read_count: Most entries fetched per ``XREAD``.
        block_ms: How long one ``XREAD BLOCK`` waits for new entries.
        backoff_initial: First reconnect delay, in seconds; doubles per failure.
        backoff_max: Cap of the reconnect delay, in seconds.
        drain_timeout: Seconds `eventbus_shutdown` waits to flush pending events
            and to read this worker's last entries back.
        bootstrap_timeout: Seconds `eventbus_startup` waits for the reader to
            catch up with the stream (snapshot restored, entries replayed)
            before it returns anyway, logging a warning.
        snapshot_every: Write a projection snapshot after this many entries
            since the fleet's newest one; ``None``: no count trigger.
        snapshot_interval: Write one after this many seconds with new entries;
            ``None``: no time trigger. (Both ``None``: never write snapshots.)
        snapshot_keep: Snapshots kept in ``<stream>:snapshots`` (exact ``MAXLEN``).
        events: Event classes to sequence (with their subclasses). Only classes
            with a codec wire name are ever sequenced.
    """

    stream: str = "eventbus:events"
    maxlen: int = 100_000
    buffer_size: int = 10_000
    batch_size: int = 512
    read_count: int = 512
    block_ms: int = 1_000
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    drain_timeout: float = 5.0
    bootstrap_timeout: float = 10.0
    snapshot_every: int | None = 10_000
    snapshot_interval: float | None = 60.0
    snapshot_keep: int = 3
    events: tuple[type[DomainEvent], ...] = (DomainEvent,)

    @property
    def snapshot_stream(self) -> str:
        """The stream of projection snapshots: ``<stream>:snapshots``."""
        return f"{self.stream}:snapshots"

    def __post_init__(self) -> None:
        if not isinstance(self.stream, str) or not self.stream:
            raise ValueError(f"stream must be a non-empty str, got {self.stream!r}")
        ints = ("maxlen", "buffer_size", "batch_size", "read_count", "block_ms", "snapshot_keep")
        for name in (*ints, "snapshot_every"):
            value = getattr(self, name)
            if name not in ints and value is None:
                continue
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        numbers = ("backoff_initial", "backoff_max", "drain_timeout", "bootstrap_timeout")
        for name in (*numbers, "snapshot_interval"):
            value = getattr(self, name)
            if name not in numbers and value is None:
                continue
            if type(value) not in (int, float) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({self.backoff_max!r}) must be >= backoff_initial "
                f"({self.backoff_initial!r})"
            )
        classes = self.events
        if not isinstance(classes, tuple) or not all(
            isinstance(c, type) and issubclass(c, DomainEvent) for c in classes
        ):
            raise ValueError(f"events must be a tuple of DomainEvent classes, got {classes!r}")
        if not self.events:
            raise ValueError("events must name at least one DomainEvent class")

    def replace(self, **changes: Any) -> RedisBridgeSettings:
        """Return a copy with ``changes`` applied (validated again).

        Raises:
            TypeError: A name is not a setting.
            ValueError: A value is invalid (the message names the setting).
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown Redis bridge setting(s): {', '.join(unknown)}")
        if "events" in changes and not isinstance(changes["events"], tuple):
            changes["events"] = tuple(changes["events"])
        return dataclasses.replace(self, **changes)


def check_url(url: object) -> str:
    """Return ``url`` if it is a Redis URL redis-py can open.

    Raises:
        ValueError: ``url`` is not a ``redis://``, ``rediss://`` or ``unix://`` URL.
    """
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        raise ValueError(
            f"url must start with redis://, rediss:// or unix:// "
            f"(e.g. redis://:password@127.0.0.1:6379/0), got {url!r}"
        )
    return url


def url_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """The bridge URL from ``EVENTBUS_REDIS_URL``, or ``None`` when unset or empty.

    Raises:
        ValueError: The variable is set to something that is not a Redis URL.
    """
    raw = environ.get(ENV_URL, "").strip()
    if not raw:
        return None
    try:
        return check_url(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_URL}: {exc}") from exc
