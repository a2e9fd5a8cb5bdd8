"""An event's lifecycle: eventbus against pydantic v2 and msgspec, in one run.

Four groups, one per step of an event's life outside dispatch: ``construct``
(validated), ``from_change``, ``encode`` (`eventbus.codec.dumps`) and
``decode`` (`eventbus.codec.loads`). Each has the same candidates as
``eventbus bench``, built by `eventbus.cli._bench_events.lifecycle_calls`:
eventbus, the equivalent pydantic model (same types and rules), pydantic
checking types only, and msgspec (the limit). Each round makes
`CALLS_PER_ROUND` (1000) calls, so the microseconds pytest-benchmark reports
read as nanoseconds per call. `TestTargets` (last in the module) checks the
targets as ratios of this run's minimum round times.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.baselines import CALLS_PER_ROUND
from benchmarks.ratios import RatioBook
from eventbus.cli._bench import Call, compile_loop
from eventbus.cli._bench_events import LIBRARIES, STEPS, TARGETS, lifecycle_calls, missing_peers

CASES = [(step, lib) for step in STEPS for lib in LIBRARIES]


@pytest.fixture(name="lifecycle", scope="module")
def fixture_lifecycle() -> dict[str, dict[str, Call]]:
    """Every candidate of every step, built once (skips without pydantic or msgspec)."""
    missing = missing_peers()
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (pip install -e '.[bench]')")
    return lifecycle_calls()


class TestLifecycle:
    """One call of each step by each library."""

    @pytest.mark.parametrize(
        ("step", "lib"), CASES, ids=[f"{s}-{lib.replace(' ', '-')}" for s, lib in CASES]
    )
    def test_step(
        self,
        benchmark: Any,
        ratios: RatioBook,
        lifecycle: dict[str, dict[str, Call]],
        step: str,
        lib: str,
    ) -> None:
        """``step`` of a balance update, by ``lib``."""
        benchmark.group = f"event lifecycle: {step}"
        benchmark(compile_loop(lifecycle[step][lib]), CALLS_PER_ROUND)
        ratios.record(f"{step} {lib}", benchmark, CALLS_PER_ROUND)


class TestTargets:
    """The targets, as ratios of this run's minimum round times.

    Skipped under ``--benchmark-disable`` and when a side was not measured.
    """

    @pytest.mark.parametrize(
        ("step", "peer", "limit"),
        TARGETS,
        ids=[f"{s}-{p.replace(' ', '-')}" for s, p, _ in TARGETS],
    )
    def test_within_target(self, ratios: RatioBook, step: str, peer: str, limit: float) -> None:
        """eventbus's time for ``step`` is at most ``limit`` times ``peer``'s."""
        ratios.check(f"{step} eventbus", f"{step} {peer}", at_most=limit)

    def test_notes(self, ratios: RatioBook) -> None:
        """The untargeted ratios (msgspec, the limit; decode against types-only pydantic)."""
        for step in STEPS:
            ratios.note_ratio(f"{step}: eventbus / msgspec", f"{step} eventbus", f"{step} msgspec")
        ratios.note_ratio(
            "decode: eventbus / pydantic types-only",
            "decode eventbus",
            "decode pydantic types-only",
        )
        ratios.note_ratio(
            "from_change: eventbus / pydantic", "from_change eventbus", "from_change pydantic"
        )
