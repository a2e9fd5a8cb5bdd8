"""`RatioBook`: the ratios between benchmarks of one run, the targets on them, and notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, final

import pytest

__all__ = ["RatioBook"]


@final
@dataclass
class RatioBook:
    """Minimum round times of this run, by name, and the ratios checked between them.

    ``notes`` holds figures that are not timings (bytes per subscription, ...),
    printed with the ratios at the end of the run.
    """

    enabled: bool
    seconds: dict[str, float] = field(default_factory=dict)
    checked: list[tuple[str, float, str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, name: str, benchmark: Any, per_round: int = 1) -> None:
        """Remember ``benchmark``'s fastest round (divided by ``per_round`` operations)."""
        stats = getattr(benchmark, "stats", None)
        if self.enabled and stats is not None:
            self.seconds[name] = stats.stats.min / per_round

    def check(
        self,
        numerator: str,
        denominator: str,
        *,
        at_most: float | None = None,
        at_least: float | None = None,
        relative_to: tuple[str, str] | None = None,
    ) -> float:
        """Assert ``time(numerator) / time(denominator)`` is within the bound; return it.

        With ``relative_to=(num, den)`` the ratio is divided by
        ``time(num) / time(den)``: a ratio judged against a control measured in
        the same run (for example, what threads cost a hand-written loop).

        Skips when timing is disabled or a side was not measured in this run
        (for example when selected away with ``-k``).
        """
        if not self.enabled:
            pytest.skip("timing targets are checked only with benchmarks enabled")
        names = (numerator, denominator, *(relative_to or ()))
        missing = [n for n in names if n not in self.seconds]
        if missing:
            pytest.skip(f"not measured in this run: {', '.join(missing)}")
        ratio = self.seconds[numerator] / self.seconds[denominator]
        name = f"{numerator} / {denominator}"
        if relative_to is not None:
            ratio /= self.seconds[relative_to[0]] / self.seconds[relative_to[1]]
            name = f"({name}) / ({relative_to[0]} / {relative_to[1]})"
        if at_most is not None:
            bound, met = f"<= {at_most}", ratio <= at_most
        elif at_least is not None:
            bound, met = f">= {at_least}", ratio >= at_least
        else:
            raise TypeError("check() needs at_most or at_least")
        self.checked.append((name, ratio, bound, met))
        assert met, f"{name} = {ratio:.2f}x, target {bound}"
        return ratio

    def check_overhead(self, peer: str, ours: str, floor: str, at_least: float) -> float:
        """Assert ``(time(peer) - time(floor)) / (time(ours) - time(floor)) >= at_least``.

        Dispatch overhead compared: what each candidate costs beyond ``floor``,
        a hand loop over the same callables (their own work, paid by all alike).
        """
        if not self.enabled:
            pytest.skip("timing targets are checked only with benchmarks enabled")
        missing = [n for n in (peer, ours, floor) if n not in self.seconds]
        if missing:
            pytest.skip(f"not measured in this run: {', '.join(missing)}")
        base = self.seconds[floor]
        ratio = (self.seconds[peer] - base) / max(self.seconds[ours] - base, 1e-12)
        met = ratio >= at_least
        self.checked.append(
            (f"({peer} - {floor}) / ({ours} - {floor})", ratio, f">= {at_least}", met)
        )
        assert met, f"overhead ratio {ratio:.2f} below {at_least}: {peer} vs {ours} over {floor}"
        return ratio

    def note_ratio(self, label: str, numerator: str, denominator: str) -> None:
        """Add ``time(numerator) / time(denominator)`` to the notes, if both were measured."""
        if numerator in self.seconds and denominator in self.seconds:
            ratio = self.seconds[numerator] / self.seconds[denominator]
            self.notes.append(f"{ratio:.2f}x  {label}")
