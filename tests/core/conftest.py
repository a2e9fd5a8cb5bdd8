"""Fixtures for the core test suite."""

from __future__ import annotations

import pytest

from eventbus import EventBus


@pytest.fixture(name="bus")
def _bus() -> EventBus:
    """A fresh bus with default settings (errors isolated, not raised)."""
    return EventBus()


@pytest.fixture(name="strict_bus")
def _strict_bus() -> EventBus:
    """A fresh bus that raises handler failures as an `ExceptionGroup`."""
    return EventBus(raise_errors=True)
