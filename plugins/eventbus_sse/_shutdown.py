"""Ending the streams when the process is told to stop (SIGINT, SIGTERM).

An SSE response never ends by itself, and an ASGI server stops in this order:
on SIGINT or SIGTERM it stops accepting, waits for every open response to
complete, and only then sends ``lifespan.shutdown``. ASGI has no message for
"the server is stopping" in between (``http.disconnect`` means the *client*
went away), so a lifespan handler that closes the streams runs too late:
uvicorn waits ``--timeout-graceful-shutdown`` seconds, cancels the streams
with an error and a traceback, and the clients get truncated bodies (or, with
no timeout, it waits for ever).

So the process's own shutdown signal is the one standard notice there is.
`ShutdownSignals` chains onto the handler already installed for each signal:
on delivery it hands ``on_signal`` to the event loop with
``call_soon_threadsafe`` (which wakes the loop; never more work than that in a
signal handler), then calls that handler, so the server still does everything
it did before. It chains only onto a Python handler that someone installed,
which is what a server that stops gracefully does (uvicorn's
``capture_signals``, asyncio's ``loop.add_signal_handler``): never onto
``SIG_DFL``, ``SIG_IGN`` or Python's default ``KeyboardInterrupt`` handler,
whose process does not wait for open responses anyway. Signal handlers exist
only in the main thread: elsewhere (a server run in a thread) nothing is
installed. `ShutdownSignals.uninstall` puts the previous handlers back where
it can; a handler that was chained over since stays, inert, delegating.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Final, final

__all__ = ["DEFAULT_SIGNALS", "ShutdownSignals"]

#: The signals servers stop on: Ctrl-C, and ``kill``, systemd, Docker, Kubernetes.
DEFAULT_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], Any]


@final
class ShutdownSignals:
    """Calls ``on_signal`` on ``loop`` when one of ``signals`` arrives, then the old handler.

    Args:
        signals: The signal numbers to watch.
        on_signal: Called on the loop (never in the signal handler itself). The
            installed handlers hold it for as long as they are installed, so
            pass something that does not keep a large object alive (a weak
            reference's caller).

    Raises:
        TypeError: A signal is not an int.
        ValueError: A signal is not one this platform has.
    """

    __slots__ = ("_active", "_installed", "_loop", "_on_signal", "_signals", "_tried")

    def __init__(self, signals: Iterable[int], on_signal: Callable[[], None]) -> None:
        watched = tuple(dict.fromkeys(signals))
        for signum in watched:
            if isinstance(signum, bool) or not isinstance(signum, int):
                raise TypeError(f"shutdown_signals: {signum!r} is not a signal number")
            if signum not in signal.valid_signals():
                raise ValueError(f"shutdown_signals: {signum!r} is not a signal on this platform")
        self._signals: Final = watched
        self._on_signal: Final = on_signal
        self._loop: asyncio.AbstractEventLoop | None = None
        #: signal -> (our handler, the handler it chains onto)
        self._installed: dict[int, tuple[_Handler, _Handler]] = {}
        self._active = False
        self._tried = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Chain onto each signal's handler; once only, from the main thread.

        Does nothing off the main thread, after the first call, or for a
        signal no Python handler takes (see the module docstring).
        """
        if self._tried or not self._signals:
            return
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal would raise; a server here cannot take signals either
        self._tried = True
        self._loop = loop
        self._active = True
        for signum in self._signals:
            previous = signal.getsignal(signum)
            # Someone's own handler: not SIG_DFL, SIG_IGN, None, or KeyboardInterrupt's.
            if not callable(previous) or previous is signal.default_int_handler:
                continue
            handler = self._handler(previous)
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, handler)
                self._installed[signum] = (handler, previous)

    def _handler(self, previous: _Handler) -> _Handler:
        def on_signal(signum: int, frame: FrameType | None) -> Any:
            if self._active and (loop := self._loop) is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(self._on_signal)
            return previous(signum, frame)

        return on_signal

    def uninstall(self) -> None:
        """Stop watching; put each previous handler back if ours is still the one installed."""
        self._active = False
        if threading.current_thread() is not threading.main_thread():
            return  # ours stay installed, inert: they only delegate
        for signum, (handler, previous) in self._installed.items():
            if signal.getsignal(signum) is handler:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(signum, previous)
        self._installed.clear()
