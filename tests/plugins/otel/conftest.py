"""Fixtures for the OpenTelemetry plugin tests: an SDK tracer provider with an in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)


@pytest.fixture(name="exporter")
def _exporter() -> InMemorySpanExporter:
    """Collects finished spans in memory."""
    return InMemorySpanExporter()


@pytest.fixture(name="provider")
def _provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A tracer provider exporting to ``exporter`` (never the global one)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def tree(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> list[str]:
    """The spans as indented lines, children in start order: ``name [handler]``."""
    lines: list[str] = []
    ordered = sorted(spans, key=lambda s: s.start_time or 0)

    def walk(span: ReadableSpan, depth: int) -> None:
        handler = (span.attributes or {}).get("eventbus.handler")
        short = f" [{str(handler).rsplit('.', 2)[-2]}]" if handler else ""
        lines.append("  " * depth + span.name + short)
        for child in ordered:
            if child.parent is not None and child.parent.span_id == span.context.span_id:
                walk(child, depth + 1)

    ids = {s.context.span_id for s in spans}
    for span in ordered:
        if span.parent is None or span.parent.span_id not in ids:
            walk(span, 0)
    return lines
