"""Shared fixtures of the benchmark suites (``pytest benchmarks``).

Conventions, for every ``benchmarks/test_*.py``:

* Compare, never trust a bare time: put the candidates of one comparison in
  one ``benchmark.group`` and a baseline next to them, in the same run.
* A target ratio is asserted by `RatioBook.check`, from the minimum round
  times of this very run. Under ``--benchmark-disable`` (the CI smoke run:
  every benchmark executes once) timing targets are skipped, never guessed.
* Build events and subscribers outside the timed function.

Fixtures (all harmless to suites that do not use them): ``event`` (a realistic `AccountBalanceUpdated`, built once),
``runner`` (an `asyncio.Runner` for timing async code from sync benchmarks),
``ratios`` (the session's `RatioBook`), ``redis_server`` (a real
redis-server, started on first use) and ``timing`` (``False`` under
``--benchmark-disable``). Ratios recorded in the book are printed at the end of
the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.ratios import RatioBook
from eventbus.cli._bench import sample_event
from eventbus.portfolio import AccountBalanceUpdated
from tests.support import RedisServer, require_binary


def _timing_enabled(config: pytest.Config) -> bool:
    return not (
        config.getoption("benchmark_disable", False) or config.getoption("benchmark_skip", False)
    )


@pytest.fixture(name="timing", scope="session")
def fixture_timing(pytestconfig: pytest.Config) -> bool:
    """``False`` under ``--benchmark-disable``: no timing assertions then."""
    return _timing_enabled(pytestconfig)


@pytest.fixture(name="ratios", scope="session")
def fixture_ratios(pytestconfig: pytest.Config) -> RatioBook:
    """The session's `RatioBook` (also reachable by the terminal summary)."""
    book = RatioBook(enabled=_timing_enabled(pytestconfig))
    pytestconfig.stash[_BOOK] = book
    return book


@pytest.fixture(name="event", scope="session")
def fixture_event() -> AccountBalanceUpdated:
    """A realistic balance update, built once, outside every timed loop."""
    return sample_event()


@pytest.fixture(name="runner", scope="session")
def fixture_runner() -> Iterator[asyncio.Runner]:
    """An event loop for timing async dispatch from a sync benchmark function."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(name="redis_server", scope="session")
def fixture_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for the deployed-shape cases."""
    server = RedisServer(require_binary("redis-server"), Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_BOOK = pytest.StashKey[RatioBook]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print every ratio checked in this run, pass or fail, and the notes."""
    book = config.stash.get(_BOOK, None)
    if book is None or not (book.checked or book.notes):
        return
    terminalreporter.section("eventbus ratios (minimum round times, this run)")
    for name, ratio, bound, met in book.checked:
        mark = "ok    " if met else "MISSED"
        terminalreporter.write_line(f"{mark} {ratio:7.2f}x  {name}  (target {bound})")
    for note in book.notes:
        terminalreporter.write_line(f"note   {note}")
