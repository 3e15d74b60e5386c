"""A batch is written whole or not at all, and a waiter never waits for a job that is
gone; on a real redis-server."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from leaseq import JobNotFound, Queue, Reaper
from leaseq.protocol import wait as _wait
from leaseq.testing import RedisServer

pytestmark = pytest.mark.real_redis


async def test_enqueue_many_at_maxmemory_writes_the_whole_batch_or_nothing():
    """With maxmemory reached in the middle of the batches, each enqueue_many call either
    wrote all its jobs or none (a chunked pipeline used to stop after 256 of 2,000,
    leaving the caller no way to know which generated ids went in)."""
    with RedisServer(extra_args=["--maxmemory-policy", "noeviction"]) as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            q = Queue(client, "big", done_max=None, done_ttl=None)
            await q.prepare()
            info = await client.info("memory")
            await client.config_set("maxmemory", int(info["used_memory"]) + 3_000_000)
            payload = "x" * 1000
            refused = 0
            calls = 0
            while refused == 0 and calls < 50:
                calls += 1
                try:
                    await q.enqueue_many("t", [payload] * 2000)
                except OutOfMemoryError:
                    refused += 1
            assert refused == 1, "the server never reached maxmemory"
            todos = await client.scard(q.keys.todos)
            jobs = len([k async for k in client.scan_iter(match=q.keys.prefix + "job:*",
                                                          count=1000)])
            assert todos == jobs
            assert todos % 2000 == 0 and todos == 2000 * (calls - 1)
        finally:
            await client.aclose()


async def test_wait_for_a_job_acked_and_trimmed_between_polls_raises_not_found(
    real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
):
    """wait() used to check once that a job exists; a job done and forgotten by the
    retention between two later polls was never seen, and wait() waited forever. It now
    notices the job is gone."""
    q = Queue(real_redis, "trimmed", done_max=0)
    job = await q.enqueue("t", 1)
    checked, trimmed = anyio.Event(), anyio.Event()
    original = _wait._check_known

    async def spy(queue: Queue, ids: list[str]) -> None:
        await original(queue, ids)
        if not checked.is_set():
            checked.set()  # the waiter has seen the job exist; it polls again only
            await trimmed.wait()  # once the job was done and trimmed meanwhile

    monkeypatch.setattr(_wait, "_check_known", spy)
    # The existence check runs every FALLBACK seconds; a shorter one keeps the test short.
    monkeypatch.setattr(_wait, "FALLBACK", 0.5)
    async with anyio.create_task_group() as tg:
        async def finish_and_trim() -> None:
            await checked.wait()
            lease = await q.claim()
            assert lease is not None
            await q.ack(lease, "r")
            await Reaper(q).sweep()
            assert await real_redis.exists(q.keys.job(job)) == 0
            trimmed.set()

        tg.start_soon(finish_and_trim)
        with pytest.raises(JobNotFound), anyio.fail_after(30):
            await q.wait(job)
