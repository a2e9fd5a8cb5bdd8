"""Dispatch context: which event is being dispatched, and how deep.

Tracking context on every publish would blow the hot-path budget (a
``ContextVar`` set/reset costs more than three handler calls), so the bus
tracks it only once something needs it, and then for good:

* a publish starts while another one is in flight *in the same context*
  (a handler re-publishing; or, for tasks sharing a context, an overlap), or
* somebody asks for `EventBus.current_event` / `EventBus.event_chain`.

Until then each context (thread, or task) keeps only a count of the untracked
dispatches it has in flight (`Untracked`, in a ``ContextVar``): two threads
publishing at once are not nesting and never switch tracking on. While tracking:

* sync dispatch pushes onto a per-thread stack. Sync dispatch never yields to
  the event loop, so a per-thread stack is exact even with many asyncio tasks;
* async dispatch keeps an immutable chain in a ``ContextVar``, so each task
  sees its own chain across ``await``.

For the moment tracking switches on, events already in flight untracked are
found by walking the current thread's frames (`find_in_frames`), so answers are
right even then.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from types import CodeType
from typing import TYPE_CHECKING, ClassVar, Final, NoReturn

from eventbus.exceptions import EventCycleError

if TYPE_CHECKING:
    from eventbus.events import DomainEvent

__all__ = ["ContextMethods", "Untracked", "find_in_frames"]


class Untracked:
    """How many untracked dispatches are in flight in one context (thread or task).

    One per context, kept in a ``ContextVar``: other threads have their own, so
    two threads publishing at once never look like nesting. Tasks created while
    one is set share it, which can only make nesting look likelier: safe.
    """

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class _Stack(list["DomainEvent"]):
    """A thread's sync dispatch stack; ``room`` is how deep it may grow."""

    __slots__ = ("room",)

    def __init__(self) -> None:
        super().__init__()
        self.room = 0


class _ThreadStack(threading.local):
    def __init__(self) -> None:
        self.stack = _Stack()


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
    """`EventBus`'s context state, context queries and depth guard (module docstring)."""

    __slots__ = ("_chain_var", "_gate", "_tls", "_untracked_var", "max_depth")
    _dispatch_codes: ClassVar[frozenset[CodeType]]

    def __init__(self, max_depth: int) -> None:
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        self.max_depth: Final = max_depth
        # Non-zero once tracking is on: the publish fast paths test only this.
        self._gate = 0
        self._tls: Final = _ThreadStack()
        self._chain_var: Final[ContextVar[tuple[DomainEvent, ...]]] = ContextVar(
            "eventbus_chain", default=()
        )
        self._untracked_var: Final[ContextVar[Untracked | None]] = ContextVar(
            "eventbus_untracked", default=None
        )

    def _untracked(self) -> Untracked:
        """This context's untracked-dispatch counter, created on first use."""
        counter = self._untracked_var.get()
        if counter is None:
            counter = Untracked()
            self._untracked_var.set(counter)
        return counter

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
        self._gate = 1
        chain = self._chain_var.get() + tuple(self._tls.stack)
        counter = self._untracked_var.get()
        if counter is not None and counter.n:
            # Some dispatch started before tracking switched on; only the
            # frames know about it.
            framed = find_in_frames(self, self._dispatch_codes)
            if len(framed) > len(chain):
                return tuple(framed)
        return chain

    @contextlib.contextmanager
    def caused_by(self, cause: DomainEvent) -> Iterator[None]:
        """Publish inside the block as if from a handler of ``cause``.

        For work a handler hands on to a queue, a task or a thread that
        publishes later: those events are derived from ``cause``, not roots.
        Inside the block `event_chain` starts with ``cause`` (after any async
        dispatch already in progress), so plugins that treat root events
        specially see them for what they are (the Redis bridge forwards roots
        only), and ``cause`` counts towards ``max_depth``. Switches context
        tracking on.

        Example:
            with bus.caused_by(balance_event):
                await bus.publish(net_worth_event)

        Raises:
            RuntimeError: Called during a sync dispatch in this thread, where
                publishing makes derived events already.
        """
        if self._tls.stack:
            raise RuntimeError(
                "caused_by() inside a sync dispatch: events published here are derived "
                "from it already; publish directly"
            )
        self._gate = 1
        token = self._chain_var.set((*self._chain_var.get(), cause))
        try:
            yield
        finally:
            self._chain_var.reset(token)

    def _sync_room(self) -> int:
        """How many sync levels may nest from the bottom of this thread's stack."""
        counter = self._untracked_var.get()
        untracked = counter.n if counter is not None else 0
        return self.max_depth - len(self._chain_var.get()) - untracked

    def _refuse(self, event: DomainEvent) -> NoReturn:
        """Raise `EventCycleError` for ``event``, naming the whole chain."""
        chain = self._chain_var.get() + tuple(self._tls.stack)
        counter = self._untracked_var.get()
        if counter is not None and counter.n:
            framed = tuple(find_in_frames(self, self._dispatch_codes))
            if framed and framed[-1] is event:
                # The caller's own dispatch frame holds ``event``, which is not
                # in the chain yet: it is added below.
                framed = framed[:-1]
            chain = framed if len(framed) > len(chain) else chain
        names = tuple(type(e).__qualname__ for e in (*chain, event))
        raise EventCycleError(names, self.max_depth)
