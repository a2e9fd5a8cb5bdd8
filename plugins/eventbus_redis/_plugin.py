"""The ``redis`` entry point: a Redis Streams bridge that is inert until configured.

Loaded through entry points, the plugin reads ``EVENTBUS_REDIS_URL``; when it is
unset (and nobody calls `RedisBridgePlugin.configure`) the plugin subscribes
nothing, attaches no sequencer and connects nowhere: one process is then its
own fleet. redis-py is imported only once it has a URL or a client, so the
plugin loads even without the ``redis`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from eventbus import EventBus, hookimpl
from eventbus_redis._settings import RedisBridgeSettings, check_url, url_from_env

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from eventbus_redis._bridge import RedisBridge

__all__ = ["RedisBridgePlugin"]

_ZERO_STATS = ("sent", "received", "buffered", "dropped", "reconnects")


@final
class RedisBridgePlugin:
    """Makes a Redis stream the fleet's order: the bus's sequencer (see ``docs/redis.md``).

    Once configured, `eventbus_startup` attaches a `RedisBridge` with
    ``bus.set_sequencer`` and returns when the bridge has caught up with the
    stream (projections restored and replayed), or after ``bootstrap_timeout``.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://...`` (TLS) or
            ``unix://...``; default: ``EVENTBUS_REDIS_URL``, else inert.
        client: A ``redis.asyncio.Redis`` to use instead of a URL (it must not
            decode responses). The plugin does not close a client it was given.
        settings: Limits and event selection; keyword ``options`` override its fields.
        **options: Any `RedisBridgeSettings` field, e.g. ``buffer_size=50_000``.

    Raises:
        ValueError: Both ``url`` and ``client`` given, a bad URL, or a bad option
            (the message names it).
        TypeError: An unknown option.
    """

    __slots__ = ("_bridge", "_client", "_last_stats", "_settings", "_url")

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        settings: RedisBridgeSettings | None = None,
        **options: Any,
    ) -> None:
        self._url: str | None = None
        self._client: Redis | None = None
        self._settings = settings if settings is not None else RedisBridgeSettings()
        self._bridge: RedisBridge | None = None
        self._last_stats = dict.fromkeys(_ZERO_STATS, 0)
        if url is None and client is None:
            url = url_from_env()
        self.configure(url, client=client, **options)

    def __repr__(self) -> str:
        state = "running" if self._bridge else "configured" if self.configured else "inert"
        return f"<RedisBridgePlugin {state} stream={self._settings.stream!r}>"

    @property
    def configured(self) -> bool:
        """Whether the plugin has a URL or client, so it will connect on startup."""
        return self._url is not None or self._client is not None

    @property
    def settings(self) -> RedisBridgeSettings:
        """The current settings."""
        return self._settings

    def configure(
        self, url: str | None = None, *, client: Redis | None = None, **options: Any
    ) -> None:
        """Set the connection and/or settings; call before ``bus.start()``.

        This is how a program configures the plugin that ``load_entry_points``
        created: ``bus.get_plugin(RedisBridgePlugin).configure(url="redis://...")``.

        Raises:
            RuntimeError: The bridge is already running.
            ValueError: Both ``url`` and ``client``, a bad URL, a client that
                decodes responses, or a bad option.
            TypeError: An unknown option.
        """
        if self._bridge is not None:
            raise RuntimeError("configure() the Redis bridge before the bus starts")
        if url is not None and client is not None:
            raise ValueError("pass either url or client, not both")
        self._settings = self._settings.replace(**options) if options else self._settings
        if url is not None:
            self._url, self._client = check_url(url), None
        elif client is not None:
            options_of: Any = client.get_connection_kwargs  # untyped in redis-py
            if options_of().get("decode_responses"):
                # Payloads are bytes; decoded replies would fail much later,
                # entry by entry, in the reader.
                raise ValueError("the Redis client must not decode responses")
            self._url, self._client = None, client

    def statistics(self) -> dict[str, int]:
        """sent, received, buffered, dropped, reconnects (finer counters once started).

        Running: also ``own`` (own entries delivered, part of ``received``),
        ``duplicates``, ``malformed``, ``trimmed`` (entries lost before this
        worker read them) and ``snapshots`` (written by this worker). After
        shutdown, the counters of the last run.
        """
        if self._bridge is None:
            return dict(self._last_stats)
        return self._bridge.statistics()

    @property
    def origin(self) -> str | None:
        """The running bridge's origin id (in every entry it writes), else ``None``."""
        return self._bridge.origin if self._bridge is not None else None

    @hookimpl
    async def eventbus_startup(self, bus: EventBus) -> None:
        """If configured: attach the bridge, bootstrap, return once caught up (or timed out)."""
        if not self.configured or self._bridge is not None:
            return
        try:
            from eventbus_redis._bridge import RedisBridge
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the Redis bridge needs redis-py: pip install 'eventbus[redis]'"
            ) from exc
        client, owns = self._client, False
        if client is None:
            assert self._url is not None
            client, owns = _client_from_url(self._url), True
        bridge = RedisBridge(bus, client, self._settings, owns_client=owns)
        try:
            await bridge.start()
        except BaseException:
            await bridge.aclose()  # detach, stop the tasks, close the client we made
            raise
        self._bridge = bridge

    @hookimpl
    async def eventbus_shutdown(self, bus: EventBus) -> None:
        """Detach, flush pending events and read them back (``drain_timeout``), then close."""
        bridge, self._bridge = self._bridge, None
        if bridge is not None:
            await bridge.aclose()
            self._last_stats = bridge.statistics()


def _client_from_url(url: str) -> Redis:
    from redis.asyncio import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # The bridge retries with its own capped backoff; redis-py's retries would
    # only delay noticing an outage. No socket timeout: XREAD BLOCK waits on
    # purpose, and keepalive notices a dead peer instead.
    return Redis.from_url(
        url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5, socket_keepalive=True
    )
