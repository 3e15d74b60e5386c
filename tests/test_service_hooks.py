"""What an embedding service gives its handlers: plain ``def`` handlers run in threads
(their leases renewed meanwhile, their results fenced), resources from a ``lifespan`` as
``ctx.state``, and ``middleware`` around each job — none of which can stop a worker."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from leaseq import JobContext, LeaseqError, Queue, Task, Worker
from leaseq.testing import RedisServer


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Wait for a plain (not awaitable) condition, with a generous deadline."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


async def drain(worker: Worker, queue: Queue, done: int, timeout: float = 30) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(timeout):
            while (await queue.stats()).done + (await queue.stats()).dead < done:
                await anyio.sleep(0.01)
        worker.stop()


# -- sync handlers ----------------------------------------------------------------------------

async def test_a_plain_def_handler_runs_in_a_thread_and_its_result_is_acked(
    redis: aioredis.Redis,
):
    q = Queue(redis, "sync")
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def add(ctx: JobContext, payload: Any) -> int:
        seen.append(threading.get_ident())
        time.sleep(0.01)  # blocking, which an async handler must never do
        return int(payload["a"]) + int(payload["b"])

    ids = await q.enqueue_many("add", [{"a": i, "b": 1} for i in range(6)])
    await drain(Worker(q, {"add": add}, reaper=False, sync_concurrency=3), q, 6)
    results = [(await q.job(i)) for i in ids]
    assert [r.result for r in results if r is not None] == [i + 1 for i in range(6)]
    assert seen and loop_thread not in seen


async def test_sync_handlers_run_at_most_sync_concurrency_at_once(redis: aioredis.Redis):
    q = Queue(redis, "bounded")
    running = 0
    peak = 0
    guard = threading.Lock()
    # Each job waits for a second one to run beside it: the bound is reached, whatever
    # the machine's speed, and a third is never let in.
    pairs = threading.Barrier(2, timeout=10)

    def slow(ctx: JobContext, payload: Any) -> None:
        nonlocal running, peak
        with guard:
            running += 1
            peak = max(peak, running)
        pairs.wait()
        time.sleep(0.01)
        with guard:
            running -= 1

    await q.enqueue_many("slow", range(12))
    worker = Worker(q, {"slow": slow}, concurrency=10, reaper=False, sync_concurrency=2)
    await drain(worker, q, 12)
    assert peak == 2 and worker.counters["acked"] == 12


@pytest.mark.real_redis
async def test_a_sync_handler_longer_than_its_lease_keeps_it_renewed(real_redis: aioredis.Redis):
    q = Queue(real_redis, "renewed", lease_timeout=1.0)

    def long(ctx: JobContext, payload: Any) -> str:
        time.sleep(2.5)  # more than two lease lengths
        return "finished"

    job = await q.enqueue("long", None)
    worker = Worker(q, {"long": long}, reaper=True, reaper_interval=0.05)
    await drain(worker, q, 1)
    info = await q.job(job)
    assert info is not None and info.state == "done" and info.result == "finished"
    assert info.attempts == 1 and info.lease_expiries == 0
    assert worker.counters["lease_lost"] == 0


@pytest.mark.real_redis
async def test_a_sync_handler_whose_lease_is_lost_has_its_result_dropped(
    real_redis: aioredis.Redis,
):
    q = Queue(real_redis, "stolen", lease_timeout=5.0)
    started = threading.Event()
    release = threading.Event()

    def blocked(ctx: JobContext, payload: Any) -> str:
        started.set()
        release.wait(10)
        return "stale"

    job = await q.enqueue("blocked", None)
    worker = Worker(q, {"blocked": blocked}, reaper=False)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            await until(started.is_set)
            await real_redis.delete(q.keys.lease(job))  # the lease is lost
            await until(lambda: worker.counters["lease_lost"] == 1)
            release.set()
            worker.stop()
    info = await q.job(job)
    assert info is not None and info.state == "in_progress" and info.result is None
    assert any(e["event"] == "lease_lost" and e.get("stage") == "running" for e in logs)


async def test_a_sync_handler_that_raises_is_a_failed_attempt(redis: aioredis.Redis):
    q = Queue(redis, "raises", max_attempts=1)

    def broken(ctx: JobContext, payload: Any) -> None:
        raise ValueError("no such image")

    job = await q.enqueue("broken", None)
    worker = Worker(q, {"broken": Task(broken)}, reaper=False)
    await drain(worker, q, 1)
    info = await q.job(job)
    assert info is not None and info.state == "dead"
    assert info.error is not None and "ValueError: no such image" in info.error


# -- lifespan ---------------------------------------------------------------------------------

async def test_what_the_lifespan_yields_is_every_handlers_state_and_it_ends_after_the_drain(
    redis: aioredis.Redis,
):
    q = Queue(redis, "lifespan")
    order: list[str] = []

    @asynccontextmanager
    async def lifespan(worker: Worker) -> AsyncIterator[dict[str, Any]]:
        order.append("start")
        yield {"pool": "db-pool", "worker": worker}
        order.append(f"stop after {worker.counters['acked']} acks")

    async def uses_state(ctx: JobContext, payload: Any) -> str:
        order.append("job")
        return str(ctx.state["pool"])

    worker = Worker(q, {"t": uses_state}, reaper=False, lifespan=lifespan)
    ids = await q.enqueue_many("t", [1, 2])
    await drain(worker, q, 2)
    assert order == ["start", "job", "job", "stop after 2 acks"]
    assert [(await q.job(i)).result for i in ids] == ["db-pool", "db-pool"]  # type: ignore[union-attr]
    assert worker.state is None  # not kept once the worker stopped


async def test_a_lifespan_that_fails_to_start_stops_the_worker_before_any_claim(
    redis: aioredis.Redis,
):
    q = Queue(redis, "nolife")

    @asynccontextmanager
    async def lifespan(worker: Worker) -> AsyncIterator[None]:
        raise ConnectionRefusedError("database at db:5432 refused the connection")
        yield

    async def never(ctx: JobContext, payload: Any) -> None:
        raise AssertionError("no job may run")

    await q.enqueue("t", None)
    worker = Worker(q, {"t": never}, reaper=False, lifespan=lifespan)
    with capture_logs() as logs, pytest.raises(LeaseqError) as stopped:
        await worker.run(handle_signals=False)
    assert str(stopped.value) == ("the worker's lifespan failed to start: "
                                  "ConnectionRefusedError: database at db:5432 refused "
                                  "the connection")
    assert (await q.stats()).todos == 1 and worker.counters["claimed"] == 0
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["lifespan_failed"]


def test_a_lifespan_that_is_not_callable_is_refused():
    from leaseq import InvalidInput

    with pytest.raises(InvalidInput, match="lifespan must be a callable"):
        Worker(Queue(aioredis.Redis(), "q"), {"t": lambda ctx, p: None},
               lifespan="db")  # type: ignore[arg-type]


# -- middleware -------------------------------------------------------------------------------

async def test_middleware_wraps_each_job_outermost_first(redis: aioredis.Redis):
    q = Queue(redis, "wrapped")
    calls: list[str] = []

    def named(name: str) -> Any:
        @asynccontextmanager
        async def middleware(ctx: JobContext) -> AsyncIterator[None]:
            calls.append(f"{name} in {ctx.task}")
            try:
                yield
            finally:
                calls.append(f"{name} out")
        return middleware

    async def handler(ctx: JobContext, payload: Any) -> None:
        calls.append("handler")

    await q.enqueue("t", None)
    await drain(Worker(q, {"t": handler}, reaper=False,
                       middleware=[named("trace"), named("session")]), q, 1)
    assert calls == ["trace in t", "session in t", "handler", "session out", "trace out"]


async def test_an_exception_in_middleware_fails_the_job_not_the_worker(redis: aioredis.Redis):
    q = Queue(redis, "badhook", max_attempts=1)

    @asynccontextmanager
    async def broken(ctx: JobContext) -> AsyncIterator[None]:
        if ctx.job_id == "before":
            raise RuntimeError("tracer not configured")
        yield
        if ctx.job_id == "after":
            raise RuntimeError("session commit failed")

    async def handler(ctx: JobContext, payload: Any) -> str:
        return "ran"

    for job_id in ("before", "after", "fine"):
        await q.enqueue("t", None, job_id=job_id)
    worker = Worker(q, {"t": handler}, reaper=False, middleware=[broken])
    await drain(worker, q, 3)
    infos = {j: await q.job(j) for j in ("before", "after", "fine")}
    assert infos["before"].state == "dead"  # type: ignore[union-attr]
    assert "tracer not configured" in infos["before"].error  # type: ignore[union-attr,operator]
    assert infos["after"].state == "dead"  # type: ignore[union-attr]
    assert "session commit failed" in infos["after"].error  # type: ignore[union-attr,operator]
    assert infos["fine"].state == "done" and infos["fine"].result == "ran"  # type: ignore[union-attr]


# -- through the command line -----------------------------------------------------------------

@pytest.mark.real_redis
async def test_leaseq_worker_takes_a_lifespan_and_one_that_fails_is_one_line_and_exit_1(
    real_redis: aioredis.Redis, redis_server: RedisServer,
):
    q = Queue(real_redis, "clilife")
    job = await q.enqueue("pool_name", None)
    argv = [sys.executable, "-m", "leaseq", "--redis", redis_server.url, "--log-format",
            "json", "worker", "tests.helpers.lifespans:HANDLERS", "-q", "clilife", "--burst"]
    with anyio.fail_after(60):
        ok = await anyio.run_process([*argv, "--lifespan", "tests.helpers.lifespans:pool"],
                                     check=False)
    assert ok.returncode == 0, ok.stderr
    info = await q.job(job)
    assert info is not None and info.result == "pg://example"
    await q.enqueue("pool_name", None)
    with anyio.fail_after(60):
        bad = await anyio.run_process(
            [*argv, "--lifespan", "tests.helpers.lifespans:broken"], check=False)
    assert bad.returncode == 1
    plain = [line for line in bad.stderr.decode().splitlines() if not line.startswith("{")]
    assert plain == [("leaseq: the worker's lifespan failed to start: ConnectionRefusedError: "
                      "database at db:5432 refused the connection")]
    assert (await q.stats()).todos == 1  # nothing was claimed


# -- edges found in review --------------------------------------------------------------------

async def test_waiting_for_a_thread_does_not_count_against_the_job_timeout(
    redis: aioredis.Redis,
):
    q = Queue(redis, "queued", max_attempts=1)

    def steady(ctx: JobContext, payload: Any) -> str:
        time.sleep(0.3)
        return "ok"

    await q.enqueue_many("steady", range(5))  # 1.5 s of work through one thread
    worker = Worker(q, {"steady": steady}, concurrency=5, sync_concurrency=1,
                    job_timeout=1.0, reaper=False)
    await drain(worker, q, 5)
    assert worker.counters["acked"] == 5 and (await q.stats()).dead == 0


async def test_a_stopping_worker_does_not_release_a_def_handler_still_running(
    redis: aioredis.Redis,
):
    q = Queue(redis, "noreleasesync", lease_timeout=30.0)
    started = threading.Event()
    finish = threading.Event()

    def stuck(ctx: JobContext, payload: Any) -> None:
        started.set()
        finish.wait(10)

    job = await q.enqueue("stuck", None)
    worker = Worker(q, {"stuck": stuck}, reaper=False, grace_period=0.0)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            await until(started.is_set)
            worker.stop()
    finish.set()
    # Not handed to another worker while its thread may still run: the lease expires.
    info = await q.job(job)
    assert info is not None and info.state == "in_progress"
    assert await redis.exists(q.keys.lease(job))
    assert not [e for e in logs if e["event"] == "job_released"]


async def test_a_wraps_wrapper_of_an_async_handler_stays_on_the_event_loop(
    redis: aioredis.Redis,
):
    import functools

    q = Queue(redis, "wrapped_async")

    async def handler(ctx: JobContext, payload: Any) -> int:
        return threading.get_ident()

    @functools.wraps(handler)
    def logged(ctx: JobContext, payload: Any) -> Any:
        return handler(ctx, payload)

    job = await q.enqueue("t", None)
    await drain(Worker(q, {"t": logged}, reaper=False), q, 1)
    info = await q.job(job)
    assert info is not None and info.result == threading.get_ident()


async def test_a_middleware_that_suppresses_the_error_acks_the_job_without_a_result(
    redis: aioredis.Redis,
):
    q = Queue(redis, "suppress")

    @asynccontextmanager
    async def swallow(ctx: JobContext) -> AsyncIterator[None]:
        with contextlib.suppress(ValueError):
            yield

    async def handler(ctx: JobContext, payload: Any) -> None:
        raise ValueError("handled by the middleware")

    job = await q.enqueue("t", None)
    await drain(Worker(q, {"t": handler}, reaper=False, middleware=[swallow]), q, 1)
    info = await q.job(job)
    assert info is not None and info.state == "done" and info.result is None
