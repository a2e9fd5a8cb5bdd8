"""The ``eventbus bench --plot`` chart: dispatch latency against handler count, per library,
and, beside it, an event's lifecycle against pydantic and msgspec.

Kept apart from `eventbus.cli._bench` so that timing never imports matplotlib.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from eventbus.cli._bench import COUNTS, EVENTBUS, HAND, PEERS, Report

if TYPE_CHECKING:
    from eventbus.cli._bench_events import LifecycleReport

__all__ = ["plot", "require_matplotlib"]


def require_matplotlib() -> None:
    """Raise a helpful `ImportError` unless matplotlib (the ``bench`` extra) is installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(
            "plotting needs matplotlib, which comes with the bench extra: "
            "pip install 'eventbus[bench]'"
        )


def plot(report: Report, path: str, lifecycle: LifecycleReport | None = None) -> None:
    """Draw latency against handler count, one line per library, into ``path``.

    With ``lifecycle``, a second panel shows each lifecycle step's time
    relative to the equivalent pydantic model's.

    Raises:
        ImportError: matplotlib (the ``bench`` extra) is not installed.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: never try to open a window
    from matplotlib import pyplot

    if lifecycle is None:
        fig, axes = pyplot.subplots(figsize=(8, 5), dpi=120)
    else:
        fig, (axes, right) = pyplot.subplots(
            1, 2, figsize=(15, 5), dpi=120, gridspec_kw={"width_ratios": [8, 7]}
        )
        _lifecycle(right, lifecycle)

    libraries = [EVENTBUS, HAND, *PEERS]
    styles: dict[str, dict[str, Any]] = {
        EVENTBUS: {"color": "#1f6feb", "linewidth": 2.8, "marker": "o", "zorder": 5},
        HAND: {"color": "#444444", "linestyle": "--", "marker": "s"},
        "blinker": {"color": "#e8590c", "marker": "^"},
        "pluggy": {"color": "#2f9e44", "marker": "D"},
        "pyee": {"color": "#9c36b5", "marker": "v"},
    }
    for lib in libraries:
        points = [(n, report.ns[("sync", n, lib)]) for n in COUNTS if ("sync", n, lib) in report.ns]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, label=lib, markersize=7, **styles[lib])
    axes.set_yscale("log")
    low, high = min(report.ns.values()) * 0.8, max(report.ns.values()) * 1.25
    # Plain tick labels: "10^2" on a log axis makes people do arithmetic.
    ticks = [
        t for t in (10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4) if low <= t <= high
    ]
    axes.set_yticks(ticks, [f"{t / 1000:g} µs" if t >= 1000 else f"{t:g} ns" for t in ticks])
    axes.minorticks_off()
    axes.set_ylim(low, high)
    axes.set_xticks(list(COUNTS))
    axes.set_xlabel("no-op handlers subscribed")
    axes.set_ylabel("time per publish (log scale, lower is better)")
    meta = report.meta
    axes.set_title(
        f"Sync dispatch latency vs handler count\nPython {meta['python']}, {meta['cpu']}",
        fontsize=10,
    )
    axes.grid(True, alpha=0.3)
    axes.legend(title="library", loc="lower right", ncols=2)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def _lifecycle(axes: Any, report: LifecycleReport) -> None:
    """Grouped bars: each step's time over the equivalent pydantic model's, per library."""
    from eventbus.cli._bench_events import LIBRARIES, PYDANTIC, STEPS, TARGETS

    colors = {
        "eventbus": "#1f6feb",
        "pydantic": "#e8590c",
        "pydantic types-only": "#f5a26f",
        "msgspec": "#2f9e44",
    }
    width = 0.8 / len(LIBRARIES)
    for k, lib in enumerate(LIBRARIES):
        xs, ys = [], []
        for i, step in enumerate(STEPS):
            value = report.ratio(step, lib, PYDANTIC)
            if value is not None:
                xs.append(i + (k - (len(LIBRARIES) - 1) / 2) * width)
                ys.append(value)
        bars = axes.bar(xs, ys, width, label=lib, color=colors[lib])
        if lib == "eventbus":
            axes.bar_label(bars, fmt="%.2fx", fontsize=8, padding=2)
    for step, peer, limit in TARGETS:
        if peer == PYDANTIC:
            i = STEPS.index(step)
            axes.hlines(limit, i - 0.45, i + 0.45, colors="#444444", linestyles="--", linewidth=1)
    axes.set_xticks(range(len(STEPS)), list(STEPS))
    axes.set_ylabel("time relative to pydantic (same rules) = 1.0; lower is better")
    axes.set_title(
        "Event lifecycle vs pydantic v2 and msgspec\n(dashes: eventbus targets)", fontsize=10
    )
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(title="library", loc="upper left", fontsize=8)
