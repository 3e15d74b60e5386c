"""leaseq on a real 3-master Redis Cluster (the protocol suite also runs on it, as the
``cluster`` lane of the ``redis`` fixture)."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster

from leaseq import JobContext, Queue, Worker
from leaseq.testing import WorkerProcess, check_invariants, wait_drained
from leaseq.testing._cluster import RedisClusterServers

from .test_cli import cli

pytestmark = pytest.mark.real_redis


@pytest.fixture
async def cluster_client(redis_cluster: RedisClusterServers) -> Any:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.flushall()
    yield client
    await client.aclose()


async def test_twenty_queues_spread_over_the_masters_drain_from_one_worker(
    cluster_client: RedisCluster,
):
    queues = [Queue(cluster_client, f"spread-{i}") for i in range(20)]
    owners = {cluster_client.get_node_from_key(q.keys.todos).name for q in queues}
    assert len(owners) == 3  # the queues' hash tags land on every master
    for q in queues:
        await q.enqueue_many("t", list(range(50)))
    done: list[int] = []

    async def handler(ctx: JobContext, payload: int) -> int:
        done.append(payload)
        return payload

    worker = Worker({q: {"t": handler} for q in queues}, concurrency=20, reaper=True)
    with anyio.fail_after(120):
        await worker.run(burst=True, handle_signals=False)
    assert len(done) == 1000
    assert [(await q.stats()).done for q in queues] == [50] * 20


async def test_sigkilled_workers_on_a_cluster_lose_nothing(
    redis_cluster: RedisClusterServers, cluster_client: RedisCluster,
):
    url = redis_cluster.url.replace("redis://", "redis+cluster://")
    q = Queue(cluster_client, "cl-chaos")
    ids = await q.enqueue_many("work", [{"v": i, "s": random.uniform(0, 0.01)}
                                        for i in range(500)])
    workers = [WorkerProcess(url, "tests.chaos.handlers:HANDLERS", "cl-chaos",
                             concurrency=10, lease_timeout=1.0) for _ in range(2)]
    for w in workers:
        w.start()
    for _ in range(3):
        await anyio.sleep(0.4)
        victim = random.choice(workers)
        victim.kill()
        victim.start()
    await wait_drained(cluster_client, "cl-chaos", timeout=120)
    report = await check_invariants(cluster_client, "cl-chaos", ids)
    assert report.problems() == [], report
    for w in workers:
        w.wait_ready()  # a worker restarted a moment ago may still be starting up
        assert w.terminate() == 0


def test_cli_takes_a_cluster_url(redis_cluster: RedisClusterServers):
    url = redis_cluster.url.replace("redis://", "redis+cluster://")
    result = cli(url, "enqueue", "-q", "cl-cli", "echo", stdin="1\n2\n3\n")
    assert result.returncode == 0, result.stderr
    burst = cli(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "cl-cli", "--burst")
    assert burst.returncode == 0, burst.stderr
    stats = json.loads(cli(url, "stats", "-q", "cl-cli", "--json").stdout)
    assert stats[0]["done"] == 3



def test_doctor_checks_every_master_and_the_queue_on_a_cluster(
    redis_cluster: RedisClusterServers,
):
    url = redis_cluster.url.replace("redis://", "redis+cluster://")
    assert cli(url, "enqueue", "-q", "cl-doc", "echo", "1").returncode == 0
    result = cli(url, "doctor", "-q", "cl-doc")
    assert result.returncode == 0, result.stdout + result.stderr
    for server in redis_cluster.servers:
        # One finding per master for each server setting, named by its node.
        assert f"noeviction [127.0.0.1:{server.port}]" in result.stdout
        assert f"no persistence [127.0.0.1:{server.port}]" in result.stdout
    assert "integrity: queue 'cl-doc'" in result.stdout
