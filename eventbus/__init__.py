"""eventbus: a typed, pluggable, in-process event bus.

Quick tour:

    from eventbus import EventBus
    from eventbus.portfolio import AccountBalanceUpdated

    bus = EventBus()
    bus.load_entry_points()            # plugins from the "eventbus" entry-point group

    @bus.on(AccountBalanceUpdated)
    def show(event: AccountBalanceUpdated) -> None:
        ...

    bus.publish_sync(event)            # or: await bus.publish(event)

Importing eventbus has no side effects: nothing is scanned or loaded until you
call `EventBus.load_entry_points`.
"""

from eventbus._bus import EventBus
from eventbus._fleet import Projection, Sequencer
from eventbus._observed import DispatchObserver, FleetEntry, HeaderSequencer
from eventbus._plugins import PluginInfo, SubscriptionInfo
from eventbus._priority import Priority
from eventbus._subscription import Handler, Subscription
from eventbus.events import DomainEvent, event_type
from eventbus.exceptions import (
    AsyncHandlerError,
    BusNotRunningError,
    DecodeError,
    EncodeError,
    EventBusError,
    EventCycleError,
    InvalidEventError,
    PluginError,
    PluginLoadError,
    PluginNotFoundError,
    PluginRegistrationError,
    StreamOverflowError,
)
from eventbus.hookspecs import hookimpl

__all__ = [
    "AsyncHandlerError",
    "BusNotRunningError",
    "DecodeError",
    "DispatchObserver",
    "DomainEvent",
    "EncodeError",
    "EventBus",
    "EventBusError",
    "EventCycleError",
    "FleetEntry",
    "Handler",
    "HeaderSequencer",
    "InvalidEventError",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "PluginNotFoundError",
    "PluginRegistrationError",
    "Priority",
    "Projection",
    "Sequencer",
    "StreamOverflowError",
    "Subscription",
    "SubscriptionInfo",
    "event_type",
    "hookimpl",
]

__version__ = "0.1.0"
