"""Dependencies (``enqueue(after=...)``, docs/protocol.md "Dependencies"): a job waits in
``blocked`` until the jobs it was enqueued after are done, is released by the last one's
ack in the same step, and ends dead (or runs anyway, ``after_policy="always"``) when one
of them fails. On every Redis lane, plus the input checks, a lost reply of each new call,
the script flushed between the ack's read and its write, and a map-reduce run by a
worker."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import InvalidInput, JobContext, JobDead, Queue, Reaper, Worker
from leaseq.protocol import scripts
from leaseq.protocol.wire import text
from leaseq.testing import RedisServer, check_invariants

from .test_lost_replies import direct, lose_reply, proxied, sha

__all__ = ["direct"]  # a fixture, imported to be used here


async def claim_task(q: Queue, task: str) -> Any:
    """Claim every waiting job; return the leases of ``task`` and release the rest."""
    leases = await q.claim_many(100)
    mine = [lease for lease in leases if lease.task == task]
    for lease in leases:
        if lease.task != task:
            await q.release(lease)
    return mine


async def state_of(q: Queue, job_id: str) -> str | None:
    info = await q.job(job_id)
    return None if info is None else info.state


# -- the life of a job enqueued after others ----------------------------------------------------

async def test_a_job_waits_until_every_job_it_was_enqueued_after_is_done(
        redis: aioredis.Redis):
    q = Queue(redis, "dep-wait")
    maps = await q.enqueue_many("map", [1, 2, 3])
    reduce = await q.enqueue("reduce", None, after=maps)

    info = await q.job(reduce)
    assert info is not None
    assert (info.state, info.after, info.waiting_for) == ("blocked", tuple(maps), 3)
    stats = await q.stats()
    assert (stats.todos, stats.blocked) == (3, 1)

    leases = await q.claim_many(10)
    assert sorted(lease.job_id for lease in leases) == sorted(maps)  # not the reduce
    for lease in leases[:2]:
        await q.ack(lease, lease.payload * 10)
    info = await q.job(reduce)
    assert info is not None and (info.state, info.waiting_for) == ("blocked", 1)
    assert await q.claim() is None

    await q.ack(leases[2], 0)  # the last one: the reduce is claimable in the same step
    assert await state_of(q, reduce) == "todo"
    lease = await q.claim()
    assert lease is not None and lease.job_id == reduce
    await q.ack(lease, "reduced")
    assert await q.wait(reduce, timeout=5) == "reduced"
    stats = await q.stats()
    assert (stats.blocked, stats.done) == (0, 4)
    report = await check_invariants(redis, q.name, [*maps, reduce])
    assert not report.problems(), report


async def test_a_job_after_done_jobs_is_claimable_at_once(redis: aioredis.Redis):
    q = Queue(redis, "dep-done")
    first = await q.enqueue("map", 1)
    lease = await q.claim()
    assert lease is not None
    await q.ack(lease, 1)
    then = await q.enqueue("reduce", None, after=[first])
    info = await q.job(then)
    assert info is not None and (info.state, info.after) == ("todo", (first,))


async def test_a_failed_dependency_ends_the_job_dead_and_its_own_dependents_follow(
        redis: aioredis.Redis):
    q = Queue(redis, "dep-fail")
    a = await q.enqueue("map", 1)
    b = await q.enqueue("mid", 2, after=[a])
    c = await q.enqueue("last", 3, after=[b])
    anyway = await q.enqueue("cleanup", 4, after=[a], after_policy="always")

    lease = await q.claim()
    assert lease is not None and lease.job_id == a
    await q.bury(lease, "cannot")
    # b goes to todo marked to end dead; anyone's claim (or the reaper) ends it there.
    assert await state_of(q, anyway) == "todo"
    await Reaper(q).sweep_report()
    with pytest.raises(JobDead, match=f"dependency {a} ended dead"):
        await q.wait(b, timeout=5)
    # Its own dependent ends with it (at the reaper's next pass, or a claim).
    assert await state_of(q, c) in ("todo", "dead")
    leases = await q.claim_many(10)
    assert [lease.job_id for lease in leases] == [anyway]  # the cleanup still runs
    info = await q.job(c)
    assert info is not None and info.state == "dead"
    assert info.dead_reason == f"dependency {b} ended dead"
    stats = await q.stats()
    assert (stats.dead, stats.blocked, stats.expired) == (3, 0, 0)  # not "expired"


async def test_a_job_enqueued_after_a_dead_or_cancelled_job_is_dead_at_once(
        redis: aioredis.Redis):
    q = Queue(redis, "dep-late")
    gone = await q.enqueue("map", 1)
    assert await q.cancel(gone) == "cancelled"
    doomed = await q.enqueue("reduce", None, after=[gone])
    info = await q.job(doomed)
    assert info is not None
    assert (info.state, info.dead_reason) == ("dead", f"dependency {gone} ended cancelled")
    runs = await q.enqueue("reduce", None, after=[gone], after_policy="always")
    assert await state_of(q, runs) == "todo"


async def test_cancelling_a_blocked_job_or_its_dependency(redis: aioredis.Redis):
    q = Queue(redis, "dep-cancel")
    a = await q.enqueue("map", 1)
    b = await q.enqueue("reduce", None, after=[a])
    c = await q.enqueue("reduce", None, after=[a])
    assert await q.cancel(b, reason="not needed") == "cancelled"
    assert await state_of(q, b) == "cancelled"
    assert await q.cancel(a) == "cancelled"
    lease = await q.claim()
    assert lease is None  # c ended dead at that claim: it never runs
    info = await q.job(c)
    assert info is not None and info.dead_reason == f"dependency {a} ended cancelled"
    assert (await q.stats()).cancelled == 2


async def test_a_blocked_job_is_deduplicated_by_id_and_never_claimed(redis: aioredis.Redis):
    q = Queue(redis, "dep-dedup")
    a = await q.enqueue("map", 1)
    b = await q.enqueue("reduce", 1, job_id="reduce-1", after=[a])
    assert await q.enqueue("reduce", 2, job_id="reduce-1", after=[a]) == b
    assert [lease.job_id for lease in await q.claim_many(10)] == [a]
    assert (await q.job(b)).waiting_for == 1  # type: ignore[union-attr]


async def test_fifo_keeps_priority_and_key_of_a_released_job(redis: aioredis.Redis):
    q = Queue(redis, "dep-fifo", ordering="fifo")
    a = await q.enqueue("map", 1)
    low = await q.enqueue("t", "low", priority=-5)
    high = await q.enqueue("t", "high", after=[a], priority=5)
    lease = await q.claim()
    assert lease is not None and lease.job_id == a
    await q.ack(lease, None)
    order = [lease.job_id for lease in await q.claim_many(10)]
    assert order == [high, low]


# -- input --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"after": "abc"}, "a list of job ids"),
    ({"after": ["a"], "after_policy": "never"}, "after_policy"),
    ({"after": ["a"], "delay": 5}, "delay"),
    ({"after": ["a"], "expires_in": 5}, "start deadline"),
    ({"after": ["bad\nid"]}, "job_id"),
    ({"after": ["self"], "job_id": "self"}, "after itself"),
], ids=["string", "policy", "delay", "deadline", "control-char", "itself"])
async def test_bad_dependencies_are_refused_before_anything_is_written(
        redis: aioredis.Redis, options: dict[str, Any], message: str):
    q = Queue(redis, "dep-input")
    with pytest.raises(InvalidInput, match=message):
        await q.enqueue("t", None, **options)
    assert await redis.keys("leaseq:{dep-input}:*") == []


async def test_an_unknown_or_other_queues_job_is_refused_and_nothing_is_written(
        redis: aioredis.Redis):
    other = Queue(redis, "dep-other")
    theirs = await other.enqueue("t", None)
    q = Queue(redis, "dep-mine")
    mine = await q.enqueue("t", None)
    before = sorted(await redis.keys("leaseq:{dep-mine}:*"))
    for after in ([theirs], [mine, "never-enqueued"]):
        with pytest.raises(InvalidInput, match="is not a job of queue 'dep-mine'"):
            await q.enqueue_many("t", [1, 2], after=after)
    assert sorted(await redis.keys("leaseq:{dep-mine}:*")) == before
    assert (await q.stats()).todos == 1


# -- a map and its reduce, run by a worker ------------------------------------------------------

async def test_a_map_of_a_thousand_jobs_and_its_reduce_run_with_no_producer_waiting(
        redis: aioredis.Redis):
    q = Queue(redis, "dep-mapreduce")
    maps = await q.enqueue_many("square", list(range(1000)))
    reduce = await q.enqueue("sum", maps, after=maps)
    seen: list[int] = []

    async def square(ctx: JobContext, n: int) -> int:
        return n * n

    async def total(ctx: JobContext, ids: list[str]) -> int:
        seen.append((await q.stats()).done)  # every map job is done when it starts
        infos = await q.jobs(ids)
        return sum(info.result for info in infos if info is not None)

    worker = Worker(q, {"square": square, "sum": total}, concurrency=20, reaper=False)
    with anyio.fail_after(60):
        await worker.run(burst=True, handle_signals=False)
    assert seen == [1000]
    assert await q.wait(reduce, timeout=5) == sum(n * n for n in range(1000))


# -- faults: lost replies and an unloaded script ------------------------------------------------

@pytest.mark.real_redis
async def test_an_enqueue_after_whose_reply_was_lost_waits_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    a = await Queue(direct, "dep-lost").enqueue("map", 1)
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "dep-lost")
        b = await lose_reply(proxy, sha(scripts.ENQUEUE),
                             lambda: q.enqueue("reduce", None, job_id="r", after=[a]))
    q = Queue(direct, "dep-lost")
    assert await direct.zrange(q.keys.dependents, 0, -1) == [f"{a}\x1f{b}".encode()]
    info = await q.job(b)
    assert info is not None and (info.state, info.waiting_for) == ("blocked", 1)


@pytest.mark.real_redis
async def test_an_ack_whose_reply_was_lost_releases_its_dependents_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    setup = Queue(direct, "dep-ack")
    a, b = await setup.enqueue_many("map", [1, 2])
    after_a = await setup.enqueue("reduce", None, after=[a])
    after_both = await setup.enqueue("reduce", None, after=[a, b])
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "dep-ack")
        leases = {lease.job_id: lease for lease in await q.claim_many(2)}
        await lose_reply(proxy, b"EXEC", lambda: q.ack(leases[a], None))
    info = await setup.job(after_both)
    assert info is not None and (info.state, info.waiting_for) == ("blocked", 1)
    assert await state_of(setup, after_a) == "todo"
    report = await check_invariants(direct, "dep-ack", [a, b, after_a, after_both])
    assert report.misplaced == 0


@pytest.mark.real_redis
async def test_an_ack_finding_the_script_unloaded_still_releases_its_dependents(
        real_redis: aioredis.Redis):
    q = Queue(real_redis, "dep-noscript")
    a = await q.enqueue("map", 1)
    b = await q.enqueue("reduce", None, after=[a])
    lease = await q.claim()
    assert lease is not None
    await real_redis.script_flush()  # the MULTI's EVALSHA answers NOSCRIPT
    await q.ack(lease, None)
    assert await state_of(q, b) == "todo"
    assert text(await real_redis.hget(q.keys.job(a), "settled_by")) == "ack"


async def test_ids_with_spaces_are_kept_whole(redis: aioredis.Redis):
    q = Queue(redis, "dep-spaces")
    a = await q.enqueue("map", 1, job_id="order 42 / step 1")
    b = await q.enqueue("reduce", None, after=[a, a])  # a duplicate counts once
    info = await q.job(b)
    assert info is not None and info.after == ("order 42 / step 1",)
    assert (await q.stats()).total == 2


async def test_a_job_may_wait_for_ten_thousand_and_not_one_more(redis: aioredis.Redis):
    q = Queue(redis, "dep-many")
    maps = await q.enqueue_many("map", [None] * 10_000)
    reduce = await q.enqueue("reduce", None, after=maps)
    info = await q.job(reduce)
    assert info is not None and (info.state, info.waiting_for) == ("blocked", 10_000)
    assert info.after == tuple(maps)
    with pytest.raises(InvalidInput, match="at most 10000"):
        await q.enqueue("reduce", None, after=[*maps, reduce])


async def test_a_key_emptied_and_refilled_in_one_claim_stays_in_the_round_robin(
        redis: aioredis.Redis):
    """On a fifo queue, one claim takes key x's last job and, in the same step, ends a
    job whose dependent then waits under x: x must be back in the round-robin (a key
    the claim had put in it earlier in the call was once taken for still there, and its
    job waited with no key to serve it)."""
    q = Queue(redis, "refill", ordering="fifo")
    p = await q.enqueue("t", None)
    d = await q.enqueue("t", None, key="y", after=[p])
    e = await q.enqueue("t", None, key="x", after=[d], after_policy="always")
    await q.cancel(p)  # d is doomed: the next claim that picks it ends it dead
    a = await q.enqueue("t", None, key="x", delay=0.01)
    await anyio.sleep(0.05)  # a is due: the claim promotes it, putting x in the rotation
    got = [lease.job_id for lease in await q.claim_many(2)]
    got += [lease.job_id for lease in await q.claim_many(5)]
    assert got == [a, e]
    assert (await q.job(d)).state == "dead"  # type: ignore[union-attr]
    assert (await q.stats()).todos == 0 and await redis.zcard(q.keys.waiting) == 0
