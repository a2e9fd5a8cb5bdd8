"""eventbus_prometheus: Prometheus metrics of a bus, as an ASGI app to mount at ``/metrics``.

Metrics (label values are event wire names and handler names only, which the
code bounds; never user ids):

* ``eventbus_events_published_total{event}``
* ``eventbus_handler_duration_seconds{handler}`` (a histogram)
* ``eventbus_handler_failures_total{handler,event}`` (timeouts included)
* ``eventbus_sse_clients``, ``eventbus_sse_dropped_total``: from the SSE
  plugin's ``statistics()``, if it is loaded;
* ``eventbus_redis_buffered``, ``eventbus_redis_trimmed_total``: from the
  Redis bridge's ``statistics()``, and ``eventbus_redis_lag_seconds``: how long
  after its stream id the last entry was delivered here.

Inert until enabled (a bus with an observer takes the careful dispatch path on
every publish): ``EVENTBUS_PROMETHEUS=1``, ``PrometheusPlugin(enabled=True)``
or `PrometheusPlugin.enable`. Needs ``prometheus-client``
(``pip install 'eventbus[prometheus]'``) once enabled. See ``docs/observability.md``.

Example:

    bus.load_entry_points()
    metrics = bus.get_plugin(PrometheusPlugin)
    metrics.enable()
    app = metrics.asgi_app()        # mount at /metrics
"""

from eventbus_prometheus._plugin import ENV_ENABLE, PrometheusPlugin

__all__ = ["ENV_ENABLE", "PrometheusPlugin"]
