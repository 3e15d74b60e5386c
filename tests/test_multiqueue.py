"""One worker, several queues: priority, weights, wake-ups, routing, and crashes."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import InvalidInput, JobContext, Priority, Queue, Router, Weighted, Worker
from leaseq.runtime.acks import ack_batchers
from leaseq.runtime.claims import Claims
from leaseq.runtime.served import Served
from leaseq.testing import (
    RedisServer,
    WorkerProcess,
    check_invariants,
    wait_drained,
)

pytestmark = pytest.mark.real_redis


async def noop(ctx: JobContext, payload: Any) -> None:
    return None


def recorder(order: list[str], name: str) -> Any:
    async def handler(ctx: JobContext, payload: Any) -> None:
        order.append(name)

    return {"t": handler}


async def test_strict_priority_drains_high_before_low(real_redis: aioredis.Redis):
    high, low = Queue(real_redis, "high"), Queue(real_redis, "low")
    await low.enqueue_many("t", [None] * 50)
    await high.enqueue_many("t", [None] * 50)
    order: list[str] = []
    worker = Worker({high: recorder(order, "high"), low: recorder(order, "low")},
                    policy=Priority(), concurrency=4, reaper=False)
    with anyio.fail_after(60):
        await worker.run(burst=True, handle_signals=False)
    assert order == ["high"] * 50 + ["low"] * 50


def count_claims(monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, int]],
                 queue: Queue) -> None:
    """Record in ``calls`` each claim a worker sends ``queue``: its name and how many
    leases it got, in the order of all the recorded queues' claims."""
    claim_many = queue.claim_many

    async def counted(n: int, **options: Any) -> Any:
        leases = await claim_many(n, **options)
        calls.append((queue.name, len(leases)))
        return leases

    monkeypatch.setattr(queue, "claim_many", counted)


@pytest.mark.parametrize("recheck", [0.0, 3600.0])
async def test_an_empty_queue_ahead_is_not_asked_at_every_claim(
    real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, recheck: float,
):
    """Under Priority, an empty high queue was claimed from before every claim of the
    low queue with the work. Found empty, it is passed over for EMPTY_RECHECK (here an
    hour, against none at all: no clock decides the outcome) while the low queue has
    work, and asked again once every queue is empty."""
    monkeypatch.setattr("leaseq.runtime.claims.EMPTY_RECHECK", recheck)
    high, low = Queue(real_redis, "high"), Queue(real_redis, "low")
    await low.enqueue_many("t", [None] * 300)
    calls: list[tuple[str, int]] = []
    count_claims(monkeypatch, calls, high)
    count_claims(monkeypatch, calls, low)
    order: list[str] = []
    worker = Worker({high: recorder(order, "high"), low: recorder(order, "low")},
                    concurrency=4, reaper=False)
    with anyio.fail_after(60):
        await worker.run(burst=True, handle_signals=False)
    assert order == ["low"] * 300
    # The drain: up to the low queue's last claim that got jobs (what comes after it,
    # the claims that find both empty, follows how the last jobs finish).
    last = max(i for i, (name, got) in enumerate(calls) if name == "low" and got)
    drain = calls[:last + 1]
    productive = sum(1 for name, got in drain if name == "low" and got)
    asked_high = sum(1 for name, _ in drain if name == "high")
    assert productive >= 300 // 4
    assert asked_high == (1 if recheck else productive)


async def test_work_for_a_passed_over_queue_still_runs(
    real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
):
    """A job enqueued to a queue while it is passed over starts once the other queues
    run dry, at the latest (here EMPTY_RECHECK is an hour): late, never lost."""
    monkeypatch.setattr("leaseq.runtime.claims.EMPTY_RECHECK", 3600.0)
    high, low = Queue(real_redis, "high"), Queue(real_redis, "low")
    await low.enqueue_many("t", list(range(200)))
    order: list[str] = []

    async def low_job(ctx: JobContext, payload: Any) -> None:
        order.append("low")
        if payload == 20:
            await high.enqueue("t", None)

    worker = Worker({high: recorder(order, "high"), low: {"t": low_job}}, concurrency=4,
                    reaper=False)
    with anyio.fail_after(60):
        await worker.run(burst=True, handle_signals=False)
    assert sorted(order) == ["high"] + ["low"] * 200
    assert worker.counters["acked"] == 201
    assert (await high.stats()).done == 1


async def test_a_claim_that_finds_nothing_elsewhere_asks_the_passed_over_queues(
    real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
):
    """No claim comes back empty without having asked every queue, so a burst worker
    never ends while a passed-over queue has work."""
    monkeypatch.setattr("leaseq.runtime.claims.EMPTY_RECHECK", 3600.0)
    high, low = Queue(real_redis, "high"), Queue(real_redis, "low")
    acks = ack_batchers([high, low])
    claims = Claims({"high": Served(high, {"t": noop}, acks["high"]),
                     "low": Served(low, {"t": noop}, acks["low"])}, Priority())
    await low.enqueue_many("t", [None, None])
    [first] = await claims.claim(1)  # high found empty (passed over from now), low had 2
    assert first.queue == "low"
    assert await Queue(real_redis, "low").claim() is not None  # another worker's
    job = await high.enqueue("t", None)
    [second] = await claims.claim(1)  # low has nothing now: high is asked after all
    assert (second.queue, second.job_id) == ("high", job)


async def test_weighted_shares_follow_the_weights(real_redis: aioredis.Redis):
    a, b = Queue(real_redis, "a"), Queue(real_redis, "b")
    await a.enqueue_many("t", [None] * 3000)
    await b.enqueue_many("t", [None] * 3000)
    order: list[str] = []
    worker = Worker({a: recorder(order, "a"), b: recorder(order, "b")},
                    policy=Weighted({"a": 3, "b": 1}), concurrency=1, reaper=False)

    async def stop_at(n: int) -> None:
        while len(order) < n:
            await anyio.sleep(0.005)
        worker.stop()

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_at, 2000)
            await worker.run(handle_signals=False)
    sample = order[:2000]
    ratio = sample.count("a") / sample.count("b")
    assert 2.7 <= ratio <= 3.3, ratio


async def test_weighted_low_queue_is_not_starved_by_a_flood(real_redis: aioredis.Redis):
    high, low = Queue(real_redis, "flood"), Queue(real_redis, "trickle")
    await high.enqueue_many("t", [None] * 3000)
    await low.enqueue("t", None)
    order: list[str] = []
    worker = Worker({high: recorder(order, "high"), low: recorder(order, "low")},
                    policy=Weighted({"flood": 10, "trickle": 1}), concurrency=2, reaper=False)

    async def stop_when_low_ran() -> None:
        while "low" not in order:
            await anyio.sleep(0.005)
        worker.stop()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_low_ran)
            await worker.run(handle_signals=False)
    # With weights 10:1 the low job gets one of the first ~11 slots, not the 3001st.
    assert order.index("low") <= 15


async def test_idle_worker_wakes_on_any_of_its_queues(real_redis: aioredis.Redis):
    queues = [Queue(real_redis, f"q{i}") for i in range(3)]
    done = anyio.Event()

    async def mark(ctx: JobContext, payload: Any) -> None:
        done.set()

    worker = Worker({q: {"t": mark} for q in queues}, reaper=False, poll_interval=60)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: worker.run(handle_signals=False,
                                                      task_status=task_status))
        await anyio.sleep(0.1)
        await queues[2].enqueue("t", None)
        with anyio.fail_after(10):  # far below the 60 s poll: only a wake-up can do it
            await done.wait()
        worker.stop()


async def test_each_queue_keeps_its_own_handlers_and_settings(real_redis: aioredis.Redis):
    fast = Queue(real_redis, "fast", lease_timeout=5, max_attempts=1)
    slow = Queue(real_redis, "slow", lease_timeout=120, max_attempts=3)
    seen: dict[str, tuple[float, int]] = {}

    async def look(ctx: JobContext, payload: Any) -> str:
        seen[ctx.queue.name] = (ctx.lease.lease_timeout, ctx.max_attempts)
        return ctx.queue.name

    await fast.enqueue("fast_task", None)
    await slow.enqueue("slow_task", None)
    worker = Worker({fast: {"fast_task": look}, slow: {"slow_task": look}}, reaper=True)
    with anyio.fail_after(60):
        await worker.run(burst=True, handle_signals=False)
    assert seen == {"fast": (5.0, 1), "slow": (120.0, 3)}
    assert worker.counters["acked"] == 2


async def test_router_sends_tasks_to_their_queues(real_redis: aioredis.Redis):
    emails, images, misc = (Queue(real_redis, n) for n in ("emails", "images", "misc"))
    router = Router({"send_email": emails, "resize": images}, default=misc)
    await router.enqueue("send_email", {"to": "a@b.c"})
    await router.enqueue_many("resize", [1, 2])
    await router.enqueue("anything", None)
    assert [(await q.stats()).todos for q in (emails, images, misc)] == [1, 2, 1]
    strict = Router({"send_email": emails})
    with pytest.raises(InvalidInput, match="no queue for task 'other'"):
        await strict.enqueue("other", None)
    assert (await emails.stats()).todos == 1


def test_bad_worker_routes_are_refused():
    client = aioredis.Redis()
    q = Queue(client, "q")
    with pytest.raises(InvalidInput, match="needs the handlers"):
        Worker(q)
    with pytest.raises(InvalidInput, match="each queue once"):
        Worker({q: recorder([], "x"), Queue(client, "q"): recorder([], "y")})
    with pytest.raises(InvalidInput, match="weight"):
        Weighted({"q": 0})


async def test_sigkill_across_three_queues_loses_nothing(redis_server: RedisServer):
    names = ["mq-a", "mq-b", "mq-c"]
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.flushall()
        ids = {n: await Queue(client, n).enqueue_many(
            "work", [{"v": i, "s": random.uniform(0, 0.01)} for i in range(300)])
            for n in names}
        extra = ["--queue", "mq-b", "--queue", "mq-c", "--policy", "weighted",
                 "--weight", "mq-a=2"]
        workers = [WorkerProcess(redis_server.url, "tests.chaos.handlers:HANDLERS", "mq-a",
                                 concurrency=10, lease_timeout=1.0, extra_args=extra)
                   for _ in range(2)]
        for w in workers:
            w.start()
        for _ in range(4):
            await anyio.sleep(0.3)
            victim = random.choice(workers)
            victim.kill()
            victim.start()
        for n in names:
            await wait_drained(client, n, timeout=120)
            report = await check_invariants(client, n, ids[n])
            assert report.problems() == [], (n, report)
            assert report.done == 300
        for w in workers:
            w.wait_ready()  # a worker restarted a moment ago may still be starting up
            assert w.terminate() == 0
    finally:
        await client.aclose()


async def test_a_server_that_goes_away_stalls_only_its_own_queue(
    real_redis: aioredis.Redis,
):
    # Queues on two clients: the idle wait runs one BLPOP per client in a task group, and
    # an error in one (a node failing over, say) must be handled there, not crash the
    # worker; claims skip the dead server's queue meanwhile, and once it is back both
    # queues are served.
    with RedisServer() as other:
        client = aioredis.Redis.from_url(other.url, socket_connect_timeout=0.5)
        here, there = Queue(real_redis, "here"), Queue(client, "there")
        await there.prepare()
        worker = Worker({here: {"t": _noop}, there: {"t": _noop}}, reaper=False,
                        poll_interval=2.0)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: worker.run(handle_signals=False))
                await anyio.sleep(0.3)  # now idle, in BLPOP on both servers
                other.kill()
                await anyio.sleep(0.5)
                # While one server is down, the other's queue is still served.
                job_id = await here.enqueue("t", None)
                assert await here.wait(job_id, timeout=60) is None
                other.start()
                ids = [await here.enqueue("t", None), await there.enqueue("t", None)]
                assert await here.wait(ids[0], timeout=60) is None
                assert await there.wait(ids[1], timeout=60) is None
                worker.stop()
        finally:
            await client.aclose()


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None
