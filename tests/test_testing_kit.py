"""The fault-testing kit users get: fixtures, processes and a checker that can fail."""

from __future__ import annotations

import socket
from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import Queue
from leaseq.testing import RedisServer, WorkerProcess, check_invariants, wait_drained
from leaseq.testing._record import log_key

pytestmark = pytest.mark.real_redis


async def test_plugin_fixtures_run_recorded_workers_and_the_checker_passes(
    leaseq_redis_server: RedisServer,
    leaseq_worker_processes: Callable[..., WorkerProcess],
):
    client = aioredis.Redis.from_url(leaseq_redis_server.url)
    try:
        await client.flushall()
        ids = await Queue(client, "kit").enqueue_many("work", [{"v": i} for i in range(100)])
        worker = leaseq_worker_processes("tests.chaos.handlers:HANDLERS", "kit")
        await wait_drained(client, "kit", timeout=60)
        report = await check_invariants(client, "kit", ids)
        assert report.problems() == []
        assert (report.done, report.executions, report.duplicated) == (100, 100, 0)
        assert worker.alive
    finally:
        await client.aclose()


async def test_checker_counts_what_is_wrong(real_redis: aioredis.Redis):
    q = Queue(real_redis, "broken")
    lost, stale, twice = await q.enqueue_many("work", [1, 2, 3])
    leases = {x.job_id: x for x in await q.claim_many(3)}
    await q.ack(leases[stale], "ok")
    await q.ack(leases[twice], "ok")
    await q.release(leases[lost])
    await real_redis.srem(q.keys.todos, lost)  # lost: in no set any more
    await real_redis.hset(q.keys.job(stale), "token", "another-claim")  # acked by a stale lease
    await real_redis.sadd(q.keys.dead, twice)  # in two sets
    await real_redis.set(q.keys.lease("ghost"), "t")  # an orphan lease
    await real_redis.sadd(q.keys.done, "never-enqueued")
    report = await check_invariants(real_redis, "broken", [lost, stale, twice])
    assert (report.lost, report.stale_acks, report.misplaced, report.orphan_leases,
            report.unexpected) == (1, 1, 2, 1, 1)
    assert set(report.problems(allow_dead=True)) == {
        "lost=1", "stale_acks=1", "misplaced=2", "orphan_leases=1", "unexpected=1"}


async def test_checker_counts_runs_by_lease_token_and_shows_evidence(
    real_redis: aioredis.Redis,
):
    q = Queue(real_redis, "runs")
    echoed, rerun = await q.enqueue_many("work", [1, 2])
    for lease in await q.claim_many(2):
        await q.ack(lease, "ok")
    log = log_key(q.keys.prefix)
    # One run whose start record was written twice (a client's resend), and a job that
    # ran under two tokens with no expiry, release or failure to explain the second.
    await real_redis.rpush(log, f"start {echoed} 1 7 1-a", f"start {echoed} 1 7 1-a",
                           f"start {rerun} 1 7 2-a", f"start {rerun} 1 8 3-b")
    report = await check_invariants(real_redis, "runs", [echoed, rerun])
    assert (report.duplicated, report.unexplained_duplicates, report.executions) == (1, 1, 3)
    assert report.problems() == ["unexplained_duplicates=1"]
    [evidence] = report.evidence
    assert evidence.startswith(f"{rerun}: 2 starts, 1 allowed;")
    assert f"start {rerun} 1 8 3-b" in evidence


async def test_worker_process_can_be_frozen_killed_and_restarted(
    leaseq_redis_server: RedisServer,
):
    proc = WorkerProcess(leaseq_redis_server.url, "tests.chaos.handlers:HANDLERS", "frozen")
    proc.start()
    try:
        proc.wait_ready()
        first = proc.pid
        proc.stop()
        await anyio.sleep(0.1)
        assert proc.alive
        proc.cont()
        proc.kill()
        assert not proc.alive
        assert proc.returncode == -9
        proc.start()
        assert proc.alive
        assert proc.pid != first
        assert proc.starts == 2
        proc.wait_ready()
    finally:
        assert proc.terminate() == 0


@pytest.mark.real_redis
@pytest.mark.parametrize("cluster", [False, True], ids=["plain", "cluster-bus"])
def test_a_picked_port_taken_before_the_server_binds_it_is_replaced(
        monkeypatch: pytest.MonkeyPatch, cluster: bool):
    """Another process (a parallel test run) may take the port picked for a server, or a
    cluster node's bus port (+10000), before redis-server binds it: the server starts on
    another port instead of failing."""
    from leaseq.testing import _server

    real_free_port = _server.free_port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1] - (10_000 if cluster else 0)
        if cluster and busy < 1024:
            pytest.skip("the occupied port is too low to be a bus port")
        picks = iter([busy])
        monkeypatch.setattr(_server, "free_port",
                            lambda *, bus=False: next(picks, None) or real_free_port(bus=bus))
        extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        with RedisServer(extra_args=extra if cluster else []) as server:
            assert server.port != busy
            assert server.ping()


@pytest.mark.real_redis
def test_a_cluster_that_fails_to_start_leaves_no_node_running(
        monkeypatch: pytest.MonkeyPatch):
    """A node that cannot start fails the cluster's start; the nodes already running are
    killed with it (they used to be left behind)."""
    from leaseq.testing import RedisServerError
    from leaseq.testing._cluster import RedisClusterServers
    from leaseq.testing._server import RedisServer as Server

    cluster = RedisClusterServers(3)
    last = cluster.servers[-1]

    def fail(self: Server, timeout: float = 10.0) -> None:
        raise RedisServerError("this node does not start")

    monkeypatch.setattr(last, "start", fail.__get__(last))
    with pytest.raises(RedisServerError, match="does not start"), cluster:
        pass
    started = [s for s in cluster.servers if s.process is not None]
    assert len(started) == 2
    assert all(s.process is not None and s.process.poll() is not None for s in started)
