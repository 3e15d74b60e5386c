"""Fixtures: a session-wide private redis-server and 3-master cluster, and a ``redis``
client fixture that runs each protocol test three times: on fakeredis (fast lane), on the
real server (the lane that proves Redis semantics) and on the cluster."""

from __future__ import annotations

import glob
import os
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from leaseq.testing import RedisServer
from leaseq.testing._cluster import RedisClusterServers


def _leaseq_children() -> set[int]:
    """This process's running children that are ``python -m leaseq`` processes."""
    found = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            children = Path(path).read_text().split()
        except OSError:
            continue  # a thread that ended meanwhile
        for pid in children:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue  # exited meanwhile
            if state != "Z" and b"-m" in argv and argv[argv.index(b"-m") + 1] == b"leaseq":
                found.add(int(pid))
    return found


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """SIGKILL the leaseq processes a test started and left running (a worker that missed
    its stop): one left behind would register itself on the shared server and fail
    later tests that count workers or queues."""
    before = _leaseq_children()
    yield
    left = sorted(_leaseq_children() - before)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    if left:
        pytest.fail(f"the test left leaseq processes running (killed): {left}")


def _require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (the real-Redis lane may not skip)")
        pytest.skip("redis-server not installed (Debian: apt-get install redis-server)")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the whole session; tests flush it before use."""
    _require_redis_server()
    with RedisServer() as server:
        yield server


async def _flushed_client(server: RedisServer) -> aioredis.Redis:
    client = aioredis.Redis.from_url(server.url)
    await client.flushall()
    await client.script_flush()
    return client


@pytest.fixture
async def real_redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's real redis-server, flushed before the test."""
    client = await _flushed_client(redis_server)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A private 3-master Redis Cluster for the whole session."""
    _require_redis_server()
    with RedisClusterServers(3) as cluster:
        yield cluster


async def _flushed_cluster_client(cluster: RedisClusterServers) -> RedisCluster:
    client = RedisCluster.from_url(cluster.url)
    await client.flushall()
    await client.script_flush()
    return client


@pytest.fixture(params=["fake", "real", "cluster"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """A fresh Redis: fakeredis (with Lua), the real server, or a real 3-master cluster."""
    if request.param == "fake":
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)))
    elif request.param == "cluster":
        client = await _flushed_cluster_client(request.getfixturevalue("redis_cluster"))
    else:
        client = await _flushed_client(request.getfixturevalue("redis_server"))
    try:
        yield client
    finally:
        await client.aclose()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 10.0, step: float = 0.005
) -> None:
    """Wait until ``condition()`` is true; fail the test after ``timeout`` seconds.

    Tests wait on conditions with a generous deadline instead of sleeping for a guessed
    time, so a slow machine makes them slower, never red.
    """
    import anyio

    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(step)
