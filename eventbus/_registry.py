"""`Registry`: one bus's subscriptions, its sequencer, and the plans compiled from them.

Subscriptions live in a dict by sequence number, changed under a lock in
O(1) (100k subscribes and cancels take well under a second). Plans are
immutable snapshots (module ``_plans``), so the registry itself need not be:
every change starts a new *generation* of plan caches (`Caches`), which the
bus installs where its hot paths read them, and in-flight publishes keep the
plan they already hold. A generation's subscriptions are copied once, the
first time one of its plans is compiled.

While anybody observes dispatch (module ``_observed``) the hot paths must
miss, so plans go into the generation's *observed* caches, which only the
careful paths read: they are compiled once per generation either way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final, final

from eventbus import _plans
from eventbus._fleet import Sequencer
from eventbus._observed import observed
from eventbus._subscription import Subscription

__all__ = ["Caches", "Registry"]


@final
class Caches:
    """The compiled plans of one generation of subscriptions.

    Attributes:
        subs: The subscriptions they are compiled from, taken on first need.
        sync: ``publish_sync`` plans the hot path may use.
        fast: ``publish`` plans without concurrent handlers (its fast path).
        slow: ``publish`` plans with concurrent handlers.
        fleet: `eventbus.EventBus.deliver` plans, by (type, with local handlers).
        observed_sync: ``publish_sync`` plans while somebody observes.
        observed_async: ``publish`` plans while somebody observes.
    """

    __slots__ = ("fast", "fleet", "observed_async", "observed_sync", "slow", "subs", "sync")

    def __init__(self) -> None:
        self.subs: tuple[Subscription[Any], ...] | None = None
        self.sync: dict[type, _plans.SyncPlan] = {}
        self.fast: dict[type, _plans.AsyncPlan] = {}
        self.slow: dict[type, _plans.AsyncPlan] = {}
        self.fleet: dict[tuple[type, bool], _plans.FleetPlan] = {}
        self.observed_sync: dict[type, _plans.SyncPlan] = {}
        self.observed_async: dict[type, _plans.AsyncPlan] = {}


@final
class Registry:
    """Subscriptions and plans of one bus (module docstring).

    Args:
        install: Called with each new generation of caches, under the lock, so
            the bus can point its hot paths at them.
    """

    __slots__ = ("_dead", "_install", "_lock", "_subs", "caches", "sequencer")

    def __init__(self, install: Callable[[Caches], None]) -> None:
        self._lock: Final = threading.Lock()
        self._install: Final = install
        self._subs: dict[int, Subscription[Any]] = {}
        self._dead: list[Subscription[Any]] = []
        self.sequencer: Sequencer | None = None
        self.caches = Caches()
        install(self.caches)

    def __len__(self) -> int:
        return len(self._subs)

    # ------------------------------------------------------------------ changes

    def add(self, sub: Subscription[Any]) -> None:
        """Add ``sub``; later publishes see it."""
        with self._lock:
            self._subs[sub._seq] = sub
            self._changed()

    def remove(self, sub: Subscription[Any], *, blocking: bool = True) -> bool:
        """Remove ``sub``; return whether this call did. Thread-safe, idempotent."""
        if not self._lock.acquire(blocking):
            # Only from a weakref callback, whose GC may have interrupted this very
            # thread inside the lock. Mark it (plans skip it); the next change
            # takes it out of the registry.
            was_active, sub._active = sub._active, False
            if was_active:
                self._dead.append(sub)
            return was_active
        try:
            if not sub._active:
                return False
            sub._active = False
            del self._subs[sub._seq]
            self._changed()
        finally:
            self._lock.release()
        return True

    def set_sequencer(self, sequencer: Sequencer | None) -> None:
        """Attach or detach the sequencer (every plan depends on it).

        Raises:
            RuntimeError: Another sequencer is attached.
        """
        with self._lock:
            if sequencer is not None and self.sequencer not in (None, sequencer):
                raise RuntimeError(f"a sequencer is attached already: {self.sequencer!r}")
            self.sequencer = sequencer
            self._changed()

    def forget_plans(self) -> None:
        """Start a new generation of caches (module ``_observed``)."""
        with self._lock:
            self._changed()

    def _changed(self) -> None:
        # Caller holds the lock. In-flight publishes keep the plan they hold.
        while self._dead:
            self._subs.pop(self._dead.pop()._seq, None)
        self.caches = Caches()
        self._install(self.caches)

    # ------------------------------------------------------------------ reading

    def active(self) -> tuple[Subscription[Any], ...]:
        """The active subscriptions, in subscription order."""
        with self._lock:
            return tuple(s for s in self._subs.values() if s._active)

    def _subscribed(self, caches: Caches) -> tuple[Subscription[Any], ...]:
        subs = caches.subs
        if subs is None:
            with self._lock:
                # If subscriptions changed meanwhile, this is newer than ``caches``:
                # still right to compile from, and ``caches`` is discarded anyway.
                subs = tuple(s for s in self._subs.values() if s._active)
                if caches is self.caches:
                    caches.subs = subs
        return subs

    def compile_sync(self, cls: type) -> _plans.SyncPlan:
        """The ``publish_sync`` plan of ``cls``, cached for its generation.

        Raises:
            AsyncHandlerError: An async handler matches (never cached, so every
                ``publish_sync`` of ``cls`` raises again).
        """
        caches = self.caches
        watched = observed()
        cache = caches.observed_sync if watched else caches.sync
        plan = cache.get(cls)
        if plan is None:
            plan = _plans.sync_plan(self._subscribed(caches), cls, self.sequencer)
            cache[cls] = plan
        return plan

    def compile_async(self, cls: type) -> _plans.AsyncPlan:
        """The ``publish`` plan of ``cls``, cached for its generation."""
        caches = self.caches
        if observed():
            plan = caches.observed_async.get(cls)
            if plan is None:
                plan = _plans.async_plan(self._subscribed(caches), cls, self.sequencer)
                caches.observed_async[cls] = plan
            return plan
        plan = caches.slow.get(cls)
        if plan is None:
            plan = _plans.async_plan(self._subscribed(caches), cls, self.sequencer)
            # Plans with concurrent handlers never take the fast path, so they
            # are kept out of the dict it looks in.
            (caches.slow if _plans.is_concurrent(plan) else caches.fast)[cls] = plan
        return plan

    def fleet_plan(self, cls: type, with_local: bool) -> _plans.FleetPlan:
        """The `eventbus.EventBus.deliver` plan of ``cls``, cached for its generation."""
        caches = self.caches
        plan = caches.fleet.get((cls, with_local))
        if plan is None:
            plan = _plans.fleet_plan(self._subscribed(caches), cls, with_local)
            caches.fleet[cls, with_local] = plan
        return plan
