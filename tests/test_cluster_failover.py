"""Cluster faults under load: a master dies and its replica takes over, or the queue's
slot migrates to another master (ASK, TRYAGAIN, MOVED). Workers follow, and no
acknowledged job is lost. Each test builds its own cluster, since the fault changes it."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import anyio
import pytest
import redis as syncredis
from redis.asyncio.cluster import RedisCluster

from leaseq import JobContext, Queue, Worker
from leaseq.testing import check_invariants, wait_drained
from leaseq.testing._cluster import RedisClusterServers
from leaseq.testing._record import _wrap

from .helpers.failover import FailoverProducer

pytestmark = [pytest.mark.real_redis, pytest.mark.timeout(240)]


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers(3, replicas=1) as servers:
        yield servers


async def test_knob_waits_for_the_replica_of_the_queues_master(cluster: RedisClusterServers):
    client = RedisCluster.from_url(cluster.url)
    try:
        q = Queue(client, "durable", replicas=1, replica_timeout=5.0)
        await q.enqueue_many("t", range(10))
        for lease in await q.claim_many(10):
            await q.ack(lease)
        assert q.unconfirmed_writes == 0
        # The replica of the queue's master really has the acks.
        master = client.get_node_from_key(q.keys.done)
        assert _replica_count(cluster, master.port, q.keys.done) == 10
    finally:
        await client.aclose()


def _replica_count(cluster: RedisClusterServers, master_port: int, key: str) -> int:
    """SCARD of ``key`` read on the replica of the master on ``master_port``."""
    r = syncredis.Redis(port=cluster.replica_of(master_port).port)
    try:
        r.execute_command("READONLY")  # a cluster replica serves reads only so
        return int(r.scard(key))
    finally:
        r.close()


async def test_knob_reports_writes_no_replica_confirmed(redis_cluster: RedisClusterServers):
    client = RedisCluster.from_url(redis_cluster.url)  # the session's cluster: no replicas
    try:
        q = Queue(client, "lonely", replicas=1, replica_timeout=0.05)
        await q.enqueue("t", None)
        assert q.unconfirmed_writes == 1  # done on the master, and said to be unconfirmed
        assert (await q.stats()).todos == 1
    finally:
        await client.aclose()


async def test_master_failover_under_load_loses_no_confirmed_job(
    cluster: RedisClusterServers,
):
    client = RedisCluster.from_url(cluster.url)
    q = Queue(client, "failover", lease_timeout=2.0, replicas=1, replica_timeout=0.2)
    producer = FailoverProducer(Queue(client, "failover", replicas=1, replica_timeout=0.2),
                                600, lambda p: len(p.confirmed) >= 100, pause=0.02)

    async def work(ctx: JobContext, payload: int) -> int:
        await anyio.sleep(random.uniform(0, 0.005))
        return payload

    worker = Worker(q, {"work": work}, concurrency=10, reaper=True, reaper_interval=0.2,
                    poll_interval=0.2)

    await client.initialize()  # the slot map, to know which master to kill
    master = client.get_node_from_key(q.keys.todos)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            async with anyio.create_task_group() as producers:
                producers.start_soon(producer.run)
                # Mid-run, once a replica has confirmed some enqueues (an event, not a
                # time: on a loaded machine a confirmation may take longer).
                with anyio.fail_after(120):
                    await producer.ready.wait()
                cluster.server_for(master.port).kill()
            await wait_drained(client, "failover", timeout=120)
            worker.stop()
        # The queue's slot is now served by the former replica.
        assert client.get_node_from_key(q.keys.todos).port != master.port
        report = await check_invariants(client, "failover", producer.acknowledged)
        states = await q.jobs(producer.confirmed)
    finally:
        await client.aclose()
    # Every enqueue a replica confirmed survived the failover and ran; only writes the
    # knob said it could not confirm may be gone (then they are in `report.lost`).
    assert [s.state if s else None for s in states] == ["done"] * len(producer.confirmed)
    assert report.lost <= len(producer.unconfirmed), report
    assert report.stale_acks == 0 and report.unexpected == 0, report
    assert report.enqueued == 600
    assert len(producer.confirmed) >= 100  # the check above covered writes before the kill


def _migrate_slot(cluster: RedisClusterServers, slot: int,
                  batch: int = 5) -> tuple[str, int]:
    """Move ``slot`` to another master the way ``redis-cli --cluster reshard`` does
    (IMPORTING/MIGRATING, MIGRATE in small batches, SETSLOT NODE), slowly enough that
    traffic meets ASK and TRYAGAIN replies; returns the new owner's node id and how many
    keys moved."""
    clients = {s.port: syncredis.Redis(port=s.port, decode_responses=True)
               for s in cluster.servers}
    try:
        ids = {port: r.execute_command("CLUSTER", "MYID") for port, r in clients.items()}
        src = next(p for p, r in clients.items()
                   if any(a <= slot <= b for a, b, *_ in r.execute_command("CLUSTER", "SLOTS")
                          if int(_[0][1]) == p))
        dst = next(p for p in clients if p != src)
        clients[dst].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
        clients[src].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
        moved = 0
        while keys := clients[src].execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
            clients[src].execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000,
                                         "KEYS", *keys)
            moved += len(keys)
            time.sleep(0.01)
        for r in clients.values():
            r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
        return str(ids[dst]), moved
    finally:
        for r in clients.values():
            r.close()


@pytest.fixture
def small_cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers(3) as servers:
        yield servers


async def test_resharding_the_queues_slot_under_load_loses_nothing(
    small_cluster: RedisClusterServers,
):
    client = RedisCluster.from_url(small_cluster.url)
    q = Queue(client, "moving", lease_timeout=5.0)

    async def work(ctx: JobContext, payload: int) -> int:
        await anyio.sleep(random.uniform(0, 0.005))
        return payload

    worker = Worker(q, {"work": _wrap(work)}, concurrency=10, reaper=True,
                    reaper_interval=0.2, poll_interval=0.2)
    # Mid-migration enqueues are retried (the ids make that safe) until they land.
    producer = FailoverProducer(q, 1000, lambda p: len(p.acknowledged) >= 200, pause=0.01)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            async with anyio.create_task_group() as producers:
                producers.start_soon(producer.run)
                # Once 200 job hashes live in the slot (an event, not a time), so the
                # migration has keys to move while the traffic goes on.
                with anyio.fail_after(120):
                    await producer.ready.wait()
                new_owner, moved = await anyio.to_thread.run_sync(
                    _migrate_slot, small_cluster, client.keyslot(q.keys.todos))
            await wait_drained(client, "moving", timeout=120)
            worker.stop()
        report = await check_invariants(client, "moving", producer.acknowledged)
        owner = client.get_node_from_key(q.keys.todos)
        assert owner is not None
        node_id = await owner.execute_command("CLUSTER", "MYID")
    finally:
        await client.aclose()
    assert (node_id.decode() if isinstance(node_id, bytes) else node_id) == new_owner
    assert moved > 100  # the migration ran alongside the traffic, key by key
    assert report.problems() == [], report
    assert report.done == report.enqueued == 1000
