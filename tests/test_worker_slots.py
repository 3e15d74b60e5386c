"""A worker's slots: the default concurrency, and a slot handed to the next claim while
the ack of the job that held it is on its way (at most ``concurrency`` acks wait so)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from leaseq import Backoff, JobContext, Queue, Worker
from leaseq.runtime.worker import DEFAULT_CONCURRENCY
from leaseq.testing import RedisServer

pytestmark = pytest.mark.real_redis


async def job(ctx: JobContext, payload: Any) -> None:
    return None


def sync_job(ctx: JobContext, payload: Any) -> None:
    return None


async def test_the_default_concurrency_follows_the_handlers(
    real_redis: aioredis.Redis, redis_server: RedisServer,
):
    q = Queue(real_redis, "defaults")
    # Room in the pool for 100 and the worker's own connections: the default is 100.
    roomy = Queue(aioredis.Redis.from_url(redis_server.url, max_connections=500), "d")
    try:
        assert Worker(roomy, {"a": job}).concurrency == DEFAULT_CONCURRENCY == 100
        assert Worker(roomy, {"a": job, "s": sync_job}).concurrency == DEFAULT_CONCURRENCY
    finally:
        await roomy.redis.aclose()
    # Only threads run: more slots than threads would hold leases idle.
    assert Worker(q, {"s": sync_job}).concurrency == 10
    assert Worker(q, {"s": sync_job}, sync_concurrency=4).concurrency == 4
    assert Worker(q, {"s": sync_job}, concurrency=7).concurrency == 7


async def test_the_default_concurrency_fits_a_pool_that_raises_without_a_warning(
    redis_server: RedisServer,
):
    url = redis_server.url
    default = aioredis.Redis.from_url(url)  # redis-py's pool: raises at 100 connections
    roomy = aioredis.Redis.from_url(url, max_connections=500)
    tiny = aioredis.Redis.from_url(url, max_connections=12)
    waiting = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        url, max_connections=20))
    handlers = {"a": job}
    try:
        with capture_logs() as logs:
            assert Worker(Queue(default, "q"), handlers).concurrency == 79
            assert Worker(Queue(roomy, "q"), handlers).concurrency == 100
            assert Worker(Queue(waiting, "q"), handlers).concurrency == 100
            # Several queues: the smallest pool decides.
            assert Worker({Queue(roomy, "a"): handlers,
                           Queue(default, "b"): handlers}).concurrency == 79
            # A concurrency given is kept; a pool that waits is not warned about.
            assert Worker(Queue(waiting, "q"), handlers, concurrency=300).concurrency == 300
        assert logs == []
        with capture_logs() as logs:
            assert Worker(Queue(tiny, "q"), handlers).concurrency == 10
        assert [e["event"] for e in logs] == ["connection_pool_small"]
    finally:
        for client in (default, roomy, tiny, waiting):
            await client.aclose()


async def test_a_default_worker_on_a_default_client_has_a_connection_for_every_handler(
    redis_server: RedisServer,
):
    """Every handler holds one of the client's connections at once (a blocking call),
    while the worker claims, acks and renews leases on the same pool."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.flushall()
        q = Queue(client, "full", lease_timeout=2.0)
        target = 79  # what the default is on this pool (the test above)
        holding = peak = 0

        async def hold(ctx: JobContext, payload: Any) -> str:
            nonlocal holding, peak
            holding += 1
            peak = max(peak, holding)
            try:
                # Each call takes a connection of its own: wait, calling, until every slot
                # holds one at once; then one more call per job.
                while peak < target:
                    await ctx.queue.redis.blpop(["leaseq-test-nothing"], timeout=0.05)
                await ctx.queue.redis.blpop(["leaseq-test-nothing"], timeout=0.1)
            finally:
                holding -= 1
            return "held"

        worker = Worker(q, {"hold": hold}, reaper=False)
        assert worker.concurrency == target
        ids = await q.enqueue_many("hold", list(range(3 * worker.concurrency)))
        with anyio.fail_after(60):
            await worker.run(burst=True, handle_signals=False)
        assert peak == worker.concurrency
        assert worker.counters["acked"] == len(ids)
        assert worker.counters["failed"] == 0
        assert [await q.wait(i, timeout=1) for i in ids] == ["held"] * len(ids)
    finally:
        await client.aclose()


def hold_acks(q: Queue) -> tuple[anyio.Event, anyio.Event]:
    """Make ``q``'s acks wait for the first event; the second is set once one waits."""
    gate, acking = anyio.Event(), anyio.Event()
    original = q.ack_many

    async def held_ack(items: Any) -> Any:
        acking.set()
        await gate.wait()
        return await original(items)

    q.ack_many = held_ack  # type: ignore[method-assign]
    return gate, acking


async def test_the_next_job_starts_while_the_last_ack_is_on_its_way(
        real_redis: aioredis.Redis):
    q = Queue(real_redis, "overlap")
    await q.enqueue_many("t", list(range(3)))
    started: list[int] = []
    gate, acking = hold_acks(q)

    async def handler(ctx: JobContext, payload: Any) -> None:
        started.append(payload)

    worker = Worker(q, {"t": handler}, concurrency=1, reaper=False)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(burst=True, handle_signals=False))
            await acking.wait()
            # The first ack is held: its slot went on to a second job, whose handler
            # ran. A third waits, since one held ack per slot is the bound.
            while len(started) < 2:
                await anyio.sleep(0.01)
            await anyio.sleep(0.2)
            assert len(started) == 2
            assert (await q.stats()).in_progress == 2
            gate.set()
    stats = await q.stats()
    assert sorted(started) == [0, 1, 2]
    assert (stats.done, stats.in_progress, stats.todos) == (3, 0, 0)


async def test_a_failed_job_keeps_its_slot_until_its_failure_is_stored(
        real_redis: aioredis.Redis):
    q = Queue(real_redis, "fails", max_attempts=2)
    await q.enqueue("t", None)
    runs = 0

    async def flaky(ctx: JobContext, payload: Any) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("first attempt fails")

    worker = Worker(q, {"t": flaky}, concurrency=1, reaper=False, backoff=Backoff(base=0))
    with anyio.fail_after(30):
        await worker.run(burst=True, handle_signals=False)
    # A burst run waits for the retry it caused: the failure held the slot until stored.
    assert runs == 2
    assert (await q.stats()).done == 1


async def test_a_burst_run_waits_for_the_ack_that_releases_a_dependent(
        real_redis: aioredis.Redis):
    q = Queue(real_redis, "after")
    first = await q.enqueue("t", "first")
    await q.enqueue("t", "then", after=[first])
    gate, _ = hold_acks(q)
    ran: list[str] = []

    async def handler(ctx: JobContext, payload: str) -> None:
        ran.append(payload)

    worker = Worker(q, {"t": handler}, concurrency=1, reaper=False)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(burst=True, handle_signals=False))
            while not ran:
                await anyio.sleep(0.01)
            # Nothing waits in todos while the ack is held: the run must not end here.
            await anyio.sleep(0.2)
            gate.set()
    assert ran == ["first", "then"]


@pytest.mark.parametrize(("concurrency", "largest"), [(10, 10), (30, 16), (50, 20),
                                                      (120, 48), (600, 100)])
async def test_a_claim_takes_at_most_two_fifths_of_the_slots(
        real_redis: aioredis.Redis, concurrency: int, largest: int):
    """With every slot in one claim the worker would run that claim's jobs and then wait
    for the next claim with nothing to run: a claim asks for two fifths of the slots at
    most (16 at least, 100 at most), and the queue still drains."""
    q = Queue(real_redis, f"fifths-{concurrency}")
    await q.enqueue_many("t", [None] * 400)
    worker = Worker(q, {"t": job}, concurrency=concurrency, reaper=False)
    asked: list[int] = []
    claim = worker._claims.claim

    async def counted(free: int) -> Any:
        asked.append(free)
        return await claim(free)

    worker._claims.claim = counted  # type: ignore[method-assign]
    with anyio.fail_after(30):
        await worker.run(burst=True, handle_signals=False)
    assert worker.counters["acked"] == 400
    assert max(asked) == largest, asked
