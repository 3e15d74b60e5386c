"""The worker runtime, in-process: outcomes, concurrency, heartbeats, shutdown, logs."""

from __future__ import annotations

import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import structlog
from structlog.testing import capture_logs

from leaseq import Backoff, JobContext, Queue, Reaper, Task, Worker
from leaseq.testing import RedisServer

from .conftest import wait_for

NO_WAIT = Backoff(base=0.0, jitter=0.0)


async def echo(ctx: JobContext, payload: Any) -> Any:
    return payload


async def run_until_done(worker: Worker, timeout: float = 30.0) -> None:
    with anyio.fail_after(timeout):
        await worker.run(burst=True, handle_signals=False)


async def test_worker_runs_jobs_and_stores_results(redis: aioredis.Redis):
    q = Queue(redis, "w")
    ids = await q.enqueue_many("echo", [{"n": i} for i in range(50)])
    worker = Worker(q, {"echo": echo}, concurrency=8, reaper=False)
    await run_until_done(worker)
    assert [await q.wait(i, timeout=1) for i in ids] == [{"n": i} for i in range(50)]
    assert worker.counters["acked"] == 50
    stats = await q.stats()
    assert (stats.done, stats.in_progress, stats.todos) == (50, 0, 0)


async def test_map_over_1000_items_returns_results_in_order(real_redis: aioredis.Redis):
    q = Queue(real_redis, "mapper")

    async def square(ctx: JobContext, payload: int) -> int:
        return payload * payload

    worker = Worker(q, {"square": square}, concurrency=50, reaper=False, poll_interval=0.1)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: worker.run(handle_signals=False,
                                                      task_status=task_status))
        results = await q.map("square", list(range(1000)), timeout=60)
        worker.stop()
    assert results == [i * i for i in range(1000)]


async def test_at_most_concurrency_handlers_run_at_once(real_redis: aioredis.Redis):
    q = Queue(real_redis, "cap")
    running = 0
    peak = 0

    async def slow(ctx: JobContext, payload: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.02)
        running -= 1

    await q.enqueue_many("slow", [None] * 60)
    worker = Worker(q, {"slow": slow}, concurrency=5, reaper=False)
    await run_until_done(worker)
    assert peak == 5
    assert worker.counters["acked"] == 60


async def test_long_job_is_kept_alive_by_heartbeats_and_acked_once(real_redis: aioredis.Redis):
    q = Queue(real_redis, "long", lease_timeout=0.3)
    job_id = await q.enqueue("long", None)
    seen_tokens = set()

    async def long(ctx: JobContext, payload: Any) -> str:
        for _ in range(12):  # about 1.2 s: four lease lengths
            seen_tokens.add(ctx.lease.token)
            await anyio.sleep(0.1)
        return "finished"

    # An embedded reaper sweeping often would requeue the job if a heartbeat were missed.
    worker = Worker(q, {"long": long}, reaper=True, reaper_interval=0.05)
    await run_until_done(worker)
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.result, info.attempts, info.lease_expiries) == (
        "done", "finished", 1, 0)
    assert len(seen_tokens) == 1
    assert worker.counters == {"claimed": 1, "acked": 1, "failed": 0, "dead": 0,
                               "lease_lost": 0, "released": 0,
                               "cancelled": 0}


async def test_lost_lease_cancels_the_handler_and_its_late_result_is_never_acked(
    real_redis: aioredis.Redis,
):
    q = Queue(real_redis, "zombie", lease_timeout=1.5)
    job_id = await q.enqueue("hang", None)
    started = anyio.Event()
    cancelled = anyio.Event()

    async def hang(ctx: JobContext, payload: Any) -> str:
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "stale result"

    # One slot, so this worker cannot take the job back itself; the first heartbeat is
    # 0.5 s after the claim, long after the take-over below (a few round trips).
    worker = Worker(q, {"hang": hang}, concurrency=1, reaper=False)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            await started.wait()
            # Another worker takes the job over: the lease expires (as if this worker had
            # been paused), the reaper requeues it, a second consumer claims it.
            await real_redis.delete(q.keys.lease(job_id))
            other = Queue(real_redis, "zombie", lease_timeout=30.0)
            assert await Reaper(other).sweep() == 1
            new_lease = await other.claim()
            assert new_lease is not None
            with anyio.fail_after(10):
                await cancelled.wait()
            await other.ack(new_lease, result="new owner")
            worker.stop()
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.result) == ("done", "new owner")
    lost = [e for e in logs if e["event"] == "lease_lost"]
    assert len(lost) == 1
    assert lost[0]["job_id"] == job_id and lost[0]["log_level"] == "warning"
    assert worker.counters["lease_lost"] == 1
    assert worker.counters["acked"] == 0


async def test_handler_exceptions_are_retried_then_dead_with_the_error(
    real_redis: aioredis.Redis,
):
    q = Queue(real_redis, "flaky", max_attempts=3)
    job_id = await q.enqueue("boom", {"x": 1})
    calls = 0

    async def boom(ctx: JobContext, payload: Any) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"bad input on attempt {ctx.attempt}")

    worker = Worker(q, {"boom": boom}, reaper=False, backoff=NO_WAIT)
    with capture_logs() as logs:
        await run_until_done(worker)
    assert calls == 3
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.failures) == ("dead", 3)
    assert info.dead_reason is not None
    assert info.dead_reason.startswith("failed 3 times, last error: ValueError: bad input on "
                                       "attempt 3")
    assert "in boom" in info.dead_reason  # the traceback summary names the frame
    assert [e["event"] for e in logs if e["event"] in ("job_failed", "job_dead")] == [
        "job_failed", "job_failed", "job_dead"]


async def test_failed_jobs_back_off_exponentially(real_redis: aioredis.Redis):
    q = Queue(real_redis, "backoff", max_attempts=5)
    job_id = await q.enqueue("boom", None)

    async def boom(ctx: JobContext, payload: Any) -> None:
        raise RuntimeError("down")

    worker = Worker(q, {"boom": boom}, reaper=False,
                    backoff=Backoff(base=30.0, factor=2.0, jitter=0.0))
    await run_until_done(worker)
    info = await q.job(job_id)
    assert info is not None and info.state == "delayed"
    due = await real_redis.zscore(q.keys.delayed, job_id)
    server_now = (await real_redis.time())[0]
    assert 25 <= due / 1000 - server_now <= 31
    assert Backoff(base=1, factor=2, max=10, jitter=0).delay(3) == 4
    assert Backoff(base=1, factor=2, max=10, jitter=0).delay(9) == 10
    assert 2 <= Backoff(base=1, factor=2, jitter=0.5).delay(3) <= 4


async def test_timeout_cancels_the_handler_and_counts_as_a_failure(real_redis: aioredis.Redis):
    q = Queue(real_redis, "slow", max_attempts=1)
    job_id = await q.enqueue("hang", None)

    async def hang(ctx: JobContext, payload: Any) -> None:
        await anyio.sleep(60)

    worker = Worker(q, {"hang": Task(hang, timeout=0.1)}, reaper=False)
    await run_until_done(worker)
    info = await q.job(job_id)
    assert info is not None
    assert info.state == "dead"
    assert info.dead_reason == ("failed 1 times, last error: TimeoutError: handler timed out "
                                "after 0.1 s")


async def test_unknown_task_and_sys_exit_go_dead_and_the_worker_keeps_serving(
    redis: aioredis.Redis,
):
    q = Queue(redis, "mixed", max_attempts=1)

    async def leave(ctx: JobContext, payload: Any) -> None:
        sys.exit(3)

    unknown = await q.enqueue("no_such_task", None)
    exits = await q.enqueue("leave", None)
    good = await q.enqueue_many("echo", [1, 2, 3])
    worker = Worker(q, {"echo": echo, "leave": leave}, reaper=False)
    await run_until_done(worker)
    info = await q.job(unknown)
    assert info is not None and info.state == "dead"
    assert info.dead_reason == "unknown task 'no_such_task'; this worker handles ['echo', 'leave']"
    info = await q.job(exits)
    assert info is not None and info.state == "dead"
    assert info.dead_reason is not None and "SystemExit: 3" in info.dead_reason
    assert [await q.wait(i, timeout=1) for i in good] == [1, 2, 3]


async def test_unserialisable_result_is_a_failure_not_a_crash(redis: aioredis.Redis):
    q = Queue(redis, "ser", max_attempts=1)
    job_id = await q.enqueue("bad", None)

    async def bad(ctx: JobContext, payload: Any) -> Any:
        return {1, 2}

    await run_until_done(Worker(q, {"bad": bad}, reaper=False))
    info = await q.job(job_id)
    assert info is not None and info.state == "dead"
    assert info.dead_reason is not None and "SerializationError" in info.dead_reason


async def test_per_task_lease_timeout_and_max_attempts(real_redis: aioredis.Redis):
    q = Queue(real_redis, "pertask", lease_timeout=1.0, max_attempts=10)
    job_id = await q.enqueue("slowly", None)
    ttl_seen: list[int] = []

    async def slowly(ctx: JobContext, payload: Any) -> None:
        ttl_seen.append(await real_redis.pttl(q.keys.lease(ctx.job_id)))
        raise RuntimeError("nope")

    worker = Worker(q, {"slowly": Task(slowly, lease_timeout=120.0, max_attempts=2)},
                    reaper=False, backoff=NO_WAIT)
    await run_until_done(worker)
    assert len(ttl_seen) == 2
    assert all(ttl > 60_000 for ttl in ttl_seen)
    info = await q.job(job_id)
    assert info is not None and (info.state, info.attempts) == ("dead", 2)


async def test_graceful_stop_lets_running_handlers_finish(real_redis: aioredis.Redis):
    q = Queue(real_redis, "grace")
    ids = await q.enqueue_many("slow", [None] * 4)
    started = 0
    all_started = anyio.Event()

    async def slow(ctx: JobContext, payload: Any) -> str:
        nonlocal started
        started += 1
        if started == 4:
            all_started.set()
        await anyio.sleep(0.3)
        return "ok"

    worker = Worker(q, {"slow": slow}, concurrency=4, reaper=False, grace_period=30)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        await all_started.wait()
        await q.enqueue_many("slow", [None] * 5)  # must not be claimed after stop
        worker.stop()
    assert [await q.wait(i, timeout=1) for i in ids] == ["ok"] * 4
    stats = await q.stats()
    assert (stats.done, stats.todos, stats.in_progress) == (4, 5, 0)
    assert not await real_redis.keys(q.keys.prefix + "lease:*")


async def test_stop_past_the_grace_period_releases_leases_at_once(real_redis: aioredis.Redis):
    q = Queue(real_redis, "hard", lease_timeout=60.0)
    ids = await q.enqueue_many("hang", [None] * 3)
    started = 0
    all_started = anyio.Event()

    async def hang(ctx: JobContext, payload: Any) -> None:
        nonlocal started
        started += 1
        if started == 3:
            all_started.set()
        await anyio.sleep(60)

    worker = Worker(q, {"hang": hang}, concurrency=3, reaper=False, grace_period=0.1)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            await all_started.wait()
            worker.stop()
    stats = await q.stats()
    assert (stats.todos, stats.in_progress) == (3, 0)
    assert not await real_redis.keys(q.keys.prefix + "lease:*")
    for job_id in ids:
        info = await q.job(job_id)
        assert info is not None and info.attempts == 0  # a release does not count
    assert worker.counters["released"] == 3


async def test_idle_worker_wakes_on_enqueue_without_polling(real_redis: aioredis.Redis):
    q = Queue(real_redis, "wake")
    done = anyio.Event()

    async def mark(ctx: JobContext, payload: Any) -> None:
        done.set()

    # poll_interval is far longer than the deadline: only the wake-up list can do it.
    worker = Worker(q, {"mark": mark}, reaper=False, poll_interval=60.0)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: worker.run(handle_signals=False,
                                                      task_status=task_status))
        await anyio.sleep(0.1)  # let the worker go idle and block
        before = await _commands(real_redis)
        await anyio.sleep(0.5)
        idle_commands = await _commands(real_redis) - before - 1  # minus our own INFO
        await q.enqueue("mark", None)
        with anyio.fail_after(10):
            await done.wait()
        worker.stop()
    assert idle_commands <= 2  # blocked in BLPOP: no polling while idle


@pytest.mark.parametrize("how", ["stop", "cancel"])
async def test_an_idle_workers_wait_ends_at_once_and_what_its_claim_took_goes_back(
    real_redis: aioredis.Redis, how: str,
):
    """An idle worker waits in a BLPOP with its claim queued behind it. stop(), or its
    host cancelling it, ends the wait at once (not at the 60 s poll), and a job the claim
    then takes is released, not run."""
    q = Queue(real_redis, f"idle-{how}")
    ran: list[Any] = []

    async def record(ctx: JobContext, payload: Any) -> None:
        ran.append(payload)

    worker = Worker(q, {"t": record}, reaper=False, poll_interval=60.0)
    with anyio.fail_after(30):  # far less than the 60 s wait: only the stop can end it
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: worker.run(handle_signals=False,
                                                          task_status=task_status))
            await wait_for(lambda: _blocked(real_redis))
            # A delayed job wakes nobody; once due, the next claim promotes and takes it.
            job_id = await q.enqueue("t", "late", delay=0.2)
            await wait_for(lambda: _due(q, job_id))
            if how == "stop":
                worker.stop()
            else:
                tg.cancel_scope.cancel()
    assert ran == []
    assert worker.counters["released"] == 1
    info = await q.job(job_id)
    assert info is not None and info.state == "todo" and info.attempts == 0


async def _blocked(r: aioredis.Redis) -> bool:
    return int((await r.info("clients"))["blocked_clients"]) > 0


async def _due(q: Queue, job_id: str) -> bool:
    seconds, micros = await q.redis.time()
    score = await q.redis.zscore(q.keys.delayed, job_id)
    return score is not None and score <= seconds * 1000 + micros // 1000


async def _commands(r: aioredis.Redis) -> int:
    info = await r.info("stats")
    return int(info["total_commands_processed"])


async def test_several_workers_with_embedded_reapers_run_each_job_once(
    real_redis: aioredis.Redis,
):
    q = Queue(real_redis, "fleet")
    ids = await q.enqueue_many("count", list(range(600)))
    runs: list[int] = []

    async def count(ctx: JobContext, payload: int) -> int:
        runs.append(payload)
        return payload

    workers = [Worker(q, {"count": count}, concurrency=20, reaper=True, reaper_interval=0.01)
               for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for w in workers:
            tg.start_soon(run_until_done, w)
    assert sorted(runs) == list(range(600))
    assert sum(w.counters["acked"] for w in workers) == 600
    assert (await q.stats()).done == 600
    assert len(ids) == 600


async def test_logging_configured_between_runs_applies_to_the_next_run(redis: aioredis.Redis):
    # The worker resolves its job logger once per run (structlog's lazy proxy would
    # rebuild it for every line), so what is configured before a run is what it uses.
    q = Queue(redis, "relog")
    worker = Worker(q, {"echo": echo}, reaper=False)
    await q.enqueue("echo", 1)
    await run_until_done(worker)
    job_id = await q.enqueue("echo", 2)
    seen: list[MutableMapping[str, Any]] = []

    def keep(logger: Any, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        seen.append(event)
        raise structlog.DropEvent

    before = structlog.get_config()
    structlog.configure(processors=[keep])  # a new list, not capture_logs' in-place edit
    try:
        await run_until_done(worker)
    finally:
        structlog.configure(**before)
    assert [e["job_id"] for e in seen if e["event"] == "job_acked"] == [job_id]


async def test_every_job_logs_one_canonical_line_with_its_context(redis: aioredis.Redis):
    q = Queue(redis, "logs")
    job_id = await q.enqueue("echo", 1)
    worker = Worker(q, {"echo": echo}, reaper=False)
    with capture_logs() as logs:
        await run_until_done(worker)
    acked = [e for e in logs if e["event"] == "job_acked"]
    assert len(acked) == 1
    line = acked[0]
    assert (line["queue"], line["job_id"], line["attempt"], line["task"]) == (
        "logs", job_id, 1, "echo")
    assert line["token"] and line["duration"] >= 0


async def test_worker_survives_a_redis_restart(tmp_path: Any):
    with RedisServer(appendonly=True, appendfsync="always") as server:
        client = aioredis.Redis.from_url(server.url)
        q = Queue(client, "restart")
        results: list[int] = []

        async def record(ctx: JobContext, payload: int) -> int:
            results.append(payload)
            return payload

        worker = Worker(q, {"record": record}, reaper=True, reaper_interval=0.1,
                        poll_interval=0.1)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: worker.run(handle_signals=False))
                await q.enqueue("record", 1)
                await wait_for(lambda: _has(results, 1))
                await anyio.to_thread.run_sync(server.restart)
                await wait_for(lambda: _enqueue_ok(q, 2), timeout=20)
                await wait_for(lambda: _has(results, 2), timeout=20)
                worker.stop()
        finally:
            await client.aclose()
    assert results.count(2) >= 1


async def _has(results: list[int], value: int) -> bool:
    return value in results


async def _enqueue_ok(q: Queue, value: int) -> bool:
    try:
        await q.enqueue("record", value, job_id=f"job-{value}")
    except (OSError, aioredis.ConnectionError):
        return False
    return True


@pytest.mark.parametrize("bad", [{}, {"": echo}, {"t": 5}, []])
async def test_bad_handler_maps_are_refused(redis: aioredis.Redis, bad: Any):
    from leaseq import InvalidInput

    with pytest.raises(InvalidInput):
        Worker(Queue(redis, "q"), bad)


async def test_small_connection_pool_is_warned_about_and_shutdown_still_releases(
    redis_server: RedisServer,
):
    client = aioredis.Redis.from_url(redis_server.url, max_connections=12)
    try:
        await client.flushall()
        q = Queue(client, "tight", lease_timeout=60.0)
        await q.enqueue_many("hang", [None] * 40)
        started = 0
        all_started = anyio.Event()

        async def hang(ctx: JobContext, payload: Any) -> None:
            nonlocal started
            started += 1
            if started == 40:
                all_started.set()
            await anyio.sleep(60)

        with capture_logs() as logs:
            worker = Worker(q, {"hang": hang}, concurrency=40, reaper=False, grace_period=0)
        assert [e["event"] for e in logs] == ["connection_pool_small"]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: worker.run(handle_signals=False))
                await all_started.wait()
                worker.stop()
        stats = await q.stats()
        assert (stats.todos, stats.in_progress) == (40, 0)
        assert not await client.keys(q.keys.prefix + "lease:*")
        assert worker.counters["released"] == 40
    finally:
        await client.aclose()
