"""Typed tasks: ``@task(queue)`` makes enqueue calls checked against the function's
signature (mypy on an example that must pass and one that must fail), and the runs go
through the queue like any job."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import InvalidInput, JobContext, Queue, TypedTask, Worker, task

HERE = Path(__file__).parent / "typecheck"


def mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(cache), "--config-file", "/dev/null", str(path)],
        capture_output=True, text=True, timeout=300, check=False)


def test_mypy_accepts_calls_that_match_the_signature(tmp_path: Path):
    result = mypy(HERE / "typed_ok.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_refuses_each_call_that_does_not_match_the_signature(tmp_path: Path):
    result = mypy(HERE / "typed_bad.py", tmp_path)
    assert result.returncode == 1
    source = (HERE / "typed_bad.py").read_text().splitlines()
    marked = {i + 1 for i, line in enumerate(source) if "# error:" in line}
    flagged = {int(m.group(1)) for m in re.finditer(r"typed_bad\.py:(\d+): error", result.stdout)}
    assert flagged == marked, result.stdout


def make(redis: aioredis.Redis) -> tuple[Queue, TypedTask[Any, Any]]:
    q = Queue(redis, "typed")

    @task(q, max_attempts=2)
    async def resize(ctx: JobContext, image_id: int, *, width: int) -> dict[str, int]:
        """Scale an image."""
        return {"image": image_id, "width": width, "attempt": ctx.attempt}

    return q, resize


async def test_a_typed_task_is_enqueued_run_and_waited_for(redis: aioredis.Redis):
    q, resize = make(redis)
    assert resize.name == "resize" and resize.__doc__ == "Scale an image."
    one = await resize.enqueue(7, width=128)
    many = await resize.enqueue_many([resize.call(i, width=64) for i in range(3)])
    info = await q.job(one.job_id)
    assert info is not None and info.task == "resize"
    assert info.payload == {"args": [7], "kwargs": {"width": 128}}
    worker = Worker(q, {resize.name: resize}, reaper=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(30):
            assert await one.wait() == {"image": 7, "width": 128, "attempt": 1}
            assert [await r.wait() for r in many] == [
                {"image": i, "width": 64, "attempt": 1} for i in range(3)]
            assert await resize.map([resize.call(9, width=1)], timeout=30) == [
                {"image": 9, "width": 1, "attempt": 1}]
        worker.stop()
    assert worker.served["typed"].tasks["resize"].max_attempts == 2


async def test_arguments_the_serializer_cannot_encode_are_refused_before_any_write(
    redis: aioredis.Redis,
):
    q, resize = make(redis)
    with pytest.raises(InvalidInput, match="arguments of task 'resize' cannot be encoded"):
        await resize.enqueue(object(), width=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="cannot be encoded"):
        await resize.enqueue_many([resize.call(1, width=1), resize.call({1, 2}, width=1)])  # type: ignore[arg-type]
    assert (await q.stats()).todos == 0


async def test_a_typed_task_runs_inline_in_a_unit_test_with_a_context(redis: aioredis.Redis):
    q, resize = make(redis)
    await resize.enqueue(3, width=10)
    lease = await q.claim()
    assert lease is not None
    ctx = JobContext(q, lambda: lease, {"job_id": lease.job_id})
    assert await resize(ctx, 3, width=10) == {"image": 3, "width": 10, "attempt": 1}


def test_a_typed_task_is_mapped_under_its_own_name_and_is_async():
    q, resize = make(aioredis.Redis())
    with pytest.raises(InvalidInput, match=re.escape("map it as {'resize': ...}")):
        Worker(q, {"scale": resize})

    def sync(ctx: JobContext) -> None:
        return None

    with pytest.raises(InvalidInput, match="a typed task is an async def function"):
        task(q)(sync)  # type: ignore[arg-type]


async def test_a_handler_is_unit_tested_inline_with_the_context_a_worker_gives():
    import fakeredis

    from leaseq.testing import job_context

    fake = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)))
    q, resize = make(fake)
    ctx = job_context(q, task="resize", attempt=2, state={"pool": "db"})
    assert await resize(ctx, 5, width=50) == {"image": 5, "width": 50, "attempt": 2}
    assert ctx.state == {"pool": "db"} and ctx.queue is q and ctx.job_id == "test-job"
    # A whole worker runs inline too, on fakeredis, in burst mode.
    run = await resize.enqueue(6, width=60)
    worker = Worker(q, {resize.name: resize}, reaper=False)
    await worker.run(burst=True, handle_signals=False)
    assert await run.wait(timeout=5) == {"image": 6, "width": 60, "attempt": 1}
    await fake.aclose()
