"""eventbus_redis: the same events in every process, through a Redis stream.

The ``redis`` plugin appends the root events published in this process to a
Redis stream and re-publishes, on the local bus, the events every other
process appended. It is inert until configured: set ``EVENTBUS_REDIS_URL`` or
call `RedisBridgePlugin.configure` before the bus starts. See ``docs/redis.md``.

Example:

    from eventbus import EventBus

    bus = EventBus()
    bus.load_entry_points()
    bus.get_plugin("redis").configure(url="redis://127.0.0.1:6379")
    async with bus:
        ...   # root events now reach every process on that Redis
"""

from eventbus_redis._plugin import RedisBridgePlugin
from eventbus_redis._settings import ENV_URL, RedisBridgeSettings

__all__ = ["ENV_URL", "RedisBridgePlugin", "RedisBridgeSettings"]
