"""Acks of several queues of one client in one transaction (``ack_together``), and the
worker's ack batchers that send them: one per client, one per queue on a cluster."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from leaseq import InvalidInput, Lease, Queue, Reaper, Worker
from leaseq.protocol.settling import ack_together
from leaseq.protocol.wire import text
from leaseq.runtime.acks import ack_batchers
from leaseq.testing import RedisServer

pytestmark = pytest.mark.real_redis


async def execs(client: aioredis.Redis) -> int:
    """EXEC commands the server has run so far."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_exec", {}).get("calls", 0))


async def test_two_queues_are_acked_in_one_exec_with_their_results(
        real_redis: aioredis.Redis):
    q1, q2 = Queue(real_redis, "tog1"), Queue(real_redis, "tog2")
    await q1.enqueue_many("t", [1, 2])
    await q2.enqueue("t", 3)
    l1, l2 = await q1.claim_many(2), await q2.claim_many(1)
    before = await execs(real_redis)
    oks = await ack_together([(q1, [(lease, f"r{lease.payload}") for lease in l1]),
                              (q2, [(lease, f"r{lease.payload}") for lease in l2])])
    assert oks == [[True, True], [True]]
    assert await execs(real_redis) == before + 1
    for q, leases in ((q1, l1), (q2, l2)):
        stats = await q.stats()
        assert (stats.done, stats.in_progress) == (len(leases), 0)
        for lease in leases:
            info = await q.job(lease.job_id)
            assert info is not None and info.result == f"r{lease.payload}"


async def test_a_lost_lease_of_one_queue_leaves_that_job_alone_and_acks_the_rest(
        real_redis: aioredis.Redis):
    q1, q2 = Queue(real_redis, "togl1", lease_timeout=60), Queue(real_redis, "togl2")
    await q1.enqueue_many("t", [1, 2])
    await q2.enqueue("t", 3)
    l1, l2 = await q1.claim_many(2), await q2.claim_many(1)
    # The first lease expires and another claimer takes the job.
    await real_redis.delete(q1.keys.lease(l1[0].job_id))
    await Reaper(q1).sweep()
    (again,) = await q1.claim_many(1)
    assert again.job_id == l1[0].job_id
    oks = await ack_together([(q1, [(lease, None) for lease in l1]),
                              (q2, [(lease, None) for lease in l2])])
    assert oks == [[False, True], [True]]
    assert text(await real_redis.get(q1.keys.lease(again.job_id))) == again.token
    assert (await q1.stats()).in_progress == 1
    assert (await q2.stats()).done == 1


async def test_the_jobs_waiting_for_either_queue_are_released_even_without_the_script(
        real_redis: aioredis.Redis):
    """Both queues' resolve.lua ride in the EXEC and both answer NOSCRIPT after the rest
    committed: each is then run alone."""
    q1, q2 = Queue(real_redis, "togd1"), Queue(real_redis, "togd2")
    a1, a2 = await q1.enqueue("map", 1), await q2.enqueue("map", 2)
    b1 = await q1.enqueue("reduce", None, after=[a1])
    b2 = await q2.enqueue("reduce", None, after=[a2])
    l1, l2 = await q1.claim(), await q2.claim()
    assert l1 is not None and l2 is not None
    await real_redis.script_flush()
    assert await ack_together([(q1, [(l1, None)]), (q2, [(l2, None)])]) == [[True], [True]]
    for q, b in ((q1, b1), (q2, b2)):
        info = await q.job(b)
        assert info is not None and info.state == "todo"


async def test_queues_of_different_clients_or_on_a_cluster_are_refused_before_any_write(
        real_redis: aioredis.Redis, redis_server: RedisServer):
    other = aioredis.Redis.from_url(redis_server.url)
    try:
        q1, q2 = Queue(real_redis, "togc1"), Queue(other, "togc2")
        await q1.enqueue("t", 1)
        lease = await q1.claim()
        assert lease is not None
        with pytest.raises(InvalidInput, match="one client"):
            await ack_together([(q1, [(lease, None)]), (q2, [])])
        assert (await q1.stats()).in_progress == 1
    finally:
        await other.aclose()
    cluster = RedisCluster(host="127.0.0.1", port=1)  # never connected: refused first
    with pytest.raises(InvalidInput, match="cluster"):
        await ack_together([(Queue(cluster, "a"), []), (Queue(cluster, "b"), [])])


def test_a_worker_has_one_batcher_per_client_and_one_per_queue_on_a_cluster(
        real_redis: aioredis.Redis):
    other = aioredis.Redis()
    cluster = RedisCluster(host="127.0.0.1", port=1)
    batchers = ack_batchers([Queue(real_redis, "a"), Queue(real_redis, "b"),
                             Queue(other, "c"), Queue(cluster, "d"), Queue(cluster, "e")])
    assert batchers["a"] is batchers["b"]
    assert len({id(b) for b in batchers.values()}) == 4
    assert [q.name for q in batchers["a"].queues] == ["a", "b"]
    assert [q.name for q in batchers["d"].queues] == ["d"]


async def test_acks_of_two_queues_waiting_together_go_out_in_one_transaction(
        real_redis: aioredis.Redis):
    q1, q2 = Queue(real_redis, "togb1"), Queue(real_redis, "togb2")
    await q1.enqueue_many("t", [1, 2, 3])
    await q2.enqueue_many("t", [4, 5])
    leases = [(q1, lease) for lease in await q1.claim_many(3)] + [
        (q2, lease) for lease in await q2.claim_many(2)]
    batcher = ack_batchers([q1, q2])["togb1"]
    outcomes: list[bool] = []

    async def ack(q: Queue, lease: Lease) -> None:
        outcomes.append(await batcher.ack(q, lambda: lease, None))

    before = await execs(real_redis)
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.run)
        async with anyio.create_task_group() as acks:
            for q, lease in leases:  # all queued before the flusher first runs
                acks.start_soon(ack, q, lease)
        tg.cancel_scope.cancel()
    assert outcomes == [True] * 5
    assert await execs(real_redis) == before + 1
    assert ((await q1.stats()).done, (await q2.stats()).done) == (3, 2)


async def test_a_worker_over_two_queues_of_one_client_drains_both(
        real_redis: aioredis.Redis):
    q1, q2 = Queue(real_redis, "togw1"), Queue(real_redis, "togw2")
    await q1.enqueue_many("t", list(range(300)))
    await q2.enqueue_many("t", list(range(200)))
    seen: list[int] = []

    async def handler(ctx: object, payload: int) -> int:
        seen.append(payload)
        return payload * 2

    worker = Worker({q1: {"t": handler}, q2: {"t": handler}}, reaper=False)
    await worker.run(burst=True, handle_signals=False)
    assert worker.counters["acked"] == 500
    assert ((await q1.stats()).done, (await q2.stats()).done) == (300, 200)
    assert sorted(seen) == sorted([*range(300), *range(200)])
