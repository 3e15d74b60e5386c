"""Live workers: each running worker lists itself in its queues; one that stops leaves
the list, one that dies drops out when its entry expires."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import redis.asyncio as aioredis

from leaseq import JobContext, Queue, Worker, __version__
from leaseq.testing import RedisServer, WorkerProcess

from .conftest import wait_for


async def test_a_running_worker_is_listed_with_what_it_is_doing(redis: aioredis.Redis):
    q = Queue(redis, "present")
    other = Queue(redis, "also")
    started = anyio.Event()
    finish = anyio.Event()

    async def hold(ctx: JobContext, payload: Any) -> None:
        started.set()
        await finish.wait()

    await q.enqueue("hold", None)
    worker = Worker({q: {"hold": hold}, other: {"hold": hold}}, concurrency=4,
                    reaper=False, presence_interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(10):
            await started.wait()

        async def busy() -> bool:
            listed = await q.workers()
            return bool(listed) and listed[0].in_flight == 1

        await wait_for(busy)
        (info,) = await q.workers()
        assert info.queues == ("present", "also") and info.concurrency == 4
        assert info.version == __version__ and info.pid > 0 and info.host
        assert [w.id for w in await other.workers()] == [info.id]
        finish.set()
        worker.stop()
    assert await q.workers() == []  # a worker that stops removes itself


async def test_a_sigkilled_worker_drops_out_of_the_list(redis_server: RedisServer):
    """No goodbye from a killed process: its entry expires (five presence intervals, a
    second here)."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        q = Queue(client, "killed")
        proc = WorkerProcess(redis_server.url, "tests.helpers.tasks:quick_presence", "killed",
                             record=False)
        proc.start()
        try:
            await wait_for(lambda: _count(q, 1), timeout=30)
            proc.send(signal.SIGKILL)
            proc.wait(timeout=10)
            await wait_for(lambda: _count(q, 0), timeout=30)
        finally:
            proc.kill()
    finally:
        await client.aclose()


async def _count(q: Queue, n: int) -> bool:
    return len(await q.workers()) == n
