"""Dispatch context: which events are being dispatched here, and how deep. Always exact.

Two stores, one per kind of dispatch, both kept from the very first publish:

* Sync dispatch (``publish_sync``) pushes its event onto a per-thread list, a
  `Stack`. Sync dispatch never yields to an event loop, so while a thread's
  stack is not empty, the only code running on that thread is inside that
  dispatch: a per-thread list is exact, and it is the cheapest store there is
  (a list append and a ``del``, where a ``ContextVar`` set/reset costs more
  than three handler calls).
* Async dispatch (``publish``, ``deliver``) sets a ``ContextVar`` to a *node*,
  the tuple ``(event, parent node, depth, info)``. Each task sees its own chain
  across ``await``; a task or thread started with a copy of the context
  (``create_task``, ``asyncio.to_thread``) continues the chain it was started in.

The chain is the ``ContextVar``'s nodes, outermost first, then the thread's
stack: in one thread, sync levels always run inside the async levels. One
shape breaks that rule: an event loop run *inside* a sync handler
(``asyncio.run`` in a handler). An async dispatch that starts while its
thread's stack is not empty copies the stack into its chain and marks the
copy with a `StackMark`, so the chain is still exact there, and it sends the
thread's sync publishes to the careful path (``room`` 0) until it ends, and
after it while the loop may still run tasks that dispatch started (their
chains are deeper than the thread's stack shows). An async dispatch nested
in that one copies only what the stack gained since (usually nothing): each
event is in the chain once.

Sync levels stay on their thread: a task or thread started with a copy of the
context continues the *async* part of the chain (the ``ContextVar``), not the
sync levels in progress where it was started, which are on that thread's
stack. So a task a handler of ``publish_sync`` creates sees the chain up to
the innermost async level (nothing, if the sync dispatch is a root), plus the
sync levels in progress on its own thread when it runs.

A node's ``info`` is ``None`` for an ordinary dispatch, a `StackMark`, or the
fleet position of an event being delivered from the fleet's order (see
`eventbus._fleet`). Anything but ``None`` sends publishes under that node to
the careful path.
"""

from __future__ import annotations

import _thread
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, NoReturn, final

from eventbus.exceptions import EventCycleError

if TYPE_CHECKING:
    from eventbus.events import DomainEvent

__all__ = ["DispatchContext", "Node", "Stack", "StackMark"]

#: ``(event, parent node, depth, info)``: one level of async dispatch.
Node = tuple["DomainEvent", "Node | None", int, object]


@final
class Stack(list["DomainEvent"]):
    """One thread's sync dispatch stack.

    Attributes:
        room: How deep the fast path may push before it hands over to the
            careful one (which checks the exact depth). ``max_depth`` for a
            stack whose bottom is at top level, less when its bottom runs
            inside an async dispatch, 0 while a loop runs inside its dispatch
            and may still run tasks.
        nested: Async dispatches running inside this stack's dispatch (an
            event loop run by a sync handler).
        saved_room: ``room`` from before the first of those, and
        saved_bottom: the stack's bottom event then.
        loop_top: The event under whose sync dispatch that loop runs, once
            its async dispatches are over: tasks they started may still
            publish on the loop, with chains deeper than the stack shows
            (`DispatchContext.settle`). ``None`` otherwise.
        loop_depth: The stack's length when ``loop_top`` was set.
    """

    __slots__ = ("loop_depth", "loop_top", "nested", "room", "saved_bottom", "saved_room")

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = self.saved_room = room
        self.saved_bottom: DomainEvent | None = None
        self.nested = 0
        self.loop_top: DomainEvent | None = None
        self.loop_depth = 0


@final
class StackMark:
    """Marks a chain that copied ``stack[:base]`` (module docstring).

    ``top`` is the event the copy ended with: a context kept after the copied
    dispatch ended (``contextvars.copy_context()``) finds another stack
    there, and then nothing of the stack counts as copied.
    """

    __slots__ = ("base", "stack", "top")

    def __init__(self, stack: Stack, base: int) -> None:
        self.stack = stack
        self.base = base
        self.top = stack[base - 1]

    def copied(self, stack: Stack) -> int:
        """How many of ``stack``'s bottom events this mark's chain holds already."""
        if self.stack is stack and len(stack) >= self.base and stack[self.base - 1] is self.top:
            return self.base
        return 0


def _copied(node: Node | None, stack: Stack) -> int:
    """How many of ``stack``'s bottom events the chain ending in ``node`` holds."""
    while node is not None:
        info = node[3]
        if isinstance(info, StackMark) and info.stack is stack:
            return info.copied(stack)
        node = node[1]
    return 0


@final
class DispatchContext:
    """The dispatch state of one bus: per-thread stacks and the async chain.

    Args:
        max_depth: How many events may be in one chain (`EventCycleError` beyond).
    """

    __slots__ = ("max_depth", "tls", "var")

    def __init__(self, max_depth: int) -> None:
        if not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError(f"max_depth must be an int >= 1, got {max_depth!r}")
        self.max_depth: Final = max_depth
        # A plain _thread._local, not a threading.local subclass: reading an
        # attribute of a subclass walks its MRO first, and this read is on the
        # hot path of every publish_sync. Its ``stack`` is made on first use.
        self.tls: Final[Any] = _thread._local()
        self.var: Final[ContextVar[Node | None]] = ContextVar("eventbus_chain", default=None)

    def stack(self) -> Stack:
        """This thread's `Stack`, made on its first use."""
        try:
            stack: Stack = self.tls.stack
        except AttributeError:
            stack = self.tls.stack = Stack(self.max_depth)
        return stack

    # ------------------------------------------------------------------ queries

    def chain(self) -> tuple[DomainEvent, ...]:
        """The events being dispatched in this thread or task, outermost first."""
        node = self.var.get()
        stack = self.stack()
        if node is None:
            return tuple(stack)
        # The stack's first events may be in the chain already.
        copied = _copied(node, stack) if stack else 0
        events: list[DomainEvent] = []
        while node is not None:
            events.append(node[0])
            node = node[1]
        events.reverse()
        return (*events, *stack[copied:])

    def depth(self) -> int:
        """How many events are in this thread's or task's chain."""
        return len(self.chain())

    def refuse(self, event: DomainEvent) -> NoReturn:
        """Raise `EventCycleError` for ``event``, naming the whole chain."""
        names = tuple(type(e).__qualname__ for e in (*self.chain(), event))
        raise EventCycleError(names, self.max_depth)

    # ------------------------------------------------------------------ changes

    def node(self, event: DomainEvent, parent: Node | None, info: object = None) -> Node:
        """A node for ``event`` under ``parent``, or refuse it past ``max_depth``."""
        depth = 1 if parent is None else parent[2] + 1
        if depth > self.max_depth:
            self.refuse(event)
        return (event, parent, depth, info)

    def absorb_stack(self, parent: Node | None, stack: Stack) -> Node | None:
        """Copy ``stack`` into a chain under ``parent``, marked (module docstring).

        Only the events the chain does not hold yet: under an async dispatch
        that copied the stack already, what was pushed since (usually nothing).
        """
        copied = _copied(parent, stack)
        if copied == len(stack):
            return parent
        node = parent
        for event in stack[copied:]:
            node = (event, node, 1 if node is None else node[2] + 1, None)
        assert node is not None  # something was copied
        return (node[0], node[1], node[2], StackMark(stack, len(stack)))

    @contextlib.contextmanager
    def loop_inside_sync(self, stack: Stack) -> Iterator[None]:
        """While an async dispatch runs inside ``stack``'s sync dispatch: careful path.

        And after it, for as long as the loop may run tasks it started (until
        `settle` finds the level the loop runs under gone).
        """
        self.settle(stack)
        if not stack.nested and stack.loop_top is None:
            stack.saved_room = stack.room
            stack.saved_bottom = stack[0]
        stack.nested += 1
        stack.room = 0
        try:
            yield
        finally:
            stack.nested -= 1
            if not stack.nested:
                stack.loop_top = stack[-1]
                stack.loop_depth = len(stack)

    def settle(self, stack: Stack) -> None:
        """Give the fast path its room back once no loop runs inside ``stack``'s dispatch.

        Called on the careful paths: while ``room`` is 0 every sync publish of
        the thread comes here, so the first one after the loop ended does it.
        """
        top = stack.loop_top
        if top is None or stack.nested:
            return
        depth = stack.loop_depth
        if len(stack) >= depth and stack[depth - 1] is top:
            return  # the loop may still run tasks
        stack.loop_top = None
        # The same bottom keeps its room; a new one was pushed at top level.
        same = bool(stack) and stack[0] is stack.saved_bottom
        stack.room = stack.saved_room if same else self.max_depth

    @contextlib.contextmanager
    def caused_by(self, cause: DomainEvent) -> Iterator[None]:
        """See `eventbus.EventBus.caused_by`."""
        if self.stack():
            raise RuntimeError(
                "caused_by() inside a sync dispatch: events published here are derived "
                "from it already; publish directly"
            )
        token = self.var.set(self.node(cause, self.var.get()))
        try:
            yield
        finally:
            self.var.reset(token)
