"""A traced worker process for the cross-process trace test.

Usage: ``EVENTBUS_OTEL=1 EVENTBUS_REDIS_URL=URL python -m tests.plugins.otel.worker COUNT``.

It sets a global SDK tracer provider whose exporter keeps every finished span
(`tests.plugins.otel.spans.CollectingExporter`), then builds its bus as a
deployed worker does: ``load_entry_points()``, so the ``otel`` plugin traces
to that provider (``EVENTBUS_OTEL=1``) and the Redis bridge reads the stream
(``EVENTBUS_REDIS_URL``), with the logging, net-worth and SSE plugins loaded
too. It prints ``ready`` once its startup has returned, then, once ``COUNT``
``receive`` spans have ended (a receive span ends after everything under
it), one JSON line: ``{"spans": [...]}``, and exits. Closing its stdin makes
it report early.
"""

from __future__ import annotations

import asyncio
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from eventbus import EventBus
from tests.plugins.otel.spans import CollectingExporter


async def main(count: int) -> None:
    """Run until ``count`` entries were received (their spans ended), then report the spans."""
    received = asyncio.Event()

    def exported() -> None:
        if sum(s["name"].startswith("receive ") for s in exporter.spans) >= count:
            received.set()

    exporter = CollectingExporter(exported)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    bus = EventBus()
    bus.load_entry_points()
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    async with bus:
        print("ready", flush=True)
        await asyncio.wait(
            [asyncio.ensure_future(received.wait()), stdin_closed],
            return_when=asyncio.FIRST_COMPLETED,
        )
    print(json.dumps({"spans": exporter.spans}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
