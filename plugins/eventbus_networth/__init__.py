"""eventbus-networth: a per-user net-worth aggregator over balance events.

Loaded by ``bus.load_entry_points()`` (entry point ``networth``), configured by
``EVENTBUS_NETWORTH_BASE`` / ``EVENTBUS_NETWORTH_RATES``, or registered by hand:

    from decimal import Decimal
    from eventbus_networth import NetWorthPlugin

    rates = {("EUR", "USD"): Decimal("1.08"), ("GBP", "USD"): Decimal("1.27")}
    bus.register_plugin(NetWorthPlugin("USD", rates), name="networth")

    bus.get_plugin(NetWorthPlugin).aggregator.net_worth(user_id)

Every balance update is applied in O(1), exactly (`Decimal`, never float), and
publishes `PortfolioNetWorthRecalculated` when the user's net worth changed.
Holdings updates carry no value and change nothing. The handler is a fleet
handler and the state a projection (`NetWorthProjection`): with the Redis
bridge, every worker holds the same net worth and derives the same events.
"""

from eventbus_networth._aggregator import AccountBalance, NetWorthAggregator
from eventbus_networth._plugin import NetWorthPlugin
from eventbus_networth._projection import PROJECTION_NAME, NetWorthProjection
from eventbus_networth._rates import BASE_ENV, RATES_ENV, RateLookup, RatesProvider, parse_rates

__all__ = [
    "BASE_ENV",
    "PROJECTION_NAME",
    "RATES_ENV",
    "AccountBalance",
    "NetWorthAggregator",
    "NetWorthPlugin",
    "NetWorthProjection",
    "RateLookup",
    "RatesProvider",
    "parse_rates",
]
