"""Dispatch context: which event is being dispatched, and how deep.

Tracking context on every publish would blow the hot-path budget (a
``ContextVar`` set/reset costs more than three handler calls), so the bus
tracks it only once something needs it, and then for good:

* a publish overlaps another one on the same bus (a handler re-publishing, or
  two threads publishing at once), or
* somebody asks for `EventBus.current_event`.

Until then a single in-flight counter is kept. While tracking:

* sync dispatch pushes onto a per-thread stack. Sync dispatch never yields to
  the event loop, so a per-thread stack is exact even with many asyncio tasks;
* async dispatch keeps an immutable chain in a ``ContextVar``, so each task
  sees its own chain across ``await``.

For the moment tracking switches on, events already in flight untracked are
found by walking the current thread's frames (`find_in_frames`), so answers are
right even then.
"""

from __future__ import annotations

import sys
import threading
from contextvars import ContextVar
from types import CodeType
from typing import TYPE_CHECKING, ClassVar, Final

from eventbus.exceptions import EventCycleError

if TYPE_CHECKING:
    from eventbus.events import DomainEvent

__all__ = ["ContextMethods", "ContextTracker", "find_in_frames"]


class _ThreadStack(threading.local):
    def __init__(self) -> None:
        self.stack: list[DomainEvent] = []


class ContextTracker:
    """Per-bus storage for the dispatch chain (see the module docstring)."""

    __slots__ = ("_tls", "chain_var")

    def __init__(self) -> None:
        self._tls: Final = _ThreadStack()
        self.chain_var: Final[ContextVar[tuple[DomainEvent, ...]]] = ContextVar(
            "eventbus_chain", default=()
        )

    @property
    def stack(self) -> list[DomainEvent]:
        """The calling thread's stack of events in sync dispatch."""
        return self._tls.stack

    def chain(self) -> tuple[DomainEvent, ...]:
        """Outermost-first chain of tracked events for the current thread/task."""
        return self.chain_var.get() + tuple(self._tls.stack)

    def current(self) -> DomainEvent | None:
        """The innermost tracked event, or ``None``."""
        stack = self._tls.stack
        if stack:
            # Sync dispatch never yields, so anything running while this thread's
            # stack is non-empty is nested inside it: it is the innermost.
            return stack[-1]
        chain = self.chain_var.get()
        return chain[-1] if chain else None


def find_in_frames(owner: object, codes: frozenset[CodeType]) -> list[DomainEvent]:
    """Find events being dispatched by ``owner`` in the calling thread's frames.

    Looks for frames running one of ``codes`` whose ``self`` is ``owner`` and
    returns their ``event`` locals, outermost first. A dispatch frame called
    directly by another for the same event (a fast path handing over to a slow
    one) counts once. Costs a stack walk; used only in the rare moments
    described in the module docstring.
    """
    found: list[DomainEvent] = []
    child_event: object = None
    frame = sys._getframe(1)
    while frame is not None:
        event: object = None
        if frame.f_code in codes:
            local = frame.f_locals
            if local.get("self") is owner and "event" in local:
                event = local["event"]
                if event is not child_event:
                    found.append(event)  # type: ignore[arg-type]  # "event" locals are events
        child_event = event
        frame = frame.f_back  # type: ignore[assignment]
    found.reverse()
    return found


class ContextMethods:
    """`EventBus`'s context queries and depth guard (see the module docstring)."""

    __slots__ = ("_ctx", "_inflight", "_tracked", "_tracking", "max_depth")
    _dispatch_codes: ClassVar[frozenset[CodeType]]

    def __init__(self, max_depth: int) -> None:
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        self.max_depth: Final = max_depth
        self._ctx: Final = ContextTracker()
        self._inflight = 0  # dispatches in flight, all threads (the overlap detector)
        self._tracked = 0  # ... of which tracked; fewer means some are visible only in frames
        self._tracking = False

    def _track(self) -> None:
        """Switch context tracking on, for good.

        Tracking also parks a permanent +1 on the in-flight counter (and on the
        tracked counter, so their difference still counts untracked dispatches):
        the publish fast path then needs a single truth test, ``_inflight``, to
        know it must take the tracked path.
        """
        if not self._tracking:
            self._tracking = True
            self._tracked += 1
            self._inflight += 1

    def current_event(self) -> DomainEvent | None:
        """The event being dispatched in this thread or task, or ``None`` at top level.

        Inside a handler this is the event the handler was called with. The
        first call switches context tracking on for this bus (see `event_chain`).
        """
        chain = self.event_chain()
        return chain[-1] if chain else None

    def event_chain(self) -> tuple[DomainEvent, ...]:
        """The events being dispatched in this thread or task, outermost first.

        Empty at top level; ``(event,)`` inside a handler of a *root* event (one
        published outside any handler); longer inside handlers of events that
        other handlers published. The Redis bridge forwards only root events.

        Context is tracked only once something needs it (module ``_context``):
        the first call switches tracking on for this bus, for good.
        """
        if not self._tracking:
            self._track()
        chain = self._ctx.chain()
        if self._inflight > self._tracked:
            # Some dispatch started before tracking switched on; only the
            # frames know about it.
            framed = find_in_frames(self, self._dispatch_codes)
            if len(framed) > len(chain):
                return tuple(framed)
        return chain

    def _check_depth(self, event: DomainEvent, depth: int) -> None:
        # ``depth`` counts tracked events only. Untracked dispatches (from before
        # tracking switched on) are found in the frames, which costs a walk: only
        # worth it near the limit, or while such dispatches are in flight.
        if depth + 1 < self.max_depth and self._inflight == self._tracked:
            return
        chain = self._ctx.chain()
        if self._inflight > self._tracked:
            framed = tuple(find_in_frames(self, self._dispatch_codes))
            if framed and framed[-1] is event:
                # The caller's own dispatch frame holds ``event``, which is not
                # in the chain yet: counting it would refuse one level too early.
                framed = framed[:-1]
            chain = framed if len(framed) > len(chain) else chain
        if len(chain) + 1 > self.max_depth:
            names = tuple(type(e).__qualname__ for e in (*chain, event))
            raise EventCycleError(names, self.max_depth)
