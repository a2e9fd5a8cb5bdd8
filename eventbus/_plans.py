"""Dispatch plans: which handlers an event of one concrete type runs, in order.

A plan is compiled when a type is first published and cached until the next
subscribe, unsubscribe or sequencer change (the bus replaces its caches then:
copy-on-write, so publishers never lock). Matching is by ``issubclass``, so
MRO and ABC-registered virtual subclasses both match; order is priority, then
subscription order.

A plan maps each step's callable (by ``id``: a callable need not be
hashable) to its owner (the `Subscription`, or the `Sequencer` for its
``append``) in ``owners``, so a failure names its handler with one dict
lookup, never a scan; the steps themselves stay bare,
because unpacking a pair per handler costs a sixth of the hot path. Kinds:

* `SyncPlan`: callables, for ``publish_sync``;
* `AsyncPlan`: ``(call, mode)`` steps, mode 0 = call inline, 1 = await in
  order, 2 = run as a concurrent task;
* `FleetPlan`: ``(call, owner, mode)`` steps for `eventbus.EventBus.deliver`
  (module ``_fleet``), which picks each step's context by its owner's kind.
  It also says whether the type has fleet handlers (only then does an event
  derived in the fleet take a position) and whether any handler, local or
  fleet, is async (then a sync publish in the fleet defers the event). Both
  depend on the subscriptions alone, never on whether this worker runs the
  local handlers, so every worker numbers and orders derived events alike.

With a sequencer that sequences the type, the local plans start with its
``append`` and hold the local handlers only; fleet handlers run from
`eventbus.EventBus.deliver`. Otherwise the local plans hold every handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from eventbus._fleet import Sequencer
from eventbus._subscription import Subscription, handler_name
from eventbus.exceptions import AsyncHandlerError

__all__ = [
    "AsyncPlan",
    "FleetPlan",
    "FleetStep",
    "Owner",
    "SyncPlan",
    "async_plan",
    "fleet_plan",
    "is_concurrent",
    "owner_name",
    "sync_plan",
]

#: What a plan step names when it fails.
Owner = Subscription[Any] | Sequencer
_Call = Callable[[Any], Any]
#: ``(call, owner, mode)``: one step of a delivery.
FleetStep = tuple[_Call, Owner, int]


class SyncPlan(tuple[_Call, ...]):
    """The callables ``publish_sync`` runs, in order; ``owners`` names them."""

    owners: dict[int, Owner]


class AsyncPlan(tuple[tuple[_Call, int], ...]):
    """``(call, mode)`` steps for ``publish``, in order; ``owners`` names them."""

    owners: dict[int, Owner]


class FleetPlan(tuple[FleetStep, ...]):
    """The steps (`FleetStep`) of a type delivered from the fleet's order, in order.

    Attributes:
        fleet: Whether a fleet handler matches the type.
        waits: Whether any handler matching the type (local ones included, even
            where they do not run) is async or concurrent.
    """

    fleet: bool
    waits: bool


def _matching(subs: Iterable[Subscription[Any]], cls: type) -> list[Subscription[Any]]:
    matched = [s for s in subs if issubclass(cls, s.event_type)]
    matched.sort(key=lambda s: (-s.priority, s._seq))
    return matched


def _local(
    subs: Iterable[Subscription[Any]], cls: type, sequencer: Sequencer | None
) -> tuple[list[Subscription[Any]], Sequencer | None]:
    if sequencer is not None and sequencer.sequences(cls):
        return [s for s in _matching(subs, cls) if not s.fleet], sequencer
    return _matching(subs, cls), None


def _mode(sub: Subscription[Any]) -> int:
    return 2 if sub.concurrent else int(sub.is_async)


def sync_plan(
    subs: Iterable[Subscription[Any]], cls: type, sequencer: Sequencer | None
) -> SyncPlan:
    """The ``publish_sync`` plan of ``cls``.

    Raises:
        AsyncHandlerError: An async handler matches (naming every one).
    """
    matched, appends = _local(subs, cls, sequencer)
    asyncs = [handler_name(s.handler) for s in matched if s.is_async]
    if asyncs:
        raise AsyncHandlerError(
            f"publish_sync({cls.__qualname__}) would skip async handler(s) "
            f"{', '.join(asyncs)}; use 'await bus.publish(event)' instead"
        )
    steps: list[tuple[_Call, Owner, int]] = [(s._call, s, 0) for s in matched]
    if appends is not None:
        steps.insert(0, (appends.append, appends, 0))
    steps = _distinct(steps)
    plan = SyncPlan(call for call, _, _ in steps)
    plan.owners = {id(call): owner for call, owner, _ in steps}
    return plan


def async_plan(
    subs: Iterable[Subscription[Any]], cls: type, sequencer: Sequencer | None
) -> AsyncPlan:
    """The ``publish`` plan of ``cls``."""
    matched, appends = _local(subs, cls, sequencer)
    steps: list[tuple[_Call, Owner, int]] = [(s._call, s, _mode(s)) for s in matched]
    if appends is not None:
        steps.insert(0, (appends.append, appends, 0))
    steps = _distinct(steps)
    plan = AsyncPlan((call, mode) for call, _, mode in steps)
    plan.owners = {id(call): owner for call, owner, _ in steps}
    return plan


def _distinct(steps: list[tuple[_Call, Owner, int]]) -> list[tuple[_Call, Owner, int]]:
    """``steps`` with every callable a distinct object, so ``owners`` names each step.

    ``owners`` is keyed by the callable's ``id`` (a callable need not be
    hashable), and one function subscribed twice where both match (to a base
    class and a subclass) would otherwise share one key: the later one gets a
    thin alias. The plan holds every callable, so their ids stay theirs.
    """
    seen: set[int] = set()
    out = []
    for call, owner, mode in steps:
        if id(call) in seen:
            call = _alias(call)
        seen.add(id(call))
        out.append((call, owner, mode))
    return out


def _alias(call: _Call) -> _Call:
    def alias(event: Any) -> Any:
        return call(event)

    return alias


def fleet_plan(subs: Iterable[Subscription[Any]], cls: type, with_local: bool) -> FleetPlan:
    """The plan of ``cls`` delivered from the fleet's order.

    Fleet handlers, and with ``with_local`` the local ones too (a derived event
    on the worker that appended its entry).
    """
    matched = _matching(subs, cls)
    plan = FleetPlan((s._call, s, _mode(s)) for s in matched if with_local or s.fleet)
    plan.fleet = any(s.fleet for s in matched)
    plan.waits = any(s.is_async for s in matched)
    return plan


def is_concurrent(plan: AsyncPlan) -> bool:
    """Whether ``plan`` starts any handler as a concurrent task."""
    return any(mode == 2 for _, mode in plan)


def owner_name(owner: Owner) -> str:
    """A readable name of a plan step's owner, for logs, notes and signals."""
    if isinstance(owner, Subscription):
        return handler_name(owner.handler)
    return handler_name(owner.append)
