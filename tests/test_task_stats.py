"""Per-task statistics: what each task did per minute, how long its handler takes, and
how many of its jobs wait, run or are dead."""

from __future__ import annotations

from typing import Any

import anyio
import redis.asyncio as aioredis

from leaseq import Backoff, JobContext, Queue, Worker

NO_WAIT = Backoff(base=0.0, jitter=0.0)


async def test_outcomes_durations_and_states_per_task(redis: aioredis.Redis):
    q = Queue(redis, "pertask", max_attempts=1)

    async def quick(ctx: JobContext, payload: Any) -> None:
        return None

    async def slow(ctx: JobContext, payload: Any) -> None:
        await anyio.sleep(0.03)
        if payload == "boom":
            raise ValueError("boom")

    await q.enqueue_many("quick", [None] * 6)
    await q.enqueue_many("slow", [None, None, "boom"])
    worker = Worker(q, {"quick": quick, "slow": slow}, reaper=False, backoff=NO_WAIT)
    with anyio.fail_after(30):
        await worker.run(burst=True, handle_signals=False)  # flushes once on the way out
    await q.enqueue_many("slow", [None] * 2)
    await q.enqueue("quick", None, delay=600)

    stats = await q.task_stats(minutes=5)
    quick_s, slow_s = stats["tasks"]["quick"], stats["tasks"]["slow"]
    assert quick_s["totals"] == {"acked": 6, "failed": 0, "dead": 0}
    assert slow_s["totals"] == {"acked": 2, "failed": 0, "dead": 1}
    assert len(quick_s["per_minute"]["acked"]) == 5
    assert quick_s["p95_s"] is not None and quick_s["p95_s"] <= 0.02
    assert 0.02 < slow_s["p50_s"] <= 0.5  # 30 ms falls in the (20, 50] ms bucket or later
    assert slow_s["states"] == {"todo": 2, "delayed": 0, "in_progress": 0, "dead": 1}
    assert quick_s["states"]["delayed"] == 1
    assert stats["sampled"] is False


async def test_a_flush_sent_again_counts_once(redis: aioredis.Redis):
    """A flush whose reply was lost is retried with its reply record: counted once."""
    from leaseq.runtime.taskstats import TaskStats

    q = Queue(redis, "again")
    stats = TaskStats([q])
    stats.outcome("again", "t", "acked")
    stats.outcome("again", "t", "acked")
    await stats.flush()
    assert not stats._pending
    # What a re-sent call would carry: same minute key, same reply record.
    (key,) = [k async for k in redis.scan_iter(match=q.keys.prefix + "taskstats:*")]
    replies = [k async for k in redis.scan_iter(match=q.keys.prefix + "reply:*")]
    from leaseq.protocol import scripts

    again = await scripts.TASKSTATS(redis, [key, replies[0]],
                                     [7200, 600, "t\x1facked", 2])
    assert int(again) == 0
    # The record outlives every retry the worker would make (64 flushes of 5 s).
    assert await redis.ttl(replies[0]) > 64 * 5
    assert (await q.task_stats())["tasks"]["t"]["totals"]["acked"] == 2
