"""OpenTelemetry: the trace context is captured at enqueue, stored with the job and
restored in the worker; spans for enqueue, run (child or link) and settle, recorded by the
SDK's in-memory exporter."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from leaseq import JobContext, Queue, Worker
from leaseq.otel import Tracing


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def named(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


async def ok(ctx: JobContext, payload: Any) -> str:
    return "done"


async def boom(ctx: JobContext, payload: Any) -> None:
    raise RuntimeError("boom")


async def test_a_job_s_run_and_settle_continue_the_trace_of_its_enqueue(
    redis: aioredis.Redis, spans: tuple[TracerProvider, InMemorySpanExporter],
):
    provider, exporter = spans
    tracing = Tracing(provider)
    q = Queue(redis, "traced", tracer=tracing, max_attempts=1)
    with provider.get_tracer("test").start_as_current_span("request") as request:
        good = await q.enqueue("ok", None)
        bad = await q.enqueue("boom", None)
    info = await q.job(good)
    assert info is not None
    raw = await redis.hget(q.keys.job(good), "trace")
    assert raw is not None and b"traceparent" in (raw if isinstance(raw, bytes) else raw.encode())
    await Worker(q, {"ok": ok, "boom": boom}, reaper=False, tracer=tracing).run(
        burst=True, handle_signals=False)
    by = named(exporter)
    trace_id = request.get_span_context().trace_id
    enqueues = by["leaseq enqueue ok"] + by["leaseq enqueue boom"]
    assert all(s.kind == SpanKind.PRODUCER and s.context.trace_id == trace_id
               and s.parent is not None and s.parent.span_id == request.get_span_context().span_id
               for s in enqueues)
    (run_ok,) = by["leaseq run ok"]
    (enq_ok,) = by["leaseq enqueue ok"]
    assert run_ok.kind == SpanKind.CONSUMER and run_ok.context.trace_id == trace_id
    assert run_ok.parent is not None and run_ok.parent.span_id == enq_ok.context.span_id
    assert run_ok.attributes is not None
    assert run_ok.attributes["leaseq.job_id"] == good and run_ok.attributes["leaseq.attempt"] == 1
    settles = {s.attributes["leaseq.job_id"]: s for s in by["leaseq settle ok"]
               + by["leaseq settle boom"] if s.attributes is not None}
    assert settles[good].attributes["leaseq.outcome"] == "acked"  # type: ignore[index]
    assert settles[bad].attributes["leaseq.outcome"] == "dead"  # type: ignore[index]
    assert settles[good].parent is not None
    assert settles[good].parent.span_id == run_ok.context.span_id


async def test_with_link_a_run_starts_a_new_trace_that_links_to_the_enqueue(
    redis: aioredis.Redis, spans: tuple[TracerProvider, InMemorySpanExporter],
):
    provider, exporter = spans
    tracing = Tracing(provider, link=True)
    q = Queue(redis, "linked", tracer=tracing)
    await q.enqueue("ok", None)
    await Worker(q, {"ok": ok}, reaper=False, tracer=tracing).run(burst=True,
                                                                   handle_signals=False)
    by = named(exporter)
    (enq,) = by["leaseq enqueue ok"]
    (run,) = by["leaseq run ok"]
    assert run.parent is None and run.context.trace_id != enq.context.trace_id
    assert [link.context.span_id for link in run.links] == [enq.context.span_id]


async def test_without_a_tracer_nothing_is_stored_and_a_foreign_context_is_ignored(
    redis: aioredis.Redis, spans: tuple[TracerProvider, InMemorySpanExporter],
):
    provider, exporter = spans
    q = Queue(redis, "plain")
    job = await q.enqueue("ok", None)
    assert await redis.hget(q.keys.job(job), "trace") is None
    # A job whose stored context is not leaseq's runs all the same, in a new trace.
    await redis.hset(q.keys.job(job), "trace", "not json")
    tracing = Tracing(provider)
    await Worker(q, {"ok": ok}, reaper=False, tracer=tracing).run(burst=True,
                                                                   handle_signals=False)
    info = await q.job(job)
    assert info is not None and info.state == "done"
    (run,) = named(exporter)["leaseq run ok"]
    assert run.parent is None


async def test_a_tracer_that_fails_never_fails_the_job(redis: aioredis.Redis):
    class Broken:
        def running(self, ctx: JobContext, stored: str | None) -> Any:
            raise RuntimeError("exporter misconfigured")

        def settled(self, ctx: JobContext, run: Any, outcome: str, start_ns: int) -> None:
            raise RuntimeError("exporter misconfigured")

    q = Queue(redis, "badtracer")
    job = await q.enqueue("ok", None)
    worker = Worker(q, {"ok": ok}, reaper=False, tracer=Broken())
    await worker.run(burst=True, handle_signals=False)
    info = await q.job(job)
    assert info is not None and info.state == "done" and info.result == "done"
