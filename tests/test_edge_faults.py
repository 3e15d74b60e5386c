"""Faults at the edges: concurrent recovery of lost claims, corrupt stored values, a
refusal in the middle of a sweep, a worker run twice, errors nobody expected."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

from leaseq import Backoff, JobContext, LeaseqError, Queue, Reaper, Worker
from leaseq.testing import RedisServer

from .test_protocol import expire_lease

NO_WAIT = Backoff(base=0.0, jitter=0.0)


async def _lost_claim(q: Queue, n: int) -> list[str]:
    """Claim ``n`` jobs as a call whose reply was lost: the leases exist, nobody has
    them, the queue remembers the call's nonce."""
    leases = await q.claim_many(n)
    q._lost_claims.append(leases[0].token.split("-", 1)[1])
    return [lease.job_id for lease in leases]


async def test_two_tasks_never_recover_the_same_lost_claim(redis: aioredis.Redis):
    q = Queue(redis, "shared")
    await q.enqueue_many("t", list(range(6)))
    lost = await _lost_claim(q, 2)
    got: list[list[str]] = []

    async def claimer() -> None:
        got.append([lease.job_id for lease in await q.claim_many(2)])

    async with anyio.create_task_group() as tg:
        tg.start_soon(claimer)
        tg.start_soon(claimer)
    ids = [job for batch in got for job in batch]
    assert len(ids) == len(set(ids)) == 4  # no lease handed out twice
    assert set(lost) <= set(ids)  # and the lost claim's leases are not left to expire
    assert q.recovered_leases == 2


async def test_a_failing_fresh_claim_keeps_the_recovered_leases(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
):
    """The recovery succeeded, the claim after it was refused (OOM, not a connection
    error): the recovered leases are returned, not dropped with the error."""
    q = Queue(redis, "keep")
    await q.enqueue_many("t", list(range(4)))
    lost = await _lost_claim(q, 2)
    real = q._claim

    async def fresh_fails(n: int, named: Any, nonce: str | None = None, caps: Any = ()) -> Any:
        if nonce is None:
            raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'")
        return await real(n, named, nonce, caps)

    monkeypatch.setattr(q, "_claim", fresh_fails)
    leases = await q.claim_many(4)
    assert sorted(lease.job_id for lease in leases) == sorted(lost)


async def test_a_bury_that_fails_does_not_lose_the_other_leases(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
):
    q = Queue(redis, "bury")
    good = await q.enqueue_many("t", [1, 2])
    bad = await q.enqueue("t", 3)
    await redis.hset(q.keys.job(bad), "payload", b"\xff not json")

    async def settle_fails(*args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("reset")

    monkeypatch.setattr(q, "_settle", settle_fails)
    leases = await q.claim_many(3)
    assert sorted(lease.job_id for lease in leases) == sorted(good)


async def test_a_corrupt_job_does_not_stop_the_sweep(redis: aioredis.Redis):
    """reap.lua once failed halfway on a non-integer `expiries` or a missing `error`,
    and every later sweep failed the same way (nor did promote and trim run)."""
    q = Queue(redis, "sweep", max_attempts=1)
    corrupt, missing_error, plain = await q.enqueue_many("t", [1, 2, 3])
    await q.claim_many(3)
    due = await q.enqueue("t", 4, delay=0.001)
    await redis.hset(q.keys.job(corrupt), "expiries", "x")
    await redis.hset(q.keys.job(missing_error), "failures", 2)
    for job in (corrupt, missing_error, plain):
        await expire_lease(redis, q, job)
    await anyio.sleep(0.01)
    report = await Reaper(q).sweep_report()
    assert (report.dead, report.promoted) == (3, 1)
    assert await redis.scard(q.keys.in_progress) == 0
    assert await redis.sismember(q.keys.todos, due)
    info = await q.job(missing_error)
    assert info is not None and info.dead_reason == (
        "lease expired 1 times, failed 2 times, last error: ")


@pytest.mark.real_redis
async def test_at_maxmemory_the_sweep_still_trims():
    """Promote's first write is refused at maxmemory; trim, which frees memory, runs
    anyway (it used to be skipped with the rest of the sweep)."""
    with RedisServer(extra_args=["--maxmemory-policy", "noeviction"]) as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            q = Queue(client, "full", done_max=0)
            for _ in await q.enqueue_many("t", list(range(20))):
                lease = await q.claim()
                assert lease is not None
                await q.ack(lease)
            await client.config_set("maxmemory", 1)
            with pytest.raises(OutOfMemoryError):
                await Reaper(q).sweep_report()
            assert (await q.stats()).done == 0
        finally:
            await client.config_set("maxmemory", 0)
            await client.aclose()


async def test_stored_settings_beyond_the_bounds_are_ignored(redis: aioredis.Redis):
    """A lease length written behind the queue's back (10**17 ms) would fail every claim
    halfway at SET PX: it is not applied."""
    q = Queue(redis, "bounds")
    await redis.hset(q.keys.settings, mapping={"lease_ms": str(10**17), "done_max": "-1"})
    job = await q.enqueue("t", 1)
    lease = await q.claim()
    assert lease is not None and lease.job_id == job and lease.lease_timeout == 30.0
    assert q.done_max == 100_000


async def test_a_worker_runs_again_after_a_stop(redis: aioredis.Redis):
    """The ack batcher's stop deadline used to outlive the stop: a second run() failed
    every ack."""
    q = Queue(redis, "twice")

    async def echo(ctx: JobContext, payload: Any) -> Any:
        return payload

    worker = Worker(q, {"echo": echo}, reaper=False)
    for round_ in range(2):
        await q.enqueue_many("echo", [round_] * 3)
        with anyio.fail_after(30):
            await worker.run(burst=True, handle_signals=False)
        # As if the next run started long after this stop's clean-up deadline passed.
        worker.served["twice"].acks._deadline = 0.0
    assert worker.counters["acked"] == 6 and worker.counters["lease_lost"] == 0


async def test_an_ack_error_nobody_expected_fails_no_worker(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
):
    """ack_many giving up (its lease keys kept changing) raised LeaseqError out of the
    job runner and stopped the worker; the job is now lost (its lease expires)."""
    q = Queue(redis, "ackerr")

    async def echo(ctx: JobContext, payload: Any) -> Any:
        return payload

    async def gives_up(*args: Any, **kwargs: Any) -> Any:
        raise LeaseqError("ack did not commit after 32 tries")

    monkeypatch.setattr(q, "ack_many", gives_up)
    await q.enqueue_many("echo", [1, 2])
    worker = Worker(q, {"echo": echo}, reaper=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(30):
            while worker.counters["lease_lost"] < 2:
                await anyio.sleep(0.01)
        worker.stop()
    assert worker.counters["lease_lost"] == 2


def test_a_large_backoff_factor_never_overflows():
    backoff = Backoff(base=1.0, factor=1e5, max=600.0, jitter=0.0)
    assert backoff.delay(70) == 600.0 and backoff.delay(1) == 1.0 and backoff.delay(2) == 600.0
