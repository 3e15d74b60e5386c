"""Cluster faults under load: a master dies and its replica takes over, or the queue's
slot migrates to another master (ASK, TRYAGAIN, MOVED). Workers follow, and no
acknowledged job is lost. And, step by step, a claim or a trim that meets the slot
split between two masters is refused whole. Each test builds its own cluster, since the
fault changes it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
import redis as syncredis
from redis.asyncio.cluster import RedisCluster

from leaseq import Lease, Queue, Reaper, Worker
from leaseq.protocol.wire import RETRYABLE, text
from leaseq.testing import check_invariants
from leaseq.testing._cluster import RedisClusterServers
from leaseq.testing._record import _wrap

from .helpers.failover import FailoverProducer, run_through_fault, short_work

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

    worker = Worker(q, {"work": short_work}, concurrency=10, reaper=True, reaper_interval=0.2,
                    poll_interval=0.2)

    await client.initialize()  # the slot map, to know which master to kill
    master = client.get_node_from_key(q.keys.todos)

    async def kill_master() -> None:
        cluster.server_for(master.port).kill()

    try:
        # Mid-run, once a replica has confirmed some enqueues (on a loaded machine a
        # confirmation may take longer).
        await run_through_fault(worker, producer, kill_master)
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


class SlotMigration:
    """One slot moving from its master to another, step by step, the way
    ``redis-cli --cluster reshard`` does it: IMPORTING/MIGRATING, ``MIGRATE`` of some
    keys at a time, then ``SETSLOT NODE`` on every master."""

    def __init__(self, cluster: RedisClusterServers, slot: int) -> None:
        self.slot = slot
        # One connection each: ASKING holds for the next command on its connection.
        self.clients = {s.port: syncredis.Redis(port=s.port, decode_responses=True,
                                                single_connection_client=True)
                        for s in cluster.servers}
        self.ids = {port: r.execute_command("CLUSTER", "MYID")
                    for port, r in self.clients.items()}
        self.src = next(
            p for p, r in self.clients.items()
            if any(a <= slot <= b for a, b, *_ in r.execute_command("CLUSTER", "SLOTS")
                   if int(_[0][1]) == p))
        self.dst = next(p for p in self.clients if p != self.src)
        self.clients[self.dst].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                               self.ids[self.src])
        self.clients[self.src].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                               self.ids[self.dst])

    def move(self, keys: list[str]) -> None:
        """Move these keys of the slot to the new master."""
        self.clients[self.src].execute_command("MIGRATE", "127.0.0.1", self.dst, "", 0,
                                               5000, "KEYS", *keys)

    def move_rest(self, batch: int = 5, pause: float = 0.0) -> int:
        """Move every key left, ``batch`` at a time with ``pause`` seconds between
        batches; returns how many moved."""
        moved = 0
        src = self.clients[self.src]
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, batch):
            self.move(keys)
            moved += len(keys)
            time.sleep(pause)
        return moved

    def finish(self) -> str:
        """Give the slot to the new master; returns its node id."""
        for r in self.clients.values():
            r.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", self.ids[self.dst])
        return str(self.ids[self.dst])

    def close(self) -> None:
        for r in self.clients.values():
            r.close()


def _migrate_slot(cluster: RedisClusterServers, slot: int) -> tuple[str, int]:
    """Move ``slot`` to another master key by key, slowly enough that traffic meets ASK
    and TRYAGAIN replies for a while; returns the new owner's node id and how many keys
    moved."""
    migration = SlotMigration(cluster, slot)
    try:
        moved = migration.move_rest(batch=5, pause=0.05)
        return migration.finish(), moved
    finally:
        migration.close()


@pytest.fixture
def small_cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers(3) as servers:
        yield servers


async def test_resharding_the_queues_slot_under_load_loses_nothing(
    small_cluster: RedisClusterServers,
):
    client = RedisCluster.from_url(small_cluster.url)
    q = Queue(client, "moving", lease_timeout=5.0)

    worker = Worker(q, {"work": _wrap(short_work)}, concurrency=10, reaper=True,
                    reaper_interval=0.2, poll_interval=0.2)
    # Mid-migration enqueues are retried (the ids make that safe) until they land.
    producer = FailoverProducer(q, 1000, lambda p: len(p.acknowledged) >= 200, pause=0.01)


    async def migrate() -> tuple[str, int]:
        return await anyio.to_thread.run_sync(
            _migrate_slot, small_cluster, client.keyslot(q.keys.todos))

    try:
        # Once 200 job hashes live in the slot, so the migration has keys to move while
        # the traffic goes on.
        new_owner, moved = await run_through_fault(worker, producer, migrate)
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


async def _every_set_of(q: Queue) -> Lease:
    """Give the queue a member in each of its sets (and its wake list, fence and meta),
    so a script declaring only those keys finds them all on one master; returns the
    lease held in in_progress."""
    await q.enqueue_many("t", range(20))
    first = await q.claim()
    assert first is not None
    await q.fail(first, "boom", max_attempts=1)  # -> dead
    await q.enqueue("t", None, delay=3600)  # -> delayed
    held = await q.claim()  # in_progress, fence
    assert held is not None
    await Reaper(q).sweep()  # meta (reaper_seen)
    return held


def _state(migration: SlotMigration, q: Queue, skip: str = "") -> dict[int, dict[str, Any]]:
    """Every key of the queue on each of the two masters, with its whole content.
    SCAN is never redirected and ASKING lets the importing master answer, so this is
    exactly what each node holds. ``skip`` names a key left out."""
    read = {"set": ("SMEMBERS",), "zset": ("ZRANGE", 0, -1, "WITHSCORES"),
            "list": ("LRANGE", 0, -1), "hash": ("HGETALL",), "string": ("GET",)}
    state: dict[int, dict[str, Any]] = {}
    for port in (migration.src, migration.dst):
        r = migration.clients[port]
        state[port] = {}
        for key in r.scan_iter(match=q.keys.prefix + "*", count=1000):
            if key == skip:
                continue
            r.execute_command("ASKING")
            kind = r.type(key)
            command, *args = read[kind]
            r.execute_command("ASKING")
            state[port][key] = (kind, r.execute_command(command, key, *args))
    return state


@pytest.fixture
async def small_client(small_cluster: RedisClusterServers) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(small_cluster.url)
    try:
        yield client
    finally:
        await client.aclose()


async def _refused_while_split(
    cluster: RedisClusterServers, q: Queue, ahead: list[str],
    call: Callable[[], Awaitable[object]], skip: str = "",
) -> None:
    """Start moving the queue's slot, with the keys ``ahead`` already on the new master;
    ``call()`` must fail with an error the worker retries and change nothing on either
    master (``skip`` names a key it may touch first). Then finish the migration."""
    migration = SlotMigration(cluster, q.redis.keyslot(q.keys.todos))
    try:
        migration.move(ahead)
        before = _state(migration, q, skip)
        with pytest.raises(RETRYABLE):
            await call()
        assert _state(migration, q, skip) == before
        migration.move_rest()
        migration.finish()
    finally:
        migration.close()


async def test_a_claim_while_the_job_hashes_moved_ahead_changes_nothing(
    small_cluster: RedisClusterServers, small_client: RedisCluster,
):
    """Mid-migration the queue's sets are on one master and some job hashes already on
    the other: a claim must be refused whole (TRYAGAIN) rather than move an id into
    in_progress and then fail on a key the node no longer holds."""
    q = Queue(small_client, "split")
    await _every_set_of(q)
    waiting = [text(i) for i in await small_client.smembers(q.keys.todos)]
    await _refused_while_split(small_cluster, q, [q.keys.job(i) for i in waiting],
                               lambda: q.claim_many(5))
    # Once the slot has settled, the same claim goes through.
    assert len(await q.claim_many(5)) == 5


async def test_a_trim_while_the_job_hashes_moved_ahead_changes_nothing(
    small_cluster: RedisClusterServers, small_client: RedisCluster,
):
    """The same for the reaper's retention trim: ids must not leave done and done_at
    while their job hashes, already on the other master, stay behind for ever."""
    q = Queue(small_client, "trimmed", done_max=0)
    # Nothing in progress, so the sweep's first step that touches job hashes is the
    # trim (a held lease would be re-checked first).
    for lease in [await _every_set_of(q), *await q.claim_many(4)]:
        await q.ack(lease)
    finished = [text(i) for i in await small_client.smembers(q.keys.done)]
    assert len(finished) == 5
    # The sweep stamps meta (reaper_seen) before it reaches the trim.
    await _refused_while_split(small_cluster, q, [q.keys.job(i) for i in finished],
                               Reaper(q).sweep, skip=q.keys.meta)
    assert (await Reaper(q).sweep_report()).trimmed == 5
    assert not any([await small_client.exists(q.keys.job(i)) for i in finished])


async def test_an_ack_that_meets_a_long_migration_fails_retryable_then_goes_through(
    small_cluster: RedisClusterServers, small_client: RedisCluster,
):
    """The lease key already on the new master, the sets still on the old one: the ack
    transaction cannot run anywhere until the slot has moved. It must give up with an
    error the worker retries (it used to escape and crash the worker), commit nothing,
    and go through once the migration is over."""
    q = Queue(small_client, "acking")
    await _every_set_of(q)
    lease = await q.claim()
    assert lease is not None
    await _refused_while_split(small_cluster, q, [q.keys.lease(lease.job_id)],
                               lambda: q.ack(lease, "result"))
    await q.ack(lease, "result")
    info = await q.job(lease.job_id)
    assert info is not None and (info.state, info.result) == ("done", "result")
