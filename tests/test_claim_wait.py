"""``claim_many(wait=...)``: a claim that first waits for work, written with its BLPOP on
one connection (plain and Sentinel clients), or after it (cluster, single connection)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from leaseq import InvalidInput, Lease, Queue, Worker
from leaseq.protocol import scripts
from leaseq.testing import RedisServer, WorkerProcess

from .conftest import wait_for
from .helpers.tasks import HANDLERS


class Counting(Connection):
    """Counts the writes (round trips) its client sends, and the claim script calls in
    them."""

    writes = 0
    claims = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        sent = command if isinstance(command, (bytes, bytearray)) else b"".join(command)
        Counting.writes += 1
        Counting.claims += sent.count(scripts.CLAIM.sha.encode())
        await super().send_packed_command(command, check_health)


async def _ran(done: list[int], n: int) -> bool:
    return len(done) >= n


async def _blocked(r: aioredis.Redis) -> bool:
    info = await r.info("clients")
    return int(info["blocked_clients"]) > 0


async def test_a_waiting_claim_takes_a_job_already_waiting_at_once(redis: aioredis.Redis):
    q = Queue(redis, "ready")
    ids = await q.enqueue_many("t", [1, 2])
    with anyio.fail_after(10):  # the BLPOP finds the wake token: no waiting
        leases = await q.claim_many(5, wait=60)
    assert sorted(lease.job_id for lease in leases) == sorted(ids)
    assert [lease.attempt for lease in leases] == [1, 1]


async def test_a_waiting_claim_with_nothing_to_claim_returns_none_after_the_wait(
    redis: aioredis.Redis,
):
    q = Queue(redis, "nothing")
    assert await q.claim_many(3, wait=0.05) == []


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "1", True])
async def test_a_bad_wait_is_refused_before_anything_is_sent(redis: aioredis.Redis, bad: Any):
    with pytest.raises(InvalidInput):
        await Queue(redis, "badwait").claim_many(1, wait=bad)


@pytest.mark.real_redis
async def test_a_job_enqueued_during_the_wait_is_claimed_in_the_same_round_trip(
    redis_server: RedisServer, real_redis: aioredis.Redis,
):
    client = aioredis.Redis.from_url(redis_server.url, connection_class=Counting)
    try:
        q = Queue(client, "meanwhile")
        await q.prepare()  # the queue's settings are read and written before the count
        await client.script_load(scripts.CLAIM.source)
        got: list[Lease] = []

        async def claim() -> None:
            got.extend(await q.claim_many(5, wait=60))

        async with anyio.create_task_group() as tg:
            Counting.writes = 0
            tg.start_soon(claim)
            await wait_for(lambda: _blocked(real_redis))
            job_ids = await Queue(real_redis, "meanwhile").enqueue_many("t", [1, 2])
        assert sorted(lease.job_id for lease in got) == sorted(job_ids)
        assert Counting.writes == 1  # CLIENT ID, BLPOP and the claim, written together
        assert await real_redis.scard(q.keys.in_progress) == 2
    finally:
        await client.aclose()


@pytest.mark.real_redis
async def test_a_lease_taken_after_a_wait_counts_from_the_claim_not_the_send(
    real_redis: aioredis.Redis,
):
    """The lease's local deadline is never later than the truth, and not early by the
    time spent waiting either (Redis's clock measures the wait)."""
    q = Queue(real_redis, "deadline", lease_timeout=30.0)
    await real_redis.script_load(scripts.CLAIM.source)  # else the claim runs after a NOSCRIPT
    got: list[Lease] = []

    async def claim() -> None:
        got.extend(await q.claim_many(1, wait=60))

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim)
        await wait_for(lambda: _blocked(real_redis))
        await anyio.sleep(1.0)  # a wait the deadline must not lose
        enqueued_at = time.monotonic()
        await Queue(real_redis, "deadline").enqueue("t", 1)
    answered_at = time.monotonic()
    (lease,) = got
    # The claim ran between the enqueue and the answer; half the wait is the margin.
    assert enqueued_at + 30.0 - 0.5 < lease.local_deadline <= answered_at + 30.0


@pytest.mark.real_redis
async def test_an_interrupt_ends_the_wait_and_the_claim_still_runs(real_redis: aioredis.Redis):
    q = Queue(real_redis, "interrupted")
    ids = await q.enqueue_many("t", [1, 2, 3])
    await real_redis.delete(q.keys.wake)  # jobs wait, but no token wakes the BLPOP
    interrupt = anyio.Event()
    got: list[Lease] = []

    async def claim() -> None:
        got.extend(await q.claim_many(5, wait=60, interrupt=interrupt))

    with anyio.fail_after(30):  # far less than the 60 s wait: only the interrupt ends it
        async with anyio.create_task_group() as tg:
            tg.start_soon(claim)
            await wait_for(lambda: _blocked(real_redis))
            interrupt.set()
    assert sorted(lease.job_id for lease in got) == sorted(ids)


async def test_a_claim_says_whether_it_left_nothing_waiting(redis: aioredis.Redis):
    q = Queue(redis, "left")
    await q.enqueue_many("t", [1, 2, 3])
    assert len(await q.claim_many(2)) == 2
    assert not q.nothing_waiting  # one job still waits
    assert len(await q.claim_many(2)) == 1
    assert q.nothing_waiting  # it took the last one
    assert await q.claim_many(1) == [] and q.nothing_waiting
    await q.enqueue("t", 4)
    await q.pause()
    assert await q.claim_many(1) == [] and not q.nothing_waiting  # held back, not empty
    await q.resume()
    assert len(await q.claim_many(5, wait=30)) == 1 and q.nothing_waiting


@pytest.mark.real_redis
async def test_an_idle_worker_sends_one_claim_per_job_of_a_trickle(redis_server: RedisServer):
    """A claim that took the last waiting job says so, and the idle worker's next claim
    waits for work instead of asking at once to find nothing: one claim per job."""
    client = aioredis.Redis.from_url(redis_server.url, connection_class=Counting)
    try:
        await client.flushall()
        q = Queue(client, "trickle")
        done: list[int] = []

        async def t(ctx: Any, payload: int) -> None:
            done.append(payload)

        worker = Worker(q, {"t": t}, poll_interval=60)  # no wait ends by its timeout
        await client.script_load(scripts.CLAIM.source)  # no call sent twice for NOSCRIPT
        Counting.claims = 0
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                for i in range(5):
                    await wait_for(lambda: _blocked(client))  # the worker waits for work
                    await q.enqueue("t", i)
                    await wait_for(lambda n=i + 1: _ran(done, n))
                await wait_for(lambda: _blocked(client))
                # The claim at start-up (it found nothing), one waiting claim per job, and
                # the one waiting now; a claim sent after each job only to find nothing
                # would add at least five.
                assert Counting.claims == 5 + 2
                worker.stop()
    finally:
        await client.aclose()


@pytest.mark.real_redis
@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize("end", ["woken", "interrupted", "cancelled"])
async def test_a_waiting_claim_leaves_no_task_behind(
    redis_server: RedisServer, real_redis: aioredis.Redis, end: str, single: bool,
):
    """The task that watches the interrupt during the wait is gone once the claim
    returns, however the wait ended: a worker waits anew after every idle spell. Both
    ways of waiting: behind the BLPOP on a pooled connection, or after it."""
    client = aioredis.Redis.from_url(redis_server.url, single_connection_client=single)
    q = Queue(client, f"tidy-{end}-{single}")
    await q.prepare()
    interrupt = anyio.Event()
    before = asyncio.all_tasks()

    async def claim() -> None:
        await q.claim_many(1, wait=60, interrupt=interrupt)

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claim)
                await wait_for(lambda: _blocked(real_redis))
                if end == "woken":
                    await Queue(real_redis, q.name).enqueue("t", 1)
                elif end == "interrupted":
                    interrupt.set()
                else:
                    tg.cancel_scope.cancel()
        for _ in range(3):  # a cancelled task ends at its next step
            await asyncio.sleep(0)
        assert asyncio.all_tasks() == before
    finally:
        await client.aclose()


@pytest.mark.real_redis
async def test_a_waiting_claim_loads_its_script_when_the_server_lost_it(
    real_redis: aioredis.Redis,
):
    q = Queue(real_redis, "noscript")
    (job_id,) = await q.enqueue_many("t", [1])
    await real_redis.script_flush()
    leases = await q.claim_many(2, wait=30)
    assert [lease.job_id for lease in leases] == [job_id]
    assert leases[0].attempt == 1


@pytest.mark.real_redis
async def test_a_cancelled_wait_is_recovered_by_the_next_claim(real_redis: aioredis.Redis):
    q = Queue(real_redis, "cancelled")
    with anyio.move_on_after(0.2):
        await q.claim_many(1, wait=60)
    # Whether or not the claim ran, the next claim finds no lease lost and nothing held.
    (job_id,) = await q.enqueue_many("t", [1])
    leases = await q.claim_many(1)
    assert [lease.job_id for lease in leases] == [job_id]
    assert await real_redis.scard(q.keys.in_progress) == 1


async def _claims_then_ends_its_wait(q: Queue, wait: float) -> None:
    """A waiting job is claimed at once; with the interrupt set, a wait of ``wait``
    seconds on an empty queue ends (at once, or at its timeout) with nothing claimed."""
    (job_id,) = await q.enqueue_many("t", [1])
    assert [lease.job_id for lease in await q.claim_many(1, wait=30)] == [job_id]
    interrupt = anyio.Event()
    interrupt.set()
    with anyio.fail_after(30):
        assert await q.claim_many(1, wait=wait, interrupt=interrupt) == []


@pytest.mark.real_redis
async def test_a_single_connection_client_waits_then_claims(redis_server: RedisServer):
    client = aioredis.Redis.from_url(redis_server.url, single_connection_client=True)
    try:
        await client.flushall()
        await _claims_then_ends_its_wait(Queue(client, "single"), wait=60)
    finally:
        await client.aclose()


@pytest.mark.real_redis
@pytest.mark.parametrize("single", [True, False])
async def test_a_socket_timeout_shorter_than_the_wait_is_not_an_error(
    redis_server: RedisServer, single: bool,
):
    """Whether the claim waits behind its BLPOP (pool) or after it (single connection),
    a client's socket_timeout shorter than the wait only ends the wait."""
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.1,
                                     single_connection_client=single)
    try:
        q = Queue(client, f"short-{single}")
        assert await q.claim_many(1, wait=0.3) == []
    finally:
        await client.aclose()


@pytest.mark.real_redis
@pytest.mark.parametrize("denied", ["-client", "-client|unblock"])
async def test_a_user_denied_client_unblock_still_claims_and_its_interrupt_ends_the_wait(
    redis_server: RedisServer, real_redis: aioredis.Redis, denied: str,
):
    """Without CLIENT UNBLOCK (an ACL), an interrupt closes the waiting connection
    instead: the wait ends at once, with no leases, and nothing is left claimed."""
    await real_redis.execute_command(
        "ACL", "SETUSER", "nounblock", "reset", "on", ">pw", "~*", "&*", "+@all", denied)
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port, username="nounblock",
                            password="pw")
    try:
        q = Queue(client, "acl")
        await _claims_then_ends_its_wait(q, wait=60)
        (job_id,) = await q.enqueue_many("t", [2])
        assert [lease.job_id for lease in await q.claim_many(1)] == [job_id]
        assert await real_redis.scard(q.keys.in_progress) == 2  # the two claimed, no more
    finally:
        await client.aclose()
        await real_redis.execute_command("ACL", "DELUSER", "nounblock")


@pytest.mark.real_redis
async def test_a_worker_frozen_while_idle_is_handed_one_job_at_most(
    redis_server: RedisServer, real_redis: aioredis.Redis,
):
    """Redis runs a waiting claim whether or not its process can still run: a worker
    frozen while idle (SIGSTOP) is handed one job, which it runs once thawed; the other
    jobs go to a worker that runs."""
    q = Queue(real_redis, "frozen", lease_timeout=60.0)
    proc = WorkerProcess(redis_server.url, "tests.helpers.tasks:HANDLERS", "frozen",
                         concurrency=10, lease_timeout=60.0, reaper=False, record=False)
    try:
        proc.start()
        await anyio.to_thread.run_sync(proc.wait_ready)
        await wait_for(lambda: _blocked(real_redis))  # idle, in its waiting claim
        proc.stop()  # SIGSTOP
        ids = await q.enqueue_many("echo", list(range(20)))
        with anyio.fail_after(60):
            await Worker(q, HANDLERS, reaper=False).run(burst=True, handle_signals=False)
        stats = await q.stats()
        assert (stats.done, stats.in_progress, stats.todos) == (19, 1, 0)
        proc.cont()

        async def all_done() -> bool:
            return (await q.stats()).done == 20

        await wait_for(all_done, timeout=30)
        assert [await q.wait(i, timeout=1) for i in ids] == list(range(20))
    finally:
        proc.cont()
        proc.kill()
