"""The ``eventbus demo`` runner (work in progress)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DemoOptions", "run_demo"]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Settings of one demo run (the ``eventbus demo`` flags)."""

    host: str = "127.0.0.1"
    port: int = 8000
    users: int = 3
    duration: float | None = None
    interval: float = 1.0
    redis_url: str | None = None
    seed: int | None = None


def run_demo(options: DemoOptions) -> int:
    """Run the demo until Ctrl-C or ``options.duration``; return the exit code."""
    raise NotImplementedError("eventbus demo is being built")
