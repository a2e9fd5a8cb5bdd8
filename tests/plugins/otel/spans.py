"""Finished spans as plain dicts: what a worker process exports, and how trees are drawn.

A worker process (`tests.plugins.otel.worker`) writes its spans as JSON, so
the test process compares them with its own in-memory spans in one shape.
The docs' trace screenshot (`tests.plugins.otel.test_screenshots`) renders
the same dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["CollectingExporter", "Span", "as_dict", "children", "roots", "tree"]

#: A span as a dict: ``name``, ``kind``, ``trace_id``, ``span_id``,
#: ``parent_id`` (``None`` at a root), ``parent_remote``, ``links`` (span
#: ids), ``attributes``, ``status``, ``start`` and ``end`` (ns).
Span = dict[str, Any]


def as_dict(span: ReadableSpan) -> Span:
    """``span`` as a JSON-ready dict (ids as hex, as in a ``traceparent``)."""
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": None if parent is None else f"{parent.span_id:016x}",
        "parent_remote": bool(parent is not None and parent.is_remote),
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "start": span.start_time,
        "end": span.end_time,
    }


class CollectingExporter(SpanExporter):
    """Keeps every finished span as a dict; calls ``on_export`` after each batch."""

    def __init__(self, on_export: Callable[[], None] = lambda: None) -> None:
        self.spans: list[Span] = []
        self._on_export = on_export

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += [as_dict(span) for span in spans]
        self._on_export()
        return SpanExportResult.SUCCESS


def roots(spans: Iterable[Span]) -> list[Span]:
    """The spans whose parent is not among ``spans`` (a remote parent, or none), by start."""
    spans = list(spans)
    ids = {s["span_id"] for s in spans}
    return sorted((s for s in spans if s["parent_id"] not in ids), key=lambda s: s["start"])


def children(spans: Iterable[Span], parent: Span) -> list[Span]:
    """The children of ``parent`` among ``spans``, by start."""
    found = [s for s in spans if s["parent_id"] == parent["span_id"]]
    return sorted(found, key=lambda s: s["start"])


def tree(spans: Iterable[Span]) -> list[str]:
    """The spans as indented lines, ``name [handler class]``, children in start order."""
    spans = list(spans)
    lines: list[str] = []

    def walk(span: Span, depth: int) -> None:
        handler = span["attributes"].get("eventbus.handler")
        short = f" [{str(handler).rsplit('.', 2)[-2]}]" if handler else ""
        lines.append("  " * depth + span["name"] + short)
        for child in children(spans, span):
            walk(child, depth + 1)

    for root in roots(spans):
        walk(root, 0)
    return lines
