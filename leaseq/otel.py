"""OpenTelemetry tracing of jobs (``pip install 'leaseq[otel]'``: the API only; bring
your own SDK and exporter).

    tracing = Tracing()                          # the global tracer provider
    queue = Queue(redis, "images", tracer=tracing)
    worker = Worker(queue, handlers, tracer=tracing)

Each enqueue call is a ``PRODUCER`` span (``leaseq enqueue <task>``) whose context is
stored with its jobs (the job hash's ``trace`` field, W3C trace context by the
configured propagator); the worker restores it and runs the handler in a ``CONSUMER``
span (``leaseq run <task>``), a child of the enqueue span, or with ``link=True`` the
first span of a new trace that links to it; the ack or failure is a child span of the run
(``leaseq settle <task>``). Attributes: ``messaging.system`` = leaseq, queue, task, job
id, attempt, and the outcome (acked, failed, dead, lease_lost).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from .runtime.task import JobContext

__all__ = ["Tracing"]


class Tracing:
    """Traces enqueues, runs and settlements; give it to ``Queue(tracer=...)`` and
    ``Worker(tracer=...)``. ``tracer_provider`` defaults to the global one."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None, *,
                 link: bool = False) -> None:
        self.tracer = trace.get_tracer("leaseq", tracer_provider=tracer_provider)
        self.link = link

    @contextmanager
    def enqueued(self, queue: str, task: str, jobs: int) -> Iterator[str]:
        """A span around one enqueue call; yields the context its jobs store."""
        with self.tracer.start_as_current_span(
                f"leaseq enqueue {task}", kind=trace.SpanKind.PRODUCER,
                attributes={"messaging.system": "leaseq", "leaseq.queue": queue,
                            "leaseq.task": task, "leaseq.jobs": jobs}):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield json.dumps(carrier, separators=(",", ":")) if carrier else ""

    @contextmanager
    def running(self, ctx: JobContext, stored: str | None) -> Iterator[Any]:
        """The handler's span, restored from what the producer ``stored``."""
        parent = _extract(stored)
        links = []
        if self.link:
            linked = trace.get_current_span(parent).get_span_context()
            if linked.is_valid:
                links.append(trace.Link(linked))
            parent = otel_context.Context()  # a new trace, linked to the producer's
        with self.tracer.start_as_current_span(
                f"leaseq run {ctx.task}", context=parent, kind=trace.SpanKind.CONSUMER,
                links=links, attributes=_attributes(ctx)) as span:
            yield span

    def settled(self, ctx: JobContext, run: Any, outcome: str, start_ns: int) -> None:
        """A span for the ack or failure, from ``start_ns`` until now: a child of the
        run's span (``run``, what :meth:`running` yielded)."""
        parent = trace.set_span_in_context(run) if run is not None else otel_context.Context()
        span = self.tracer.start_span(
            f"leaseq settle {ctx.task}", context=parent, kind=trace.SpanKind.CONSUMER,
            start_time=start_ns, attributes={**_attributes(ctx), "leaseq.outcome": outcome})
        span.end()


def _extract(stored: str | None) -> otel_context.Context:
    if not stored:
        return otel_context.Context()
    try:
        carrier = json.loads(stored)
    except ValueError:
        return otel_context.Context()  # not written by leaseq: run untraced by it
    return propagate.extract(carrier) if isinstance(carrier, dict) else otel_context.Context()


def _attributes(ctx: JobContext) -> dict[str, Any]:
    return {"messaging.system": "leaseq", "leaseq.queue": ctx.queue.name,
            "leaseq.task": ctx.task, "leaseq.job_id": ctx.job_id,
            "leaseq.attempt": ctx.attempt}
