"""A pooled connection torn down while a command is being written (a cluster client
replacing a node whose slots moved, a peer's reset) makes redis-py before 8.2 raise
``AttributeError: 'NoneType' object has no attribute 'writelines'`` instead of a
``ConnectionError`` (8.2 raises "Connection closed by the server before write"). It
once stopped a worker in the middle of a resharding; it is now a connection failure
like any other: retried, logged once, nothing lost or run twice.

The tear-down is reproduced the way it happens: the connection's writer is gone by the
time redis-py writes the command."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from leaseq import JobContext, Queue, Worker
from leaseq.protocol.wire import broken_connection, retryable
from leaseq.testing import RedisServer
from leaseq.testing._cluster import RedisClusterServers

pytestmark = pytest.mark.real_redis

TORN = ("connection broke", "Connection closed by the server before write")
"""How the failure reads: the leaked error as leaseq reports it, or redis-py's own."""


class Breaker:
    """Which writes to break: each with probability ``p`` while armed (a seeded draw, so
    that no retry loop can fall in step with a fixed period)."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.random = random.Random(7)
        self.broken = 0
        self.armed = True

    def breaks(self) -> bool:
        if self.armed and self.random.random() < self.p:
            self.broken += 1
            return True
        return False


@pytest.fixture
def breaker(monkeypatch: pytest.MonkeyPatch) -> Breaker:
    """Every redis-py connection of the test, while armed, may find itself torn down by
    another task as it writes a command."""
    breaker = Breaker(p=1.0)
    breaker.armed = False
    write = aioredis.Connection._send_packed_command

    async def torn_down_mid_write(self: aioredis.Connection, command: Any) -> None:
        if breaker.breaks():
            await self.disconnect(nowait=True)
        await write(self, command)

    monkeypatch.setattr(aioredis.Connection, "_send_packed_command", torn_down_mid_write)
    return breaker


async def test_the_leaked_error_is_recognised_and_nothing_else_is(
    redis_server: RedisServer, breaker: Breaker,
):
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        breaker.armed = True
        with pytest.raises((AttributeError, RedisConnectionError)) as leaked:
            await client.ping()
        if isinstance(leaked.value, AttributeError):  # redis-py before 8.2
            assert broken_connection(leaked.value)
        assert retryable(leaked.value)
        breaker.armed = False
        assert await client.ping()  # redis-py dropped the connection: the next one works
    finally:
        await client.aclose()
    with pytest.raises(AttributeError) as elsewhere:
        None.writelines  # type: ignore[attr-defined]  # noqa: B018 - the same error, raised here
    assert not broken_connection(elsewhere.value) and not retryable(elsewhere.value)
    with pytest.raises(TypeError) as typed:
        len(None)  # type: ignore[arg-type]
    assert not broken_connection(typed.value)


async def test_a_claim_on_a_broken_connection_raises_a_connection_error(
    redis_server: RedisServer, breaker: Breaker,
):
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.flushall()
        q = Queue(client, "torn")
        job = await q.enqueue("t", 1)
        breaker.armed = True
        with pytest.raises(RedisConnectionError) as raised:
            await q.claim()
        assert any(text in str(raised.value) for text in TORN), raised.value
        breaker.armed = False
        lease = await q.claim()
        assert lease is not None and lease.job_id == job
    finally:
        await client.aclose()


@pytest.mark.parametrize("lane", ["real", "cluster"])
async def test_a_worker_rides_out_connections_torn_down_mid_write(
    lane: str, request: pytest.FixtureRequest, breaker: Breaker,
):
    breaker.p = 0.1
    if lane == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        client: aioredis.Redis = RedisCluster.from_url(cluster.url)  # type: ignore[assignment]
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = aioredis.Redis.from_url(server.url)
    await client.flushall()
    runs: Counter[str] = Counter()

    async def work(ctx: JobContext, payload: Any) -> Any:
        runs[ctx.job_id] += 1
        return payload

    try:
        q = Queue(client, "torn")
        ids = await q.enqueue_many("work", list(range(40)))
        breaker.armed = True
        worker = Worker(q, {"work": work}, concurrency=4, reaper=False)
        with capture_logs() as logs, anyio.fail_after(60):
            await worker.run(burst=True, handle_signals=False)
        breaker.armed = False
        assert breaker.broken >= 5
        assert worker.counters["acked"] == 40 and worker.counters["lease_lost"] == 0
        assert sorted(runs) == sorted(ids) and set(runs.values()) == {1}
        stats = await q.stats()
        assert (stats.todos, stats.in_progress, stats.done) == (0, 0, 40)
        down = [e for e in logs if e["event"] == "redis_unavailable"]
        assert down and all(any(text in e["error"] for text in TORN) for e in down)
        assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    finally:
        await client.aclose()
