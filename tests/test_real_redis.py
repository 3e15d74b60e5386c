"""Behaviour that only a real redis-server shows: concurrency, clients, server config."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from leaseq import Queue, Reaper
from leaseq.testing import RedisServer

pytestmark = pytest.mark.real_redis


async def test_concurrent_claimers_never_get_the_same_job(redis: aioredis.Redis):
    # All lanes: on a cluster the claimers name candidates and contend for them.
    q = Queue(redis, "race")
    ids = await q.enqueue_many("t", list(range(2000)))
    got: list[str] = []

    async def claimer() -> None:
        while leases := await q.claim_many(7):
            got.extend(x.job_id for x in leases)
            await q.ack_many([(x, None) for x in leases])

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(claimer)
    assert sorted(got) == sorted(ids)
    assert (await q.stats()).done == 2000


# Real Lua only: fakeredis takes 20 s over a claim this size.
@pytest.mark.parametrize("redis", ["real", "cluster"], indirect=True)
async def test_the_largest_claim_moves_every_id_with_its_lease(redis: aioredis.Redis):
    # 10,000 ids in one script call: more than Lua's unpack() takes at once.
    q = Queue(redis, "big")
    ids = await q.enqueue_many("t", [None] * 10_001)
    leases = await q.claim_many(10_000)
    assert len({x.job_id for x in leases}) == 10_000
    stats = await q.stats()
    assert (stats.todos, stats.in_progress) == (1, 10_000)
    assert set(ids) - {x.job_id for x in leases} == {
        m.decode() for m in await redis.smembers(q.keys.todos)}
    assert await redis.exists(*(q.keys.lease(x.job_id) for x in leases[::997])) == len(
        leases[::997])
    assert await q.ack_many([(x, None) for x in leases]) == [True] * 10_000
    assert (await q.stats()).done == 10_000


async def test_client_with_decode_responses_works_end_to_end(redis_server: RedisServer):
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await client.flushall()
        q = Queue(client, "text")
        job_id = await q.enqueue("t", {"name": "ünïcode"})
        lease = await q.claim()
        assert lease is not None and lease.payload == {"name": "ünïcode"}
        await q.ack(lease, result="ok")
        assert await q.wait(job_id, timeout=5) == "ok"
        info = await q.job(job_id)
        assert info is not None and info.state == "done"
        assert await Reaper(q).sweep() == 0
    finally:
        await client.aclose()


async def test_an_evicting_maxmemory_policy_is_warned_about_once(real_redis: aioredis.Redis):
    await real_redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        q = Queue(real_redis, "evict")
        with capture_logs() as logs:
            await q.enqueue("t", 1)
            await q.enqueue("t", 2)
            await q.claim()
        warnings = [e for e in logs if e["event"] == "maxmemory_policy_evicts"]
        assert len(warnings) == 1
        assert warnings[0]["policy"] == "allkeys-lru" and warnings[0]["queue"] == "evict"
    finally:
        await real_redis.config_set("maxmemory-policy", "noeviction")


async def test_noeviction_policy_gives_no_warning(real_redis: aioredis.Redis):
    q = Queue(real_redis, "fine")
    with capture_logs() as logs:
        await q.enqueue("t", 1)
    assert not [e for e in logs if e["event"] == "maxmemory_policy_evicts"]


async def test_real_lease_expiry_is_decided_by_the_server(real_redis: aioredis.Redis):
    q = Queue(real_redis, "short", lease_timeout=0.05)
    job_id = await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    with anyio.fail_after(10):
        while await real_redis.exists(q.keys.lease(job_id)):
            await anyio.sleep(0.01)
    assert await Reaper(q).sweep() == 1
    again = await q.claim()
    assert again is not None and again.attempt == 2


async def test_reaper_calls_stay_small_with_many_in_flight(real_redis: aioredis.Redis):
    q = Queue(real_redis, "big", lease_timeout=60.0)
    await q.enqueue_many("t", list(range(5000)))
    while await q.claim_many(500):
        pass
    report = await Reaper(q, batch=256).sweep_report()
    assert report.requeued == 0 and report.dead == 0
    # Every SSCAN batch was looked at: nothing stranded, nothing moved.
    assert (await q.stats()).in_progress == 5000
