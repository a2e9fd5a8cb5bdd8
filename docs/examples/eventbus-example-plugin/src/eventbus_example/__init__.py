"""eventbus-example-plugin: publish `LargeWithdrawal` when a balance drops sharply.

Installed, it is found through the ``eventbus`` entry-point group::

    bus = EventBus()
    bus.load_entry_points()          # registers "example" (and any other plugins)

or registered by hand, with its own settings::

    bus.register_plugin(LargeWithdrawalPlugin(threshold=Decimal("250")), name="example")
"""

from eventbus_example.events import LargeWithdrawal
from eventbus_example.plugin import DEFAULT_THRESHOLD, LargeWithdrawalPlugin

__all__ = ["DEFAULT_THRESHOLD", "LargeWithdrawal", "LargeWithdrawalPlugin"]
