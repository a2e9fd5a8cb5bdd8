"""Configuration: inert by default, URL or client, settings validated by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from eventbus import EventBus
from eventbus.portfolio import AccountBalanceUpdated
from eventbus_redis import ENV_URL, RedisBridgePlugin, RedisBridgeSettings
from tests.plugins.redis.conftest import RedisServer
from tests.plugins.redis.helpers import Worker, holdings
from tests.support import wait_until_async


def loaded_plugin() -> tuple[EventBus, RedisBridgePlugin]:
    """A bus with every entry point loaded, and its ``redis`` plugin."""
    bus = EventBus()
    bus.load_entry_points()
    return bus, bus.get_plugin(RedisBridgePlugin)


def worker(plugin: RedisBridgePlugin) -> Worker:
    """A recording worker (not started) with ``plugin`` registered."""
    result = Worker(EventBus(raise_errors=True), plugin)
    result.record()
    result.bus.register_plugin(plugin, name="redis")
    return result


class TestInert:
    """Installed and loaded, the plugin does nothing until configured."""

    async def test_entry_point_without_url_subscribes_nothing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Loaded by entry point with no URL: no sequencer, no connection, zero counters."""
        monkeypatch.delenv(ENV_URL, raising=False)
        bus, plugin = loaded_plugin()
        assert not plugin.configured
        async with bus:
            info = next(p for p in bus.plugins() if p.name == "redis")
            assert info.subscriptions == ()
            assert bus.sequencer is None
            bus.publish_sync(holdings())
        assert plugin.statistics() == dict.fromkeys(
            ("sent", "received", "buffered", "dropped", "reconnects"), 0
        )

    async def test_env_url_configures(
        self, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
    ) -> None:
        """``EVENTBUS_REDIS_URL`` turns the entry-point plugin on."""
        monkeypatch.setenv(ENV_URL, redis_server.url)
        bus, plugin = loaded_plugin()
        async with bus:
            assert bus.sequencer is not None
            bus.publish_sync(holdings())
            await wait_until_async(lambda: plugin.statistics()["sent"] == 1, what="sent")

    async def test_configure_the_loaded_plugin(
        self, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
    ) -> None:
        """``bus.get_plugin(RedisBridgePlugin).configure(url=...)`` before start."""
        monkeypatch.delenv(ENV_URL, raising=False)
        bus, plugin = loaded_plugin()
        plugin.configure(url=redis_server.url, stream="custom", maxlen=10)
        async with bus:
            with pytest.raises(RuntimeError, match="before the bus starts"):
                plugin.configure(url=redis_server.url)
            for _ in range(50):
                bus.publish_sync(holdings())
            await wait_until_async(lambda: plugin.statistics()["sent"] == 50, what="sent")
        with redis_server.client() as client:
            assert 10 <= client.xlen("custom") < 50  # MAXLEN ~ trims in whole nodes


class TestConnections:
    """A client instance, or a URL with a password."""

    async def test_client_instance_is_used_and_left_open(self, redis_server: RedisServer) -> None:
        """The plugin uses the given client and does not close it."""
        client = Redis(host="127.0.0.1", port=redis_server.port)
        a = worker(RedisBridgePlugin(client=client))
        b = worker(RedisBridgePlugin(redis_server.url))
        async with a.bus, b.bus:
            event = holdings()
            await a.bus.publish(event)
            await b.delivered(1)
        assert await client.ping()
        await client.aclose()

    async def test_password_url(self, redis_binary: str, tmp_path: Path) -> None:
        """``redis://:password@host:port`` authenticates; the event crosses."""
        server = RedisServer(redis_binary, tmp_path, "--requirepass", "s3cret")
        server.start()
        try:
            url = f"redis://:s3cret@127.0.0.1:{server.port}/0"
            a, b = worker(RedisBridgePlugin(url)), worker(RedisBridgePlugin(url))
            async with a.bus, b.bus:
                await a.bus.publish(holdings())
                await b.delivered(1)
        finally:
            server.stop()


class TestValidation:
    """Bad settings fail at configuration time, naming the setting."""

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"buffer_size": 0}, "buffer_size"),
            ({"maxlen": "10"}, "maxlen"),
            ({"batch_size": 1.5}, "batch_size"),
            ({"block_ms": -1}, "block_ms"),
            ({"backoff_initial": 0}, "backoff_initial"),
            ({"backoff_initial": 1, "backoff_max": 0.5}, "backoff_max"),
            ({"stream": ""}, "stream"),
            ({"events": (int,)}, "events"),
            ({"events": ()}, "events"),
            ({"bootstrap_timeout": 0}, "bootstrap_timeout"),
            ({"snapshot_every": 0}, "snapshot_every"),
            ({"snapshot_interval": -1.0}, "snapshot_interval"),
            ({"snapshot_keep": None}, "snapshot_keep"),
            ({"drain_timeout": "5"}, "drain_timeout"),
        ],
    )
    def test_bad_option(self, options: dict[str, Any], message: str) -> None:
        """ValueError names the setting."""
        with pytest.raises(ValueError, match=message):
            RedisBridgePlugin("redis://127.0.0.1:1", **options)

    def test_unknown_option(self) -> None:
        """A misspelt setting is a TypeError naming it."""
        with pytest.raises(TypeError, match="bufer_size"):
            RedisBridgePlugin("redis://127.0.0.1:1", bufer_size=3)

    @pytest.mark.parametrize("url", ["http://127.0.0.1", "127.0.0.1:6379", ""])
    def test_bad_url(self, url: str) -> None:
        """A URL that is not redis://, rediss:// or unix:// names ``url``."""
        with pytest.raises(ValueError, match="url must start with"):
            RedisBridgePlugin(url)

    def test_bad_env_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bad ``EVENTBUS_REDIS_URL`` names the variable."""
        monkeypatch.setenv(ENV_URL, "localhost:6379")
        with pytest.raises(ValueError, match=ENV_URL):
            RedisBridgePlugin()

    def test_a_client_that_decodes_responses(self) -> None:
        """Entries carry bytes: a decoding client is refused up front."""
        with pytest.raises(ValueError, match="must not decode responses"):
            RedisBridgePlugin(client=Redis(decode_responses=True))

    def test_url_and_client_together(self) -> None:
        """Either a URL or a client."""
        with pytest.raises(ValueError, match="either url or client"):
            RedisBridgePlugin("redis://127.0.0.1:1", client=Redis())

    def test_rediss_url_accepted_and_lists_become_tuples(self) -> None:
        """``rediss://`` (TLS) is accepted; a list of classes is taken as a tuple."""
        plugin = RedisBridgePlugin(
            "rediss://:pw@example.invalid:6380/0", events=[AccountBalanceUpdated]
        )
        assert plugin.configured
        assert plugin.settings == RedisBridgeSettings(events=(AccountBalanceUpdated,))

    def test_snapshot_triggers_may_be_off(self) -> None:
        """``None`` turns a snapshot trigger off; the snapshot stream is named after the stream."""
        settings = RedisBridgeSettings(stream="s", snapshot_every=None, snapshot_interval=None)
        assert settings.snapshot_stream == "s:snapshots"
