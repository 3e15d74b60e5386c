"""The lease protocol, on fakeredis and on a real redis-server (the ``redis`` fixture)."""

from __future__ import annotations

import dataclasses
import json

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from leaseq import JobDead, JobNotFound, LeaseLost, Queue, Reaper, WaitTimeout
from leaseq.protocol.keys import QueueKeys
from leaseq.runtime.reaper import EVENTS_KEPT

from .conftest import wait_for


async def sets_of(r: aioredis.Redis, name: str) -> dict[str, set[str]]:
    k = QueueKeys(name)
    out = {}
    for label, key in (("todo", k.todos), ("in_progress", k.in_progress), ("done", k.done),
                       ("dead", k.dead)):
        out[label] = {m.decode() for m in await r.smembers(key)}
    out["delayed"] = {m.decode() for m in await r.zrange(k.delayed, 0, -1)}
    return out


async def assert_each_id_in_one_place(r: aioredis.Redis, name: str, ids: list[str]) -> None:
    places = await sets_of(r, name)
    for job_id in ids:
        holders = [label for label, members in places.items() if job_id in members]
        assert len(holders) == 1, (job_id, holders)


async def server_ms(r: aioredis.Redis) -> int:
    seconds, micros = await r.time()
    return seconds * 1000 + micros // 1000


async def expire_lease(r: aioredis.Redis, q: Queue, job_id: str) -> None:
    """Make a lease expire now (what the server does when its time runs out)."""
    assert await r.pexpire(q.keys.lease(job_id), 1)
    await wait_for(lambda: _gone(r, q.keys.lease(job_id)))


async def _gone(r: aioredis.Redis, key: str) -> bool:
    return not await r.exists(key)


async def test_enqueue_claim_ack_moves_the_id_todos_in_progress_done(redis: aioredis.Redis):
    q = Queue(redis, "emails", lease_timeout=30.0)
    job_id = await q.enqueue("send_email", {"to": "a@b.c"})
    assert (await sets_of(redis, "emails"))["todo"] == {job_id}

    lease = await q.claim()
    assert lease is not None
    assert (lease.job_id, lease.task, lease.payload, lease.attempt) == (
        job_id, "send_email", {"to": "a@b.c"}, 1)
    assert (await sets_of(redis, "emails"))["in_progress"] == {job_id}
    assert await redis.get(q.keys.lease(job_id)) == lease.token.encode()
    assert 0 < await redis.pttl(q.keys.lease(job_id)) <= 30_000
    assert lease.deadline - lease.server_now() == pytest.approx(30.0, abs=1.0)

    await q.ack(lease, result={"sent": True})
    places = await sets_of(redis, "emails")
    assert places["done"] == {job_id} and not places["in_progress"]
    assert not await redis.exists(q.keys.lease(job_id))
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.result, info.attempts) == ("done", {"sent": True}, 1)
    assert await q.claim() is None


async def test_ack_many_stores_each_result_even_with_the_script_cache_flushed(
    redis: aioredis.Redis,
):
    """A batch's results are stored by one script in the ack's MULTI, sent with its
    source: a server that lost its scripts (a restart, SCRIPT FLUSH) still stores each
    job's own result and settled token in the same EXEC."""
    q = Queue(redis, "results")
    await q.enqueue_many("t", [{"n": n} for n in range(5)])
    leases = await q.claim_many(5)
    assert len(leases) == 5
    await redis.script_flush()
    acked = await q.ack_many([(lease, {"double": 2 * lease.payload["n"]}) for lease in leases])
    assert acked == [True] * 5
    for lease in leases:
        info = await q.job(lease.job_id)
        assert info is not None
        assert (info.state, info.result) == ("done", {"double": 2 * lease.payload["n"]})
        settled = await redis.hmget(q.keys.job(lease.job_id), ["settled", "settled_by"])
        assert settled == [lease.token.encode(), b"ack"]


async def test_enqueue_with_a_known_job_id_is_a_no_op_in_every_state(redis: aioredis.Redis):
    q = Queue(redis, "urls")
    assert await q.enqueue("fetch", {"v": 1}, job_id="https://x/1") == "https://x/1"
    assert await q.enqueue("fetch", {"v": 2}, job_id="https://x/1") == "https://x/1"
    lease = await q.claim()
    assert lease is not None and lease.payload == {"v": 1}
    assert await q.enqueue("fetch", {"v": 3}, job_id="https://x/1") == "https://x/1"
    await q.ack(lease, "r")
    assert await q.enqueue("fetch", {"v": 4}, job_id="https://x/1") == "https://x/1"
    assert await q.claim() is None
    stats = await q.stats()
    assert (stats.todos, stats.done) == (0, 1)
    info = await q.job("https://x/1")
    assert info is not None and info.payload == {"v": 1}


async def test_enqueue_many_returns_ids_in_order_and_claim_many_takes_at_most_n(
    redis: aioredis.Redis,
):
    q = Queue(redis, "bulk")
    ids = await q.enqueue_many("t", [{"i": i} for i in range(700)])
    assert len(ids) == len(set(ids)) == 700
    assert (await q.stats()).todos == 700
    leases = await q.claim_many(50)
    assert len(leases) == 50
    assert {lease.payload["i"] for lease in leases} <= set(range(700))
    assert len({lease.token for lease in leases}) == 50
    assert len({lease.fence for lease in leases}) == 50
    rest = await q.claim_many(1000)
    assert len(rest) == 650
    assert {x.job_id for x in leases + rest} == set(ids)


async def test_enqueue_many_with_job_ids_skips_known_ones(redis: aioredis.Redis):
    q = Queue(redis, "bulk")
    await q.enqueue("t", "first", job_id="a")
    ids = await q.enqueue_many("t", ["x", "y"], job_ids=["a", "b"])
    assert ids == ["a", "b"]
    info = await q.job("a")
    assert info is not None and info.payload == "first"
    assert (await q.stats()).todos == 2


async def test_stale_ack_after_expiry_and_reclaim_is_rejected_and_cannot_overwrite(
    redis: aioredis.Redis,
):
    q = Queue(redis, "fenced", lease_timeout=30.0)
    job_id = await q.enqueue("t", 1)
    old = await q.claim()
    assert old is not None
    await expire_lease(redis, q, job_id)
    assert await Reaper(q).sweep() == 1
    new = await q.claim()
    assert new is not None and new.job_id == job_id and new.attempt == 2
    assert new.token != old.token and new.fence > old.fence

    with pytest.raises(LeaseLost):
        await q.ack(old, result="stale")
    with pytest.raises(LeaseLost):
        await q.extend(old)
    with pytest.raises(LeaseLost):
        await q.fail(old, "stale failure")
    with pytest.raises(LeaseLost):
        await q.release(old)
    # The new owner's lease is untouched and its ack wins.
    assert await redis.get(q.keys.lease(job_id)) == new.token.encode()
    await q.ack(new, result="fresh")
    info = await q.job(job_id)
    assert info is not None and (info.state, info.result, info.failures) == ("done", "fresh", 0)


async def test_ack_after_expiry_without_reclaim_is_lost_and_job_is_redone(
    redis: aioredis.Redis,
):
    q = Queue(redis, "fenced")
    job_id = await q.enqueue("t", 1)
    lease = await q.claim()
    assert lease is not None
    await expire_lease(redis, q, job_id)
    with pytest.raises(LeaseLost):
        await q.ack(lease, "late")
    assert (await sets_of(redis, "fenced"))["in_progress"] == {job_id}
    assert await Reaper(q).sweep() == 1
    assert (await sets_of(redis, "fenced"))["todo"] == {job_id}


async def test_retried_ack_and_fail_report_the_first_outcome(redis: aioredis.Redis):
    q = Queue(redis, "idem")
    a, b = await q.enqueue_many("t", [1, 2])
    leases = {x.job_id: x for x in await q.claim_many(2)}
    await q.ack(leases[a], "ok")
    await q.ack(leases[a], "ok")  # a reply lost in transit: the retry succeeds
    assert await q.fail(leases[b], "boom") == "todo"
    assert await q.fail(leases[b], "boom") == "todo"
    info = await q.job(b)
    assert info is not None and (info.failures, info.state) == (1, "todo")
    assert (await q.stats()).done == 1


async def test_fail_retries_then_dead_with_the_last_error(redis: aioredis.Redis):
    q = Queue(redis, "retry", max_attempts=3)
    job_id = await q.enqueue("t", None)
    for attempt in (1, 2):
        lease = await q.claim()
        assert lease is not None and lease.attempt == attempt
        assert await q.fail(lease, f"boom {attempt}") == "todo"
    lease = await q.claim()
    assert lease is not None and lease.attempt == 3
    assert await q.fail(lease, "boom 3") == "dead"
    info = await q.job(job_id)
    assert info is not None
    assert info.state == "dead" and info.failures == 3
    assert info.dead_reason == "failed 3 times, last error: boom 3"
    with pytest.raises(JobDead, match="boom 3"):
        await q.wait(job_id, timeout=5)


async def test_fail_with_retry_in_delays_the_job(redis: aioredis.Redis):
    q = Queue(redis, "backoff")
    job_id = await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    assert await q.fail(lease, "later", retry_in=0.2) == "delayed"
    assert (await q.stats()).delayed == 1
    assert await q.claim() is None
    await wait_for(lambda: _claims(q, job_id))


async def _claims(q: Queue, job_id: str) -> bool:
    lease = await q.claim()
    return lease is not None and lease.job_id == job_id


async def test_delayed_job_is_not_claimable_before_its_time(redis: aioredis.Redis):
    q = Queue(redis, "delay")
    job_id = await q.enqueue("t", None, delay=0.2)
    info = await q.job(job_id)
    assert info is not None and info.state == "delayed"
    assert await q.claim() is None
    await wait_for(lambda: _claims(q, job_id))


async def test_reaper_promotes_due_delayed_jobs(redis: aioredis.Redis):
    q = Queue(redis, "delay")
    job_id = await q.enqueue("t", None, delay=0.05)
    reaper = Reaper(q)

    async def promoted() -> bool:
        return (await reaper.sweep_report()).promoted == 1

    await wait_for(promoted)
    assert (await sets_of(redis, "delay"))["todo"] == {job_id}


async def test_release_returns_the_job_at_once_without_counting_the_attempt(
    redis: aioredis.Redis,
):
    q = Queue(redis, "rel", max_attempts=1)
    job_id = await q.enqueue("t", None)
    for _ in range(3):
        lease = await q.claim()
        assert lease is not None and lease.attempt == 1
        await q.release(lease)
        assert not await redis.exists(q.keys.lease(job_id))
    info = await q.job(job_id)
    assert info is not None and (info.state, info.attempts) == ("todo", 0)


async def test_extend_renews_the_lease_and_a_lost_lease_cannot_be_extended(
    redis: aioredis.Redis,
):
    q = Queue(redis, "ext", lease_timeout=1.0)
    job_id = await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    renewed = await q.extend(lease, 60.0)
    assert renewed.token == lease.token and renewed.lease_timeout == 60.0
    assert await redis.pttl(q.keys.lease(job_id)) > 30_000
    await expire_lease(redis, q, job_id)
    with pytest.raises(LeaseLost):
        await q.extend(renewed)
    assert not await redis.exists(q.keys.lease(job_id))


async def test_reaper_requeues_expired_leases_and_buries_after_max_attempts(
    redis: aioredis.Redis,
):
    q = Queue(redis, "poison", max_attempts=2, lease_timeout=30.0)
    job_id = await q.enqueue("t", None)
    reaper = Reaper(q)
    for _ in range(2):
        lease = await q.claim()
        assert lease is not None
        assert await reaper.sweep() == 0  # a live lease is never reaped
        await expire_lease(redis, q, job_id)
        assert await reaper.sweep() == 1
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.lease_expiries, info.dead_reason) == (
        "dead", 2, "lease expired 2 times")


async def test_reaper_records_each_expired_lease_and_stamps_its_sweeps(redis: aioredis.Redis):
    q = Queue(redis, "events", max_attempts=2, lease_timeout=30.0, owner="w-1")
    job_id = await q.enqueue("t", None)
    reaper = Reaper(q)
    tokens = []
    for _ in range(2):
        lease = await q.claim()
        assert lease is not None
        tokens.append(lease.token)
        await expire_lease(redis, q, job_id)
        await reaper.sweep()
    events = [json.loads(e) for e in await redis.lrange(q.keys.events, 0, -1)]
    # Newest first: the second expiry buried the job, the first requeued it.
    assert [(e["outcome"], e["attempt"], e["token"]) for e in events] == [
        ("dead", 2, tokens[1]), ("requeued", 1, tokens[0])]
    assert {(e["job_id"], e["task"], e["owner"], e["event"]) for e in events} == {
        (job_id, "t", "w-1", "lease_expired")}
    assert events[0]["reason"] == "lease expired 2 times" and events[1]["reason"] is False
    seen = int(await redis.hget(q.keys.meta, "reaper_seen"))
    assert seen >= events[0]["at"]


async def test_the_events_list_is_capped(redis: aioredis.Redis):
    q = Queue(redis, "capped", lease_timeout=30.0)
    await q.enqueue_many("t", range(EVENTS_KEPT + 20))
    await q.claim_many(EVENTS_KEPT + 20)
    for key in [k async for k in redis.scan_iter(match=q.keys.lease("*"))]:
        await redis.delete(key)
    assert await Reaper(q).sweep() == EVENTS_KEPT + 20
    assert await redis.llen(q.keys.events) == EVENTS_KEPT


async def test_reaper_repairs_a_lease_key_without_expiry(redis: aioredis.Redis):
    q = Queue(redis, "repair", lease_timeout=5.0)
    job_id = await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    await redis.persist(q.keys.lease(job_id))
    assert await redis.pttl(q.keys.lease(job_id)) == -1
    report = await Reaper(q).sweep_report()
    assert report.repaired == 1
    assert 0 < await redis.pttl(q.keys.lease(job_id)) <= 5000
    await q.ack(lease)


async def test_reaper_scans_in_progress_in_batches(redis: aioredis.Redis):
    q = Queue(redis, "many", lease_timeout=30.0)
    await q.enqueue_many("t", list(range(300)))
    leases = await q.claim_many(300)
    await redis.delete(*[q.keys.lease(x.job_id) for x in leases])
    report = await Reaper(q, batch=16).sweep_report()
    assert report.requeued == 300
    assert (await q.stats()).todos == 300


async def test_two_reapers_at_once_requeue_each_job_once(redis: aioredis.Redis):
    q = Queue(redis, "twin", lease_timeout=30.0)
    ids = await q.enqueue_many("t", list(range(200)))
    leases = await q.claim_many(200)
    await redis.delete(*[q.keys.lease(x.job_id) for x in leases])
    counts: list[int] = []

    async def sweep() -> None:
        counts.append(await Reaper(q, batch=8).sweep())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sweep)
        tg.start_soon(sweep)
    assert sum(counts) == 200
    await assert_each_id_in_one_place(redis, "twin", ids)
    infos = [await q.job(i) for i in ids[:20]]
    assert all(i is not None and i.lease_expiries == 1 for i in infos)


async def test_missing_job_hash_at_claim_sends_the_id_to_dead(redis: aioredis.Redis):
    q = Queue(redis, "broken")
    bad = await q.enqueue("t", 1)
    good = await q.enqueue("t", 2)
    await redis.delete(q.keys.job(bad))
    leases = await q.claim_many(10)
    assert [x.job_id for x in leases] == [good]
    info = await q.job(bad)
    assert info is not None
    assert (info.state, info.dead_reason) == ("dead", "job hash missing at claim")


async def test_undecodable_payload_at_claim_sends_the_id_to_dead(redis: aioredis.Redis):
    q = Queue(redis, "broken")
    bad = await q.enqueue("t", 1)
    await redis.hset(q.keys.job(bad), "payload", b"\xff\xfe not json")
    assert await q.claim() is None
    info = await q.job(bad)
    assert info is not None and info.state == "dead"
    assert info.dead_reason is not None and "payload cannot be decoded" in info.dead_reason
    assert not await redis.exists(q.keys.lease(bad))


async def test_done_retention_trims_oldest_beyond_max_count(redis: aioredis.Redis):
    q = Queue(redis, "keep", done_max=10, done_ttl=None)
    ids = await q.enqueue_many("t", list(range(25)))
    leases = await q.claim_many(25)
    assert all(await q.ack_many([(x, x.payload) for x in leases]))
    report = await Reaper(q, batch=4).sweep_report()
    assert report.trimmed == 15
    stats = await q.stats()
    assert stats.done == 10
    assert await redis.zcard(q.keys.done_at) == 10
    remaining = {m.decode() for m in await redis.smembers(q.keys.done)}
    assert all([await redis.exists(q.keys.job(i)) for i in remaining])
    trimmed = set(ids) - remaining
    assert not any([await redis.exists(q.keys.job(i)) for i in trimmed])


async def test_an_ack_stamps_redis_time_not_the_workers_estimate(redis: aioredis.Redis):
    # The worker estimates Redis's clock from its claim; an estimate an hour out (a
    # stalled process, a bad round trip) must not reach finished_at or done_at, or a job
    # would seem to end after the start of a job that waited for it.
    q = Queue(redis, "stamp")
    await q.enqueue_many("t", [1, 2, 3])
    leases = [dataclasses.replace(x, server_offset=x.server_offset + 3600)
              for x in await q.claim_many(3)]
    before = await server_ms(redis)
    assert all(await q.ack_many([(x, x.payload) for x in leases]))
    after = await server_ms(redis)
    for x in leases:
        info = await q.job(x.job_id)
        assert info is not None and info.finished_at is not None
        assert before <= info.finished_at * 1000 <= after
        score = await redis.zscore(q.keys.done_at, x.job_id)
        assert score is not None and before <= score <= after


async def test_done_retention_trims_by_age(redis: aioredis.Redis):
    q = Queue(redis, "keep", done_ttl=0.0, done_max=None)
    await q.enqueue_many("t", [1, 2, 3])
    assert all(await q.ack_many([(x, None) for x in await q.claim_many(3)]))
    reaper = Reaper(q)

    async def trimmed_all() -> bool:
        await reaper.sweep()
        return (await q.stats()).done == 0

    await wait_for(trimmed_all)


async def test_wait_and_map_return_results_in_input_order(redis: aioredis.Redis):
    q = Queue(redis, "mapq")

    async def serve() -> None:
        while True:
            leases = await q.claim_many(64)
            if not leases:
                await anyio.sleep(0.001)
                continue
            await q.ack_many([(x, x.payload * 2) for x in leases])

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        assert await q.map("double", list(range(300)), timeout=30) == [
            i * 2 for i in range(300)]
        job_id = await q.enqueue("double", 21)
        assert await q.wait(job_id, timeout=10) == 42
        tg.cancel_scope.cancel()


async def test_wait_raises_for_unknown_ids_and_on_timeout(redis: aioredis.Redis):
    q = Queue(redis, "w")
    with pytest.raises(JobNotFound):
        await q.wait("nope", timeout=1)
    job_id = await q.enqueue("t", None)
    with pytest.raises(WaitTimeout):
        await q.wait(job_id, timeout=0.05)


async def test_stats_count_every_set(redis: aioredis.Redis):
    q = Queue(redis, "st", max_attempts=1)
    await q.enqueue_many("t", list(range(5)))
    await q.enqueue("t", None, delay=60)
    a, b, c = await q.claim_many(3)
    await q.ack(a)
    await q.fail(b, "x")
    stats = await q.stats()
    assert (stats.todos, stats.in_progress, stats.done, stats.dead, stats.delayed) == (
        2, 1, 1, 1, 1)
    assert stats.total == 6
    await q.release(c)


async def test_job_returns_none_for_unknown_ids_and_live_lease_details(redis: aioredis.Redis):
    q = Queue(redis, "info", owner="test-owner")
    assert await q.job("unknown") is None
    job_id = await q.enqueue("t", {"p": 1})
    lease = await q.claim()
    assert lease is not None
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.task, info.payload, info.lease_token, info.owner) == (
        "in_progress", "t", {"p": 1}, lease.token, "test-owner")
    assert info.lease_ttl is not None and 0 < info.lease_ttl <= 30
    assert info.enqueued_at is not None


async def test_per_job_lease_timeout_and_max_attempts(redis: aioredis.Redis):
    q = Queue(redis, "perjob", lease_timeout=30.0, max_attempts=5)
    job_id = await q.enqueue("long", None, lease_timeout=300.0, max_attempts=2)
    lease = await q.claim()
    assert lease is not None
    assert (lease.lease_timeout, lease.max_attempts) == (300.0, 2)
    assert await redis.pttl(q.keys.lease(job_id)) > 200_000


async def test_scripts_are_reloaded_after_script_flush(redis: aioredis.Redis):
    q = Queue(redis, "flush")
    await q.enqueue("t", 1)
    await redis.script_flush()
    await q.enqueue_many("t", list(range(600)))  # several script calls in one pipeline
    await redis.script_flush()
    lease = await q.claim()
    assert lease is not None
    await q.ack(lease)
    assert (await q.stats()).todos == 600


async def test_every_key_of_a_queue_carries_its_hash_tag(redis: aioredis.Redis):
    q = Queue(redis, "tagged")
    job_id = await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    await q.enqueue("t", None, delay=60)
    keys = [k.decode() async for k in redis.scan_iter() if k != b"leaseq:queues"]
    assert keys and all(k.startswith("leaseq:{tagged}:") for k in keys), keys
    if isinstance(redis, RedisCluster):  # and so every key of the queue is in one slot
        assert len({redis.keyslot(k) for k in keys}) == 1
    await q.ack(lease)
    assert job_id


async def _make_dead(q: Queue, n: int) -> list[str]:
    ids = await q.enqueue_many("t", list(range(n)), max_attempts=1)
    for lease in await q.claim_many(n):
        assert await q.fail(lease, f"boom {lease.payload}") == "dead"
    return ids


async def test_dead_jobs_can_be_listed_requeued_and_purged(redis: aioredis.Redis):
    q = Queue(redis, "ops")
    ids = await _make_dead(q, 5)
    listed = await q.dead_jobs(limit=3)
    assert len(listed) == 3
    assert all(info.state == "dead" and info.dead_reason for info in listed)
    assert len(await q.dead_jobs()) == 5

    assert await q.requeue_dead([ids[0], "not-dead"]) == 1
    info = await q.job(ids[0])
    assert info is not None
    assert (info.state, info.attempts, info.failures, info.dead_reason) == ("todo", 0, 0, None)
    lease = await q.claim()
    assert lease is not None and lease.job_id == ids[0] and lease.attempt == 1
    await q.ack(lease, "ok")

    assert await q.purge_dead([ids[1]]) == 1
    assert await q.job(ids[1]) is None
    assert await q.requeue_dead() == 3
    assert (await q.stats()).todos == 3
    assert all(await q.ack_many([(x, None) for x in await q.claim_many(3)]))
    await _make_dead(q, 4)
    assert await q.purge_dead() == 4
    stats = await q.stats()
    assert (stats.dead, stats.done) == (0, 4)


async def test_requeue_dead_leaves_jobs_without_a_hash_alone(redis: aioredis.Redis):
    q = Queue(redis, "ops")
    job_id = await q.enqueue("t", 1)
    await redis.delete(q.keys.job(job_id))
    assert await q.claim() is None  # dead: hash missing
    assert await q.requeue_dead() == 0
    assert (await q.stats()).dead == 1


async def test_stats_counts_jobs_acked_in_the_last_minute(redis: aioredis.Redis):
    q = Queue(redis, "tput")
    await q.enqueue_many("t", list(range(7)))
    assert all(await q.ack_many([(x, None) for x in await q.claim_many(7)]))
    assert (await q.stats()).done_last_minute == 7


async def test_jobs_reads_many_at_once(redis: aioredis.Redis):
    q = Queue(redis, "many")
    ids = await q.enqueue_many("t", ["a", "b"])
    infos = await q.jobs([*ids, "missing"])
    assert [i.payload if i else None for i in infos] == ["a", "b", None]
