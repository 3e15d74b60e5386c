"""A task's own attempt limit is the one stored with its jobs, so every reader agrees."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import Backoff, JobContext, JobDead, Queue, Reaper, Task, Worker

NO_WAIT = Backoff(base=0.0, jitter=0.0)


async def test_a_task_limit_is_stored_and_reported_with_the_job(redis: aioredis.Redis):
    """Task(max_attempts=2) on a queue whose default is 5: the job is dead after 2
    attempts and inspect (Queue.job), the handler's context and the dead reason all say
    2, not 5."""
    q = Queue(redis, "limits", max_attempts=5)
    seen: list[int] = []

    async def boom(ctx: JobContext, payload: Any) -> None:
        seen.append(ctx.max_attempts)
        raise ValueError("no")

    job = await q.enqueue("boom", None)
    worker = Worker(q, {"boom": Task(boom, max_attempts=2)}, reaper=False, backoff=NO_WAIT)
    with anyio.fail_after(30):
        await worker.run(burst=True, handle_signals=False)
    with pytest.raises(JobDead, match="failed 2 times"):
        await q.wait(job, timeout=5)
    info = await q.job(job)
    assert info is not None
    assert (info.attempts, info.max_attempts) == (2, 2)
    assert seen == [2, 2]


async def test_a_task_limit_also_bounds_lease_expiries(redis: aioredis.Redis):
    """The reaper reads the stored limit: a job of a Task(max_attempts=1) whose only lease
    expires goes dead at once instead of being retried up to the queue's default."""
    q = Queue(redis, "expiring", max_attempts=5, lease_timeout=60)
    job = await q.enqueue("t", None)
    (lease,) = await q.claim_many(1, max_attempts={"t": 1})
    assert lease.max_attempts == 1
    await redis.delete(q.keys.lease(job))  # what the server does when the lease runs out
    await Reaper(q).sweep()
    info = await q.job(job)
    assert info is not None
    assert (info.state, info.max_attempts, info.dead_reason) == (
        "dead", 1, "lease expired 1 times")


async def test_a_higher_task_limit_does_not_raise_the_jobs_own(redis: aioredis.Redis):
    q = Queue(redis, "higher", max_attempts=2)
    job = await q.enqueue("t", None)
    (lease,) = await q.claim_many(1, max_attempts={"t": 9})
    info = await q.job(job)
    assert lease.max_attempts == 2 and info is not None and info.max_attempts == 2
