"""eventbus_redis: one Redis stream as the order of a fleet of workers.

The ``redis`` plugin is the bus's sequencer (`eventbus.Sequencer`): every event
of a sequenced type published in local context is appended to a Redis stream,
and every worker, the publishing one included, reads the stream and runs its
fleet handlers (``subscribe(..., fleet=True)``) on every entry, in stream
order. A worker that starts late restores the projections from a snapshot kept
in Redis and catches up before its startup returns. It is inert until
configured: set ``EVENTBUS_REDIS_URL`` or call `RedisBridgePlugin.configure`
before the bus starts. See ``docs/redis.md``.

Example:

    from eventbus import EventBus
    from eventbus_redis import RedisBridgePlugin

    bus = EventBus()
    bus.load_entry_points()
    bus.get_plugin(RedisBridgePlugin).configure(url="redis://127.0.0.1:6379")
    async with bus:
        ...   # fleet handlers now run on every worker on that Redis, in one order
"""

from eventbus_redis._plugin import RedisBridgePlugin
from eventbus_redis._settings import ENV_URL, RedisBridgeSettings

__all__ = ["ENV_URL", "RedisBridgePlugin", "RedisBridgeSettings"]
