"""Claims of several queues of one client in one round trip (``claim_together``), and
the worker's claims that use it: the shares a ``Weighted`` plan gives out."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from leaseq import InvalidInput, JobContext, Priority, Queue, Weighted
from leaseq.protocol import claiming
from leaseq.protocol.claiming import can_claim_together, claim_together
from leaseq.runtime.acks import ack_batchers
from leaseq.runtime.claims import Claims
from leaseq.runtime.served import Served

pytestmark = pytest.mark.real_redis


async def noop(ctx: JobContext, payload: Any) -> None:
    return None


async def test_each_queue_gets_its_own_leases_and_its_own_claim_state(
        real_redis: aioredis.Redis):
    q1, q2 = Queue(real_redis, "ct1"), Queue(real_redis, "ct2")
    await q1.enqueue_many("t", [1, 2, 3])
    await q2.enqueue("t", 4)
    l1, l2 = await claim_together([(q1, 2, None), (q2, 5, {"t": 1})])
    assert isinstance(l1, list) and isinstance(l2, list)
    assert [lease.queue for lease in l1] == ["ct1", "ct1"]
    assert [(lease.queue, lease.payload) for lease in l2] == [("ct2", 4)]
    assert (q1.nothing_waiting, q2.nothing_waiting) == (False, True)
    assert ((await q1.stats()).in_progress, (await q2.stats()).in_progress) == (2, 1)
    info = await q2.job(l2[0].job_id)
    assert info is not None and info.max_attempts == 1  # the per-task limit, stored


async def test_a_claim_refused_for_one_queue_costs_the_other_nothing(
        real_redis: aioredis.Redis):
    q1, q2 = Queue(real_redis, "ctr1"), Queue(real_redis, "ctr2")
    await q1.enqueue_many("t", [1, 2])
    await q2.prepare()
    await real_redis.set(q2.keys.todos, "not a set")
    l1, l2 = await claim_together([(q1, 2, None), (q2, 2, None)])
    assert isinstance(l1, list) and len(l1) == 2
    assert isinstance(l2, Exception) and "WRONGTYPE" in str(l2)
    assert (await q1.stats()).in_progress == 2


async def test_claims_find_the_script_unloaded_and_still_claim(real_redis: aioredis.Redis):
    q1, q2 = Queue(real_redis, "ctn1"), Queue(real_redis, "ctn2")
    await q1.enqueue("t", 1)
    await q2.enqueue("t", 2)
    await real_redis.script_flush()
    l1, l2 = await claim_together([(q1, 1, None), (q2, 1, None)])
    assert isinstance(l1, list) and isinstance(l2, list)
    assert [lease.payload for lease in l1 + l2] == [1, 2]


async def test_only_queues_of_one_pooled_client_without_lost_claims_go_together(
        real_redis: aioredis.Redis):
    q1, q2 = Queue(real_redis, "cto1"), Queue(real_redis, "cto2")
    assert can_claim_together([q1, q2])
    other = aioredis.Redis()
    single = aioredis.Redis(single_connection_client=True)
    cluster = RedisCluster(host="127.0.0.1", port=1)  # never connected
    assert not can_claim_together([q1, Queue(other, "x")])
    assert not can_claim_together([Queue(single, "a"), Queue(single, "b")])
    assert not can_claim_together([Queue(cluster, "a"), Queue(cluster, "b")])
    q2._lost_claims.append("0123456789ab")  # recovered by its own claim_many first
    assert not can_claim_together([q1, q2])
    with pytest.raises(InvalidInput, match="one pooled client"):
        await claim_together([(q1, 1, None), (q2, 1, None)])
    await other.aclose()
    await single.aclose()


def claims_over(queues: list[Queue], policy: Any) -> Claims:
    acks = ack_batchers(queues)
    return Claims({q.name: Served(q, {"t": noop}, acks[q.name]) for q in queues}, policy)


async def test_a_weighted_claim_asks_for_its_shares_in_one_round_trip(
        real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch):
    queues = [Queue(real_redis, f"ctw{i}") for i in range(3)]
    for q in queues:
        await q.enqueue_many("t", list(range(20)))
    calls: list[list[tuple[str, int]]] = []
    real = claiming.claim_together

    async def counted(parts: Any) -> Any:
        calls.append([(q.name, n) for q, n, _ in parts])
        return await real(parts)

    monkeypatch.setattr("leaseq.runtime.claims.claim_together", counted)
    claims = claims_over(queues, Weighted({"ctw0": 1, "ctw1": 1, "ctw2": 1}))
    leases = await claims.claim(24)
    assert len(calls) == 1 and sorted(n for _, n in calls[0]) == [8, 8, 8]
    assert sorted(lease.queue for lease in leases) == ["ctw0"] * 8 + ["ctw1"] * 8 + [
        "ctw2"] * 8


async def test_shares_a_queue_cannot_fill_go_to_the_others_after_the_round_trip(
        real_redis: aioredis.Redis):
    a, b = Queue(real_redis, "ctf1"), Queue(real_redis, "ctf2")
    await a.enqueue_many("t", list(range(2)))
    await b.enqueue_many("t", list(range(30)))
    claims = claims_over([a, b], Weighted({"ctf1": 1, "ctf2": 1}))
    leases = await claims.claim(16)
    assert sorted(lease.queue for lease in leases) == ["ctf1"] * 2 + ["ctf2"] * 14


async def test_a_priority_claim_asks_one_queue_at_a_time(
        real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch):
    high, low = Queue(real_redis, "ctp1"), Queue(real_redis, "ctp2")
    await high.enqueue_many("t", list(range(3)))
    await low.enqueue_many("t", list(range(10)))
    calls: list[object] = []
    monkeypatch.setattr("leaseq.runtime.claims.claim_together", calls.append)
    leases = await claims_over([high, low], Priority()).claim(5)
    assert calls == []
    assert sorted(lease.queue for lease in leases) == ["ctp1"] * 3 + ["ctp2"] * 2
