"""Shutdown while Redis does not answer (redis-server frozen with SIGSTOP): a graceful
stop ends within the grace period plus a bounded release time, and a second SIGTERM
within a few seconds, whatever Redis does. Leases that could not be released expire and
the reaper requeues them: nothing is lost.

The bound (30 s) is generous: a correct worker stops in about grace period + 5 s. One that
sees its shielded ack flush through retries it while the leases last (with redis-py 8's
default 5 s socket timeout a frozen server fails each try after 5 s), so the leases here
(45 s) outlast the bound and the bound tells the two apart on any machine; before the
rescue the tests end the leftover leases as expiry would, rather than wait 45 s. The
handlers of the stopped worker write nothing to Redis (no execution log), so that their
acks, not their own writes, are what meets the frozen server. Each test has a
redis-server of its own (it is frozen)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import Queue, Worker
from leaseq.testing import ChaosReport, RedisServer, WorkerProcess, check_invariants, wait_drained

from .chaos.handlers import HANDLERS

pytestmark = [pytest.mark.real_redis, pytest.mark.timeout(180)]

TARGET = "tests.chaos.handlers:HANDLERS"
BOUND = 30.0
"""Seconds a stop may take with Redis frozen (expected: about GRACE + 5)."""
GRACE = 1.0
LEASE = 45.0
"""Longer than BOUND: a worker that retries its acks while the leases last overruns it."""
JOBS = 60
DRAIN_TIMEOUT = LEASE + 60


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, never left frozen."""
    with RedisServer() as s:
        try:
            yield s
        finally:
            s.signal(signal.SIGCONT)


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(server.url)
    try:
        yield c
    finally:
        await c.aclose()


@contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """SIGSTOP the server for the block: connections stay open, nothing is answered."""
    server.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.signal(signal.SIGCONT)


def payloads() -> list[dict[str, Any]]:
    """Jobs of 0.2-0.8 s: at any moment some claim or ack is on its way to Redis."""
    return [{"v": i, "s": random.uniform(0.2, 0.8)} for i in range(JOBS)]


async def done_at_least(client: aioredis.Redis, queue: str, n: int,
                        timeout: float = 60.0) -> None:
    q = Queue(client, queue)
    with anyio.fail_after(timeout):
        while (await q.stats()).done < n:
            await anyio.sleep(0.02)


async def exit_code(proc: WorkerProcess, timeout: float) -> int | None:
    """The process's exit code, or None if it still runs after ``timeout`` seconds."""
    assert proc.process is not None
    popen = proc.process

    def wait() -> int | None:
        try:
            return popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    return await anyio.to_thread.run_sync(wait)


async def event_logged(proc: WorkerProcess, event: str, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not any(e.get("event") == event for e in proc.events()):
            await anyio.sleep(0.01)


async def expire_leases(client: aioredis.Redis, queue: str) -> None:
    """End the stopped worker's leftover leases now, as the server does once their time
    is up (deleting the key is exactly what expiry does), instead of waiting LEASE."""
    prefix = Queue(client, queue).keys.prefix
    async for key in client.scan_iter(match=prefix + "lease:*"):
        await client.delete(key)


async def drain_and_check(server: RedisServer, client: aioredis.Redis, queue: str,
                          ids: list[str], logdir: Path) -> ChaosReport:
    """After Redis is resumed and the leftover leases ended: a fresh worker process (with
    its reaper) finishes the queue; the checker counts what was lost."""
    await expire_leases(client, queue)
    rescuer = WorkerProcess(server.url, TARGET, queue, concurrency=20, lease_timeout=LEASE,
                            log_path=logdir / "rescuer.log")
    rescuer.start()
    try:
        await wait_drained(client, queue, timeout=DRAIN_TIMEOUT)
        return await check_invariants(client, queue, ids)
    finally:
        rescuer.terminate()


async def start_busy_worker(server: RedisServer, client: aioredis.Redis, queue: str,
                            logdir: Path) -> tuple[WorkerProcess, list[str]]:
    ids = await Queue(client, queue).enqueue_many("work", payloads())
    worker = WorkerProcess(server.url, TARGET, queue, concurrency=10, lease_timeout=LEASE,
                           grace_period=GRACE, record=False, log_path=logdir / "worker.log")
    worker.start()
    await anyio.to_thread.run_sync(worker.wait_ready)
    await done_at_least(client, queue, 10)  # claiming and acking at full speed
    return worker, ids


async def test_sigterm_with_redis_frozen_exits_within_the_bound_and_loses_nothing(
    server: RedisServer, client: aioredis.Redis, tmp_path: Path,
):
    """SIGTERM to a busy ``leaseq worker`` while redis-server is frozen: it exits with 0
    within the bound (grace period, then releases given up after a bounded time) instead
    of waiting for Redis; once Redis is resumed, another worker finishes every job and
    none is lost or run more often than lease expiries explain."""
    worker, ids = await start_busy_worker(server, client, "frozen-term", tmp_path)
    try:
        with frozen(server):
            worker.send(signal.SIGTERM)
            began = time.monotonic()
            code = await exit_code(worker, BOUND)
            took = time.monotonic() - began
        assert code is not None, (
            f"the worker was still running {BOUND} s after SIGTERM with Redis frozen")
        assert code == 0, f"exit code {code}"
    finally:
        worker.kill()
    report = await drain_and_check(server, client, "frozen-term", ids, tmp_path)
    assert report.lost == 0 and not report.problems(), (report, took)


async def test_second_sigterm_with_redis_frozen_exits_within_the_bound(
    server: RedisServer, client: aioredis.Redis, tmp_path: Path,
):
    """A second SIGTERM, sent once the worker has handled the first, while redis-server is
    frozen: the worker stops at once (exit code 0) within the bound, and nothing is lost
    once Redis is resumed."""
    worker, ids = await start_busy_worker(server, client, "frozen-twice", tmp_path)
    try:
        with frozen(server):
            worker.send(signal.SIGTERM)
            await event_logged(worker, "signal_received")
            worker.send(signal.SIGTERM)
            code = await exit_code(worker, BOUND)
        assert code is not None, (
            f"the worker was still running {BOUND} s after two SIGTERMs with Redis frozen")
        assert code == 0, f"exit code {code}"
        assert [e.get("action") for e in worker.events()
                if e.get("event") == "signal_received"] == ["graceful stop", "immediate stop"]
    finally:
        worker.kill()
    report = await drain_and_check(server, client, "frozen-twice", ids, tmp_path)
    assert report.lost == 0 and not report.problems(), report


async def test_stop_with_redis_frozen_returns_from_run_within_the_bound(
    server: RedisServer, client: aioredis.Redis,
):
    """``Worker.stop()`` on an in-process worker while redis-server is frozen: ``run()``
    returns within the bound; after Redis is resumed another worker (with a reaper)
    finishes every job."""
    name = "frozen-inproc"
    ids = await Queue(client, name).enqueue_many("work", payloads())
    worker = Worker(Queue(client, name, lease_timeout=LEASE), HANDLERS, concurrency=10,
                    reaper=True, reaper_interval=0.2, grace_period=GRACE)
    returned = anyio.Event()

    async def run() -> None:
        try:
            await worker.run(handle_signals=False)
        finally:
            returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            await done_at_least(client, name, 10)
            with frozen(server):
                worker.stop()
                try:
                    with anyio.fail_after(BOUND):
                        await returned.wait()
                except TimeoutError:
                    pytest.fail(f"Worker.run did not return within {BOUND} s of stop() "
                                "with Redis frozen")
        finally:
            # Resumed (by `frozen`): a worker stuck on Redis finishes now, so the task
            # group can end even when the test failed.
            worker.kill()

    rescue_client = aioredis.Redis.from_url(server.url)
    try:
        await expire_leases(rescue_client, name)
        rescuer = Worker(Queue(rescue_client, name, lease_timeout=LEASE), HANDLERS,
                         concurrency=20, reaper=True, reaper_interval=0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: rescuer.run(handle_signals=False))
            await wait_drained(rescue_client, name, timeout=DRAIN_TIMEOUT)
            rescuer.stop()
        report = await check_invariants(rescue_client, name, ids)
    finally:
        await rescue_client.aclose()
    assert report.lost == 0 and not report.problems(), report
    assert report.done == JOBS
