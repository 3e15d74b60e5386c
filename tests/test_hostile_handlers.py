"""A handler may do anything; the worker survives it and records why the job failed.

Each test runs a real worker over jobs whose handler misbehaves in one way, and checks
that the worker goes on (it drains every other job) and that the misbehaving job ends as
a counted failure (``dead`` after its attempts) with a reason that could be stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import Backoff, JobContext, JobDead, Queue, Worker

NO_WAIT = Backoff(base=0.0, jitter=0.0)


class Unprintable(Exception):
    """An exception whose message cannot be made."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


class Odd(BaseException):
    """A BaseException that is neither an Exception nor a cancellation."""


async def surrogate_message(ctx: JobContext, payload: Any) -> None:
    # A file name decoded with surrogateescape, as os.listdir gives for non-UTF-8 bytes.
    raise FileNotFoundError(b"/tmp/caf\xe9".decode("utf-8", "surrogateescape"))


async def unprintable(ctx: JobContext, payload: Any) -> None:
    raise Unprintable()


async def leaked_cancel(ctx: JobContext, payload: Any) -> None:
    # Awaiting a helper task that someone cancelled: CancelledError comes out of the
    # handler although nobody cancelled this job.
    helper = asyncio.ensure_future(asyncio.sleep(10))
    helper.cancel()
    await helper


async def odd_base_exception(ctx: JobContext, payload: Any) -> None:
    raise Odd("odd")


async def keyboard_interrupt(ctx: JobContext, payload: Any) -> None:
    raise KeyboardInterrupt


async def system_exit(ctx: JobContext, payload: Any) -> None:
    raise SystemExit(3)


async def fine(ctx: JobContext, payload: Any) -> str:
    return "ok"


HOSTILE = {
    "surrogate_message": (surrogate_message, "FileNotFoundError: /tmp/caf\\udce9"),
    "unprintable": (unprintable, "Unprintable: <message unavailable: __str__ raised"),
    "leaked_cancel": (leaked_cancel,
                      "raised CancelledError although the job was not cancelled"),
    "odd_base_exception": (odd_base_exception, "Odd: odd"),
    "keyboard_interrupt": (keyboard_interrupt, "KeyboardInterrupt"),
    "system_exit": (system_exit, "SystemExit: 3"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_a_hostile_handler_fails_its_job_and_the_worker_goes_on(
    redis: aioredis.Redis, name: str
):
    """The hostile job is a counted failure on every attempt and ends dead with a stored,
    readable reason; the good jobs queued with it are all done; run() returns normally."""
    handler, reason = HOSTILE[name]
    q = Queue(redis, "hostile", max_attempts=2)
    bad = await q.enqueue(name, None)
    good = await q.enqueue_many("fine", [None] * 10)
    worker = Worker(q, {name: handler, "fine": fine}, concurrency=3, reaper=False,
                    backoff=NO_WAIT)
    with anyio.fail_after(30):
        await worker.run(burst=True, handle_signals=False)
    assert [await q.wait(j, timeout=5) for j in good] == ["ok"] * 10
    with pytest.raises(JobDead) as dead:
        await q.wait(bad, timeout=5)
    assert reason in dead.value.reason
    info = await q.job(bad)
    assert info is not None
    assert (info.state, info.attempts, info.failures) == ("dead", 2, 2)
    assert worker.counters["failed"] == 1 and worker.counters["dead"] == 1
    assert worker.counters["released"] == 0


async def test_a_job_cancelled_by_its_timeout_is_still_a_timeout(redis: aioredis.Redis):
    """Telling a leaked CancelledError from a real one must not turn the job's own
    timeout (a real cancellation of the handler) into anything else."""
    q = Queue(redis, "timeouts", max_attempts=1)

    async def forever(ctx: JobContext, payload: Any) -> None:
        await anyio.sleep(60)

    job = await q.enqueue("forever", None)
    worker = Worker(q, {"forever": forever}, reaper=False, job_timeout=0.05)
    with anyio.fail_after(30):
        await worker.run(burst=True, handle_signals=False)
    with pytest.raises(JobDead, match=r"timed out after 0\.05 s"):
        await q.wait(job, timeout=5)


async def test_stopping_the_worker_still_releases_a_running_job(redis: aioredis.Redis):
    """A shutdown past the grace period cancels the handler for real: the job is
    released (not failed), so the attempt is not counted."""
    q = Queue(redis, "stopping")
    started = anyio.Event()

    async def slow(ctx: JobContext, payload: Any) -> None:
        started.set()
        await anyio.sleep(60)

    job = await q.enqueue("slow", None)
    worker = Worker(q, {"slow": slow}, reaper=False, grace_period=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(10):
            await started.wait()
        worker.stop()
    info = await q.job(job)
    assert info is not None
    assert (info.state, info.attempts, info.failures) == ("todo", 0, 0)
    assert worker.counters["released"] == 1


async def test_fail_stores_error_text_with_lone_surrogates(redis: aioredis.Redis):
    """Queue.fail takes any text: what UTF-8 cannot encode is escaped, not refused."""
    q = Queue(redis, "errors")
    job = await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    assert await q.fail(lease, "bad name \udce9") == "todo"
    info = await q.job(job)
    assert info is not None and info.error == "bad name \\udce9"
