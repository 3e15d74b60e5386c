"""Progress and waiting without polling, against a real redis-server and the cluster
(the `redis` fixture's lanes): a handler's progress is stored fenced by its lease and
published; `wait()` is woken by the step that ends a job, and ten thousand concurrent
waiters share one subscription and a few round trips."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import (
    InvalidInput,
    JobContext,
    JobDead,
    JobNotFound,
    LeaseLost,
    Queue,
    WaitTimeout,
    Worker,
)
from leaseq.protocol import wait as _wait

from .conftest import wait_for


async def _subscribed(q: Queue) -> None:
    """Wait until the queue's waiters listen (the first wait() starts the subscription)."""
    async def up() -> bool:
        return q.finish_watch().subscribed.is_set()

    await wait_for(up)


async def _run_worker(q: Queue, handlers: dict[str, Any], body: Any, **options: Any) -> None:
    worker = Worker(q, handlers, **options)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        try:
            await body()
        finally:
            worker.stop()


async def test_a_handlers_progress_is_stored_and_shown(redis: aioredis.Redis) -> None:
    q = Queue(redis, "prog")
    reported = anyio.Event()
    go_on = anyio.Event()

    async def handler(ctx: JobContext, payload: Any) -> str:
        await ctx.progress(0.25, "a quarter", rows=25)
        reported.set()
        await go_on.wait()
        await ctx.progress(1.0)
        return "ok"

    async def body() -> None:
        job_id = await q.enqueue("h", None)
        with anyio.fail_after(10):
            await reported.wait()
        info = await q.job(job_id)
        assert info is not None and info.state == "in_progress"
        assert info.progress is not None
        assert (info.progress["fraction"], info.progress["message"],
                info.progress["data"]) == (0.25, "a quarter", {"rows": 25})
        assert isinstance(info.progress["at"], int)
        go_on.set()
        assert await q.wait(job_id, timeout=10) == "ok"
        done = await q.job(job_id)
        assert done is not None and done.progress is not None
        assert (done.progress["fraction"], done.progress["message"]) == (1.0, None)

    await _run_worker(q, {"h": handler}, body)


async def test_a_stale_holders_progress_is_refused(redis: aioredis.Redis) -> None:
    q = Queue(redis, "stale-progress", lease_timeout=60)
    await q.enqueue("t", None, job_id="j")
    old = await q.claim()
    assert old is not None
    await redis.delete(q.keys.lease("j"))  # what the server does when the lease expires
    from leaseq import Reaper
    assert await Reaper(q).sweep() == 1
    new = await q.claim()
    assert new is not None and new.token != old.token
    await q.progress(new, 0.5, "the new holder")
    with pytest.raises(LeaseLost):
        await q.progress(old, 0.9, "the old holder")
    info = await q.job("j")
    assert info is not None and info.progress is not None
    assert info.progress["message"] == "the new holder"


@pytest.mark.parametrize("bad", [
    {"fraction": 1.5}, {"fraction": -0.1}, {"fraction": float("nan")}, {"fraction": True},
    {"fraction": 0.5, "message": 3}, {"fraction": 0.5, "blob": object()},
    {"fraction": 0.5, "big": "x" * 70_000},
], ids=["over-1", "negative", "nan", "bool", "message-not-text", "blob-not-json",
        "over-64k"])
async def test_bad_progress_is_refused_before_anything_is_written(
        redis: aioredis.Redis, bad: dict[str, Any]) -> None:
    q = Queue(redis, "bad-progress")
    await q.enqueue("t", None, job_id="j")
    lease = await q.claim()
    assert lease is not None
    with pytest.raises(InvalidInput):
        await q.progress(lease, **bad)
    assert await redis.hget(q.keys.job("j"), "progress") is None


@pytest.mark.real_redis
async def test_progress_is_published_on_the_queues_channel(real_redis: aioredis.Redis) -> None:
    q = Queue(real_redis, "pub-progress")
    await q.enqueue("t", None, job_id="j")
    lease = await q.claim()
    assert lease is not None
    pubsub = real_redis.pubsub()
    await pubsub.subscribe(q.keys.progress)
    try:
        await q.progress(lease, 0.5, "half")
        with anyio.fail_after(5):
            while (message := await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=1)) is None:
                pass
        job_id, _, value = message["data"].decode().partition(" ")
        assert job_id == "j" and json.loads(value)["message"] == "half"
    finally:
        await pubsub.aclose()


async def test_wait_is_woken_by_the_ack_not_by_polling(redis: aioredis.Redis) -> None:
    """One waiter, a job that ends after a while: while it runs, the waiter sends no
    command (it listens); the ack wakes it."""
    q = Queue(redis, "woken")
    await q.enqueue("t", None, job_id="j")
    lease = await q.claim()
    assert lease is not None
    result: list[Any] = []

    async def waiter() -> None:
        result.append(await q.wait("j", timeout=30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await _subscribed(q)
        await anyio.sleep(0.5)  # a polling waiter would have looked ~10 times by now
        await q.ack(lease, "done")
    assert result == ["done"]


@pytest.mark.real_redis
async def test_ten_thousand_waiters_share_one_subscription_and_few_commands(
        real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # No fallback look while the run lasts, however slow the machine: a waiter that heard
    # nothing for FALLBACK seconds looks at its jobs again (and checks that they exist),
    # and this run takes longer than the 5 s default where the machine is loaded.
    monkeypatch.setattr(_wait, "FALLBACK", 3600.0)
    q = Queue(real_redis, "many")
    ids = await q.enqueue_many("t", [None] * 10_000)
    results: dict[str, Any] = {}

    async def waiter(job_id: str) -> None:
        results[job_id] = await q.wait(job_id, timeout=60)

    async with anyio.create_task_group() as tg:
        for job_id in ids:
            tg.start_soon(waiter, job_id)
        await _subscribed(q)
        await anyio.sleep(0.2)
        await real_redis.config_resetstat()
        while leases := await q.claim_many(500):
            await q.ack_many([(lease, lease.job_id) for lease in leases])
    assert results == {i: i for i in ids}
    stats = await real_redis.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
    # Twenty claim and ack batches of 500 (each claimed job: one HMGET inside the
    # claim script); the waiters' own reads after the acks: the states of the ids they
    # heard of (3 SMISMEMBER per coalesced read, how many reads depends on how the
    # wake-ups fall into turns of the event loop) and one HMGET of each result: well
    # under one read per waited job besides. A waiter that polled would send three
    # every few milliseconds, for each job, until it ended. (The same run has read the
    # states 21 times or about 1,000 or 2,000 times, as the wake-ups fell into turns.)
    assert calls.get("hmget", 0) <= 2 * 10_000 + 200, calls
    assert calls.get("smismember", 0) <= 3 * 10_000, calls
    assert calls.get("exists", 0) <= 10_000 // 2, calls
    clients = await real_redis.client_list()
    assert len(clients) < 50, len(clients)


async def test_a_zero_timeout_still_looks_once(redis: aioredis.Redis) -> None:
    """However short the timeout, the first look is made: a done job gives its result,
    an unknown id fails as unknown, and only a job still running times out. (A 1 ms
    timeout used to expire during the first round trips on a busy machine, and the
    dashboard answered 200 "not finished" for an id it should have called unknown.)"""
    q = Queue(redis, "once")
    await q.enqueue("t", None, job_id="done")
    lease = await q.claim()
    assert lease is not None
    await q.ack(lease, result=[1, 2])
    await q.enqueue("t", None, job_id="running")
    assert await q.claim() is not None
    assert await q.wait("done", timeout=0) == [1, 2]
    with pytest.raises(JobNotFound):
        await q.wait("nope", timeout=0)
    with pytest.raises(WaitTimeout):
        await q.wait("running", timeout=0)


async def test_wait_raises_at_once_when_the_job_ends_dead(redis: aioredis.Redis) -> None:
    q = Queue(redis, "dies", max_attempts=1)
    await q.enqueue("t", None, job_id="j")
    lease = await q.claim()
    assert lease is not None
    outcome: list[BaseException] = []

    async def waiter() -> None:
        try:
            await q.wait("j", timeout=30)
        except JobDead as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await _subscribed(q)
        with anyio.fail_after(5):
            await q.fail(lease, "boom")
            while not outcome:
                await anyio.sleep(0.01)
    assert "boom" in str(outcome[0])


async def _all_events(q: Queue, since: str = "0") -> list[Any]:
    return [e async for e in q.events(since, block=None)]


async def test_a_jobs_lifecycle_is_on_the_stream_in_order(redis: aioredis.Redis) -> None:
    q = Queue(redis, "lifecycle", events=1000, max_attempts=2)
    await q.enqueue("t", None, job_id="j")
    first = await q.claim()
    assert first is not None
    await q.progress(first, 0.5, "half")
    await q.fail(first, "boom")  # retried at once
    second = await q.claim()
    assert second is not None
    await q.ack(second, "ok")
    await q.enqueue("t", None, job_id="k")
    assert await q.cancel("k") == "cancelled"
    events = await _all_events(q)
    assert [(e.type, e.job_id) for e in events] == [
        ("enqueued", "j"), ("started", "j"), ("progress", "j"), ("failed", "j"),
        ("retried", "j"), ("started", "j"), ("acked", "j"), ("enqueued", "k"),
        ("cancelled", "k")]
    assert events[1].data["token"] == first.token
    assert events[3].data["error"] == "boom"
    assert events[6].data["attempt"] == "2"
    order = [tuple(int(p) for p in e.id.split("-")) for e in events]
    assert order == sorted(order) and len(set(order)) == len(order)


@pytest.mark.real_redis
async def test_an_ack_batch_records_an_acked_event_per_job(real_redis: aioredis.Redis) -> None:
    q = Queue(real_redis, "batchacked", events=1000)
    await q.enqueue_many("t", [None] * 3, job_ids=["a", "b", "c"])
    leases = await q.claim_many(3)
    assert await q.ack_many([(lease, lease.job_id) for lease in leases]) == [True] * 3
    acked = [e for e in await _all_events(q) if e.type == "acked"]
    assert sorted((e.job_id, e.data["attempt"]) for e in acked) == [
        ("a", "1"), ("b", "1"), ("c", "1")]
    assert [await q.wait(i, timeout=1) for i in "abc"] == ["a", "b", "c"]


async def test_the_stream_is_resumable_and_bounded(redis: aioredis.Redis) -> None:
    q = Queue(redis, "resume", events=50)
    await q.enqueue("t", None, job_id="a")
    (mark,) = await _all_events(q)
    await q.enqueue_many("t", [None] * 3, job_ids=["b", "c", "d"])
    after = await _all_events(q, since=mark.id)
    assert [e.job_id for e in after] == ["b", "c", "d"]
    await q.enqueue_many("t", [None] * 500)
    # MAXLEN ~ trims in whole nodes of the stream: about 50, never the 504 written.
    assert len(await _all_events(q)) < 250


async def test_a_queue_without_events_writes_no_stream(redis: aioredis.Redis) -> None:
    q = Queue(redis, "quiet")
    await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    await q.ack(lease)
    assert not await redis.exists(q.keys.stream)
    assert await _all_events(q) == []


async def test_events_from_now_on_wait_for_new_ones(redis: aioredis.Redis) -> None:
    q = Queue(redis, "live", events=100)
    await q.enqueue("t", None, job_id="old")
    seen: list[str] = []

    async def read() -> None:
        async for event in q.events("$", block=0.05):
            seen.append(event.job_id)
            if event.job_id == "new":
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.sleep(0.1)
        await q.enqueue("t", None, job_id="new")
    assert seen == ["new"]


@pytest.mark.parametrize("since", ["now", "12-x", "-1", ""])
async def test_a_bad_since_is_refused(redis: aioredis.Redis, since: str) -> None:
    q = Queue(redis, "badsince", events=10)
    with pytest.raises(InvalidInput):
        await _all_events(q, since)
