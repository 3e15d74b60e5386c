"""Scheduling controls (docs/scheduling.md): fifo order and priority, fair queueing by
key, concurrency and rate limits, start deadlines, pause and resume, and the agreement of
processes on the stored controls. Each test states the behaviour a user sees.

Most run on the real server only; the ordering tests run on every lane (fakeredis, the
real server and the cluster). Nothing here is timed except the rate test, which counts
starts by Redis time over a window (see its docstring for the tolerance).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import (
    InvalidInput,
    JobContext,
    Queue,
    Rate,
    Reaper,
    SettingsConflict,
    Worker,
)
from leaseq.runtime.metrics import Metrics
from leaseq.testing import RedisServer, WorkerProcess, check_invariants, wait_drained

from .conftest import wait_for

TARGET = "tests.chaos.handlers:HANDLERS"


async def redis_ms(r: aioredis.Redis) -> int:
    """Redis's clock, in ms (the clock every control is decided by)."""
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def wait_until_redis_passes(r: aioredis.Redis, at_s: float) -> None:
    """Wait until Redis's clock is past ``at_s`` (Unix seconds)."""

    async def passed() -> bool:
        return await redis_ms(r) > at_s * 1000

    await wait_for(passed, timeout=10)


async def claim_all_one_by_one(q: Queue) -> list[str]:
    """Claim one job at a time until none is waiting; the ids in claim order (the leases
    are left to run out: some tests give jobs 50 ms leases)."""
    order = []
    while (lease := await q.claim()) is not None:
        order.append(lease.job_id)
    return order


async def command_calls(r: aioredis.Redis) -> dict[str, int]:
    """INFO commandstats as {command: calls} (commands run by scripts are counted)."""
    return {name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in (await r.info("commandstats")).items()}


def stop_all(procs: list[WorkerProcess]) -> None:
    for p in procs:
        p.send(15)  # SIGTERM all at once, they drain in parallel
    for p in procs:
        p.terminate()


# -- 1, 2. order ------------------------------------------------------------------------------

async def test_one_claimer_on_a_fifo_queue_gets_jobs_in_enqueue_order(redis: aioredis.Redis):
    q = Queue(redis, "order", ordering="fifo")
    ids = [await q.enqueue("t", {"i": i}) for i in range(200)]
    assert await claim_all_one_by_one(q) == ids


async def test_jobs_are_claimed_by_priority_then_enqueue_order(redis: aioredis.Redis):
    q = Queue(redis, "prio", ordering="fifo")
    rnd = random.Random(7)
    priorities = [rnd.choice([-1000, -3, 0, 0, 2, 5, 1000]) for _ in range(60)]
    ids = [await q.enqueue("t", None, priority=p) for p in priorities]
    expected = [job for _, _, job in sorted(
        (-p, i, job) for i, (p, job) in enumerate(zip(priorities, ids, strict=True)))]
    assert await claim_all_one_by_one(q) == expected
    assert (await q.job(ids[0])).priority == priorities[0]  # type: ignore[union-attr]


async def test_a_reaped_job_goes_back_to_its_place_a_failed_one_behind(redis: aioredis.Redis):
    q = Queue(redis, "place", ordering="fifo")
    # Reaped: its lease expired, so it goes back ahead of everything enqueued after it.
    first = await q.enqueue("t", "first", lease_timeout=0.05)
    later = [await q.enqueue("t", f"later{i}") for i in range(3)]
    lease = await q.claim()
    assert lease is not None and lease.job_id == first
    newest = await q.enqueue("t", "newest")

    async def lease_gone() -> bool:
        return not await redis.exists(q.keys.lease(first))

    await wait_for(lease_gone)
    assert await Reaper(q).sweep() == 1
    assert await claim_all_one_by_one(q) == [first, *later, newest]

    # Released: back to its place too. Failed and retried: behind newer work.
    a, b, c = [await q.enqueue("t", x) for x in "abc"]
    lease = await q.claim()
    assert lease is not None and lease.job_id == a
    await q.release(lease)
    lease = await q.claim()
    assert lease is not None and lease.job_id == a
    assert await q.fail(lease, "boom") == "todo"
    assert await claim_all_one_by_one(q) == [b, c, a]


# -- 3. fair queueing -------------------------------------------------------------------------

@pytest.mark.real_redis
@pytest.mark.timeout(180)
async def test_a_one_job_key_is_not_starved_by_a_million_job_key(
        real_redis: aioredis.Redis, redis_server: RedisServer):
    # A batch of 50,000 takes the server a fraction of a second, but several seconds on a
    # loaded machine: longer than redis-py's default 5 s read timeout.
    patient = aioredis.Redis.from_url(redis_server.url, socket_timeout=120)
    q = Queue(patient, "fair", ordering="fifo")
    batch, batches = 50_000, 20

    async def produce(part: int) -> None:
        for _ in range(part, batches, 2):
            await q.enqueue_many("t", [None] * batch, key="big")

    try:
        # Two producers so that one batch is packed while Redis runs the other (the
        # order inside "big" does not matter here).
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce, 0)
            tg.start_soon(produce, 1)
        small = await q.enqueue("t", None, key="small")
        assert (await q.stats()).todos == batch * batches + 1
        first_two = [await q.claim(), await q.claim()]
        assert small in [lease.job_id for lease in first_two if lease is not None]
        # A claim's work does not grow with the million waiting jobs: ten jobs in one
        # script call, a bounded number of commands.
        await real_redis.config_resetstat()
        leases = await q.claim_many(10)
        calls = await command_calls(real_redis)
        assert len(leases) == 10
        assert calls["evalsha"] == 1
        assert sum(calls.values()) < 200, calls
    finally:
        await real_redis.flushall(asynchronous=True)  # 1M jobs: freed in the background
        await patient.aclose()


async def test_a_claim_of_many_serves_keys_in_turn_and_the_only_key_all_it_may(
        redis: aioredis.Redis):
    """Keys take turns one job at a time, within a claim and across claims; once a
    single key is left, it gives the rest of the claim."""
    q = Queue(redis, "turns", ordering="fifo")
    a = await q.enqueue_many("t", [None] * 6, key="a")
    b = await q.enqueue_many("t", [None] * 3, key="b")
    c = await q.enqueue_many("t", [None] * 1, key="c")
    got = [lease.job_id for lease in await q.claim_many(5)]
    assert got == [a[0], b[0], c[0], a[1], b[1]]
    got = [lease.job_id for lease in await q.claim_many(5)]
    assert got == [a[2], b[2], a[3], a[4], a[5]]
    assert await q.claim_many(5) == []


@pytest.mark.real_redis
async def test_a_fifo_claim_reads_its_keys_in_rounds_not_one_job_at_a_time(
        real_redis: aioredis.Redis):
    """A claim of 100 from one key reads the key's jobs once; one of 50 from 50 keys
    reads the round-robin once and writes it in one command, whatever the number of
    jobs."""
    q = Queue(real_redis, "rounds", ordering="fifo")
    await q.enqueue_many("t", [None] * 101)
    await q.claim_many(1)  # scripts loaded
    await real_redis.config_resetstat()
    assert len(await q.claim_many(100)) == 100
    calls = await command_calls(real_redis)
    assert calls["evalsha"] == 1 and calls["zrangebylex"] == 1, calls
    assert calls["smismember"] == 1 and "sismember" not in calls, calls
    for k in range(50):
        await q.enqueue_many("t", [None] * 2, key=f"k{k}")
    await real_redis.config_resetstat()
    leases = await q.claim_many(50)
    assert sorted(lease.key for lease in leases) == sorted(f"k{k}" for k in range(50))
    calls = await command_calls(real_redis)
    # One ZADD of the new turns and one ZREM of the claimed index entries; the second of
    # each brings in and takes out the member that keeps the round-robin a skiplist.
    assert (calls["zrange"], calls["zadd"], calls["zrem"]) == (1, 2, 2), calls


@pytest.mark.real_redis
async def test_a_stale_entry_of_the_fifo_index_is_skipped_and_its_key_keeps_its_turn(
        real_redis: aioredis.Redis):
    """An id taken out of todos behind the queue's back: the claim drops its index
    entry, takes the key's next job in its place, and the turns go on as before."""
    q = Queue(real_redis, "stale", ordering="fifo")
    a = await q.enqueue_many("t", [None] * 3, key="a")
    b = await q.enqueue_many("t", [None] * 2, key="b")
    await real_redis.srem(q.keys.todos, a[0])
    got = [lease.job_id for lease in await q.claim_many(10)]
    assert got == [a[1], b[0], a[2], b[1]]
    assert await real_redis.zcard(q.keys.waiting) == 0


# -- 4. per-key concurrency -------------------------------------------------------------------

# An atomic snapshot: live leases per key, and the hold index's count per key.
_IN_FLIGHT_BY_KEY = """
local counts = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'lease:' .. id) == 1 then
    local k = redis.call('HGET', ARGV[1] .. 'job:' .. id, 'key') or ''
    counts[k] = (counts[k] or 0) + 1
  end
end
local out = {}
for i = 2, #ARGV do
  local key = ARGV[i]
  out[#out + 1] = counts[key] or 0
  out[#out + 1] = redis.call('ZLEXCOUNT', KEYS[2], '[' .. key .. '\\31', '(' .. key .. '\\32')
end
return out
"""


@pytest.mark.real_redis
async def test_key_concurrency_holds_across_four_worker_processes(
        real_redis: aioredis.Redis, redis_server: RedisServer, tmp_path: Path):
    name = "perkey"
    q = Queue(real_redis, name, ordering="fifo", key_concurrency=2)
    keys = ["a", "b", "c"]
    ids = []
    for i in range(201):
        ids += await q.enqueue_many("work", [{"v": i, "s": 0.05}], key=keys[i % 3])
    workers = [WorkerProcess(redis_server.url, TARGET, name, concurrency=10,
                             log_path=tmp_path / f"w{i}.log") for i in range(4)]
    sample = real_redis.register_script(_IN_FLIGHT_BY_KEY)
    peak_leases = dict.fromkeys(keys, 0)
    peak_holds = dict.fromkeys(keys, 0)
    samples = 0
    for w in workers:
        w.start()
    try:
        with anyio.fail_after(60):
            while True:
                reply = await sample(keys=[q.keys.in_progress, q.keys.held],
                                     args=[q.keys.prefix, *keys])
                samples += 1
                for i, key in enumerate(keys):
                    peak_leases[key] = max(peak_leases[key], int(reply[2 * i]))
                    peak_holds[key] = max(peak_holds[key], int(reply[2 * i + 1]))
                s = await q.stats()
                if s.todos + s.in_progress + s.delayed == 0:
                    break
                await anyio.sleep(0.003)
        report = await check_invariants(real_redis, name, ids)
    finally:
        stop_all(workers)
    assert peak_leases == dict.fromkeys(keys, 2), (peak_leases, samples)
    assert max(peak_holds.values()) <= 2, peak_holds
    assert (await q.stats()).done == 201
    assert not report.problems(), report


# -- 5. rate limit ----------------------------------------------------------------------------

RATE, WINDOW_S = 50, 10


def _measure_rate(url: str) -> dict[str, Any]:
    """Two worker processes drain a backlog under Rate(50/s); starts counted by the jobs'
    ``claimed_at`` (Redis time) in a 10 s window after the first second, and the script
    calls (``INFO commandstats``) over a span of Redis time with the starts in it."""

    async def run() -> dict[str, Any]:
        r = aioredis.Redis.from_url(url)
        name = "rate"
        try:
            await r.flushall()
            q = Queue(r, name, rate_limit=Rate(RATE, per=1.0))
            ids = await q.enqueue_many("work", [{"v": i} for i in range(1000)])
            workers = [WorkerProcess(url, TARGET, name, concurrency=10) for _ in range(2)]
            for w in workers:
                w.start()
            try:
                with anyio.fail_after(60):
                    while (await q.stats()).done == 0:
                        await anyio.sleep(0.01)
                await r.config_resetstat()
                span_from = await redis_ms(r)
                await anyio.sleep(1 + WINDOW_S + 0.5)
                calls = await command_calls(r)
                span_to = await redis_ms(r)
            finally:
                stop_all(workers)
            async with r.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hget(q.keys.job(i), "claimed_at")
                claimed = sorted(int(c) for c in await pipe.execute() if c)
            t0 = claimed[0]
            return {
                "window": sum(1 for c in claimed if t0 + 1000 <= c < t0 + 1000 + WINDOW_S * 1000),
                "span_starts": sum(1 for c in claimed if span_from <= c <= span_to),
                "evalsha": calls.get("evalsha", 0),
                "gaps": [b - a for a, b in itertools.pairwise(claimed)],
            }
        finally:
            await r.aclose()

    return anyio.run(run)


@pytest.fixture(scope="module")
def rate_run(redis_server: RedisServer) -> dict[str, Any]:
    """One measured run shared by the rate tests (it takes about 13 s)."""
    return _measure_rate(redis_server.url)


@pytest.mark.real_redis
def test_a_rate_limit_is_never_exceeded_and_limited_workers_do_not_poll(
        rate_run: dict[str, Any]):
    """GCRA lets at most ``burst`` starts at once and then one per ``per / count`` = 20 ms
    of Redis time, so a 10 s window holds at most 10 s / 20 ms + burst = 505 starts
    (``Rate(50)``'s default burst is 5), on any machine. A limited worker sleeps until
    the next start is due: a claim that starts jobs, one that finds the rate reached, and
    the other worker's one; well below 5 script calls per start (a worker that polled
    would make hundreds)."""
    burst = Rate(RATE, per=1.0).burst
    assert burst == 5
    assert rate_run["window"] <= RATE * WINDOW_S + burst, rate_run["window"]
    assert rate_run["span_starts"] > 0
    assert rate_run["evalsha"] < 5 * rate_run["span_starts"], (
        rate_run["evalsha"], rate_run["span_starts"])


@pytest.mark.real_redis
def test_a_rate_limit_with_a_backlog_starts_jobs_at_that_rate(rate_run: dict[str, Any]):
    """Rate(50, per=1.0) with a backlog and two workers: 500 starts in 10 s of Redis time,
    +1% at most (505, see above) and -5% at least. The burst is what lets a worker that
    claims a few ms after a start fell due keep that start: with ``burst=1`` lateness
    would add up. A limited worker waits for a start due in less than a quarter second
    with a local timer (a BLPOP timeout only ends at Redis's 100 ms tick)."""
    assert rate_run["window"] >= RATE * WINDOW_S * 0.95, (
        rate_run["window"], sorted(rate_run["gaps"])[len(rate_run["gaps"]) // 2])


# -- 6. slots of SIGKILLed workers ------------------------------------------------------------

@pytest.mark.real_redis
async def test_sigkilled_workers_free_their_slots_once_their_leases_pass(
        real_redis: aioredis.Redis, redis_server: RedisServer, tmp_path: Path):
    name = "slots"
    q = Queue(real_redis, name, max_in_flight=4)
    hung = await q.enqueue_many("work", [{"v": i, "s": 3600} for i in range(6)])
    doomed = [WorkerProcess(redis_server.url, TARGET, name, concurrency=3, lease_timeout=1.0,
                            reaper=False, log_path=tmp_path / f"doomed{i}.log")
              for i in range(2)]
    fresh = WorkerProcess(redis_server.url, TARGET, name, concurrency=4, lease_timeout=1.0,
                          reaper=False, log_path=tmp_path / "fresh.log")
    try:
        for w in doomed:
            w.start()

        async def four_running() -> bool:
            return (await q.stats()).in_progress == 4

        await wait_for(four_running, timeout=30)
        for w in doomed:
            w.wait_ready()
        # 6 worker slots, 4 queue slots: the queue's limit holds.
        s = await q.stats()
        assert (s.in_progress, s.holding, s.todos) == (4, 4, 2)
        assert await q.claim() is None and q.held_back == "full"
        for w in doomed:
            w.kill()
        quick = await q.enqueue_many("work", [{"v": i} for i in range(20)])
        for job_id in hung:  # whoever runs them from now on returns at once
            await real_redis.hset(q.keys.job(job_id), "payload", json.dumps({"v": 0}))

        # No reaper: the dead workers' jobs stay in progress, but their slots come back
        # when their leases pass, so every other job runs.
        fresh.start()

        async def others_done() -> bool:
            return (await q.stats()).done == 22

        await wait_for(others_done, timeout=30)

        async def killed_leases_passed() -> bool:
            async with real_redis.pipeline(transaction=False) as pipe:
                for job_id in hung:
                    pipe.exists(q.keys.lease(job_id))
                return sum(await pipe.execute()) == 0

        # (The others may be done before the last of the killed leases passed: then
        # the slots of those that passed were enough.)
        await wait_for(killed_leases_passed)
        s = await q.stats()
        assert (s.in_progress, s.todos, s.holding) == (4, 0, 0)
        # A reaper then puts the killed workers' jobs back, and they run.
        assert (await Reaper(q).sweep_report()).requeued == 4
        await wait_drained(real_redis, name, 30)
    finally:
        stop_all([*doomed, fresh])
    report = await check_invariants(real_redis, name, hung + quick)
    assert not report.problems(), report
    assert report.done == 26


# -- 7. start deadlines -----------------------------------------------------------------------

@pytest.mark.real_redis
async def test_a_job_not_started_by_its_deadline_ends_dead_and_never_runs(
        real_redis: aioredis.Redis):
    q = Queue(real_redis, "deadline")
    late = await q.enqueue("t", "late", expires_in=0.05)
    ontime = await q.enqueue("t", "on time", expires_in=300)
    info = await q.job(late)
    assert info is not None and info.expires_at is not None
    await wait_until_redis_passes(real_redis, info.expires_at)
    ran: list[Any] = []

    async def handler(ctx: JobContext, payload: Any) -> None:
        ran.append(payload)

    with anyio.fail_after(30):
        await Worker(q, {"t": handler}, reaper=False).run(burst=True, handle_signals=False)
    assert ran == ["on time"]
    late_info, ontime_info = await q.jobs([late, ontime])
    assert late_info is not None and late_info.state == "dead"
    assert late_info.dead_reason == "expired before start"
    assert ontime_info is not None and ontime_info.state == "done"
    s = await q.stats()
    assert (s.expired, s.dead, s.done) == (1, 1, 1)


async def test_a_start_deadline_does_not_end_a_job_that_started_before_it(
        redis: aioredis.Redis):
    """A job claimed before its start deadline, then failed (retried at once), released,
    or requeued by the reaper after its lease ran out (a crashed worker), runs again
    after the deadline: it started in time. One never claimed by then still ends dead,
    "expired before start". (A deadline 2 s away: the claims before it must come first
    on a slow machine too.)"""
    cases = []
    for ordering in ("set", "fifo"):
        q = Queue(redis, f"started-{ordering}", ordering=ordering)
        retried = await q.enqueue("t", "retried", expires_in=2)
        released = await q.enqueue("t", "released", expires_in=2)
        crashed = await q.enqueue("t", "crashed", expires_in=2, lease_timeout=0.05)
        leases = {lease.job_id: lease for lease in await q.claim_many(3)}
        assert set(leases) == {retried, released, crashed}
        await q.fail(leases[retried], "boom")
        await q.release(leases[released])
        never = await q.enqueue("t", "never", expires_in=2)
        cases.append((q, {retried: 2, released: 1, crashed: 2}, never))
    info = await cases[-1][0].job(cases[-1][2])
    assert info is not None and info.expires_at is not None
    await wait_until_redis_passes(redis, info.expires_at)  # the last deadline of all
    for q, attempts, never in cases:
        assert await Reaper(q).sweep() == 1  # the crashed one's lease is long gone
        got = {lease.job_id: lease.attempt for lease in await q.claim_many(10)}
        assert got == attempts
        never_info = await q.job(never)
        assert never_info is not None and never_info.state == "dead"
        assert never_info.dead_reason == "expired before start"


@pytest.mark.real_redis
async def test_the_reaper_expires_waiting_and_delayed_jobs_but_not_started_ones(
        real_redis: aioredis.Redis):
    q = Queue(real_redis, "deadline-reaper", ordering="fifo")
    started = await q.enqueue("t", "started", expires_in=0.3)
    lease = await q.claim()
    assert lease is not None and lease.job_id == started
    waiting = await q.enqueue("t", "waiting", expires_in=0.05, key="k")
    delayed = await q.enqueue("t", "delayed", expires_in=0.05, delay=60)
    infos = await q.jobs([started, waiting, delayed])
    await wait_until_redis_passes(real_redis, max(i.expires_at for i in infos))  # type: ignore
    report = await Reaper(q).sweep_report()
    assert report.expired == 2
    for job_id in (waiting, delayed):
        info = await q.job(job_id)
        assert info is not None and info.state == "dead"
        assert info.dead_reason == "expired before start"
    # The deadline is for the start: a job that started before it is acked normally.
    await q.ack(lease, "ok")
    info = await q.job(started)
    assert info is not None and info.state == "done" and info.result == "ok"
    s = await q.stats()
    assert (s.expired, s.dead, s.done, s.todos, s.delayed) == (2, 2, 1, 0, 0)
    assert await q.claim() is None


# -- 8. pause and resume ----------------------------------------------------------------------

@pytest.mark.real_redis
async def test_pause_stops_a_running_worker_at_its_next_claim_and_resume_wakes_it(
        real_redis: aioredis.Redis):
    name = "pause"
    q = Queue(real_redis, name)
    metrics = Metrics()
    started: list[Any] = []
    blocker_started, unblock = anyio.Event(), anyio.Event()

    async def handler(ctx: JobContext, payload: Any) -> None:
        started.append(payload)
        if payload == "blocker":
            blocker_started.set()
            await unblock.wait()

    def paused_claims() -> float:
        return metrics.registry.get_sample_value(
            "leaseq_claims_held_back_total", {"queue": name, "reason": "paused"}) or 0.0

    blocker = await q.enqueue("t", "blocker")
    # A 30 s poll: only a wake-up can make it claim within the 5 s allowed below.
    worker = Worker(q, {"t": handler}, concurrency=1, reaper=False, poll_interval=30,
                    metrics=metrics)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(10):
            await blocker_started.wait()
        ids = await q.enqueue_many("t", list(range(20)))
        await q.pause()
        assert await q.is_paused()
        s = await q.stats()
        assert s.paused and s.todos == 20 and s.waiting_on_limits == 20
        unblock.set()  # the running job finishes and is acked though the queue is paused

        async def refused() -> bool:
            return paused_claims() >= 1

        await wait_for(refused)  # the worker's next claim was refused...
        assert started == ["blocker"]  # ...so it started none of the 20
        assert (await q.job(blocker)).state == "done"  # type: ignore[union-attr]
        assert await q.claim() is None and q.held_back == "paused"
        await q.resume()
        assert not await q.is_paused()

        async def all_done() -> bool:
            return (await q.stats()).done == 21

        await wait_for(all_done, timeout=5)
        worker.stop()
    assert sorted(started[1:]) == list(range(20))
    assert not (await q.stats()).paused
    assert all(info.state == "done" for info in await q.jobs(ids))  # type: ignore[union-attr]


# -- 9. settings agreement and refused input --------------------------------------------------

@pytest.mark.real_redis
async def test_processes_must_agree_on_the_stored_controls(real_redis: aioredis.Redis):
    await Queue(real_redis, "agree", max_in_flight=2, rate_limit=Rate(5, per=2)).prepare()
    with pytest.raises(SettingsConflict, match="max_in_flight") as raised:
        await Queue(real_redis, "agree", max_in_flight=3).prepare()
    assert (raised.value.setting, raised.value.stored, raised.value.given) == (
        "max_in_flight", "2", "3")
    await Queue(real_redis, "agree", max_in_flight=2).prepare()  # the same value: fine

    bare = Queue(real_redis, "agree")
    await bare.prepare()
    assert (bare.controls.max_in_flight, bare.controls.rate_limit) == (2, Rate(5, per=2))
    changed = await bare.configure(max_in_flight=5, rate_limit=None)
    assert (changed.max_in_flight, changed.rate_limit) == (5, None)
    fresh = Queue(real_redis, "agree")
    await fresh.prepare()
    assert (fresh.controls.max_in_flight, fresh.controls.rate_limit) == (5, None)
    with pytest.raises(SettingsConflict, match="max_in_flight"):
        await Queue(real_redis, "agree", max_in_flight=2).prepare()


@pytest.mark.real_redis
async def test_the_ordering_of_a_queue_holding_jobs_cannot_change(real_redis: aioredis.Redis):
    q = Queue(real_redis, "reorder")
    await q.enqueue("t", None)
    settings = await real_redis.hgetall(q.keys.settings)
    with pytest.raises(InvalidInput, match="ordering"):
        await q.configure(ordering="fifo")
    assert await real_redis.hgetall(q.keys.settings) == settings
    assert (await q.stats()).ordering == "set"
    lease = await q.claim()
    assert lease is not None
    await q.ack(lease)
    assert (await q.configure(ordering="fifo")).ordering == "fifo"  # empty now: allowed


@pytest.mark.real_redis
@pytest.mark.parametrize("opened_with", [{}, {"ordering": "set"}])
@pytest.mark.parametrize("placing", [{"priority": 1}, {"key": "customer-1"}])
async def test_priority_or_key_on_a_set_queue_is_refused_before_anything_is_written(
        real_redis: aioredis.Redis, opened_with: dict[str, Any], placing: dict[str, Any]):
    q = Queue(real_redis, "plain", **opened_with)
    with pytest.raises(InvalidInput, match="fifo"):
        await q.enqueue("t", None, **placing)
    with pytest.raises(InvalidInput, match="fifo"):
        await q.enqueue_many("t", [1, 2], **placing)
    assert [k async for k in real_redis.scan_iter(match=q.keys.prefix + "*")] == []


@pytest.mark.real_redis
@pytest.mark.parametrize("bad", [
    {"priority": 1001}, {"priority": -1001}, {"priority": 1.5}, {"key": "a\nb"},
    {"key": ""}, {"key": "k" * 257}, {"expires_in": -1}, {"expires_in": 0.05, "expires_at": 1e9},
], ids=repr)
async def test_bad_placing_values_are_refused_before_anything_is_written(
        real_redis: aioredis.Redis, bad: dict[str, Any]):
    q = Queue(real_redis, "strict", ordering="fifo")
    await q.prepare()
    with pytest.raises(InvalidInput):
        await q.enqueue("t", None, **bad)
    with pytest.raises(InvalidInput):
        await q.enqueue_many("t", [1, 2], **bad)
    assert (await q.stats()).todos == 0


@pytest.mark.parametrize("args", [(0,), (-1,), (5, 0), (5, 1.0, 0), (5, -1.0)], ids=repr)
def test_a_rate_that_allows_nothing_is_refused(args: tuple[Any, ...]):
    with pytest.raises(InvalidInput):
        Rate(*args)


# -- 10. keys at their limit ------------------------------------------------------------------

@pytest.mark.real_redis
async def test_claims_do_not_spin_when_every_waiting_key_is_at_its_limit(
        real_redis: aioredis.Redis):
    """1,000 keys, each with one job running (key_concurrency=1) and 4 waiting: a claim
    finds nothing to start with work bounded by its ``n`` (not by the keys), and after a
    few such claims, far fewer than the keys, one says why (``held_back == "keys"``), and
    then stats show every key parked and every waiting job held back by a limit."""
    q = Queue(real_redis, "parked", ordering="fifo", key_concurrency=1)
    for k in range(1000):
        await q.enqueue_many("t", [None] * 5, key=f"key-{k}")
    first = await q.claim_many(1000)
    assert sorted({lease.key for lease in first}) == sorted(f"key-{k}" for k in range(1000))
    empty_claims = 0
    while q.held_back != "keys":
        await real_redis.config_resetstat()
        assert await q.claim_many(10) == []
        calls = await command_calls(real_redis)
        assert calls["evalsha"] == 1 and sum(calls.values()) < 1000, calls
        empty_claims += 1
        assert empty_claims <= 50, "claims did not settle on 'keys'"
    s = await q.stats()
    assert (s.todos, s.holding) == (4000, 1000)
    assert (s.keys_parked, s.keys_waiting, s.waiting_on_limits) == (1000, 0, 4000), (
        s, empty_claims)


async def test_a_key_limit_counts_earlier_holds_and_the_claims_own_picks(
        redis: aioredis.Redis):
    """key_concurrency=3: a claim of many takes at most 3 of a key, counting the leases
    of that key already running and the ones the same call picked."""
    q = Queue(redis, "keycount", ordering="fifo", key_concurrency=3)
    await q.enqueue_many("t", [None] * 10, key="a")
    await q.enqueue_many("t", [None] * 10, key="b")
    first = await q.claim_many(2)
    assert [lease.key for lease in first] == ["a", "b"]
    await q.ack(first[1])  # b's slot is free again; a holds 1
    second = await q.claim_many(20)
    keys = [lease.key for lease in second]
    assert (keys.count("a"), keys.count("b")) == (2, 3)
    assert await q.claim_many(20) == [] and q.held_back == "keys"
    for lease in second:
        await q.ack(lease)
    third = await q.claim_many(20)
    keys = [lease.key for lease in third]
    assert (keys.count("a"), keys.count("b")) == (2, 3)  # a's first lease still holds


async def test_a_key_limit_that_cannot_bind_costs_no_count_per_job(
        real_redis: aioredis.Redis):
    """With fewer leases held than key_concurrency, no key can be at its limit: a claim
    over 49 jobs of 49 keys, one lease held, reads no key's count (ZLEXCOUNT) and takes
    them all."""
    q = Queue(real_redis, "nobind", ordering="fifo", key_concurrency=1000)
    for k in range(50):
        await q.enqueue("t", None, key=f"k{k}")
    await q.claim_many(1)  # scripts loaded, one lease held
    await real_redis.config_resetstat()
    assert len(await q.claim_many(100)) == 49
    calls = await command_calls(real_redis)
    assert calls["evalsha"] == 1 and "zlexcount" not in calls, calls


@pytest.mark.real_redis
async def test_the_slot_sets_become_skiplists_when_large_and_hold_only_the_slots(
        real_redis: aioredis.Redis):
    """holds and held gain and lose a member per running job, the round-robin one per
    served key: a claim that leaves one of them over 32 members makes it a skiplist (a
    listpack's insert scans the whole set), however it was loaded, and leaves nothing in
    it but its members; a smaller one stays a listpack, cheaper to make and empty."""
    q = Queue(real_redis, "wide", ordering="fifo", key_concurrency=5)
    k = q.keys
    for n in range(40):
        await q.enqueue_many("t", [None] * 2, key=f"k{n}")
    await real_redis.zadd(k.holds, {"older": 1e15})  # a small set, as Redis loads one
    assert await real_redis.object("encoding", k.holds) == b"listpack"
    leases = await q.claim_many(40)
    assert sorted(await real_redis.zrange(k.holds, 0, -1)) == sorted(
        [b"older", *(lease.job_id.encode() for lease in leases)])
    assert sorted(await real_redis.zrange(k.held, 0, -1)) == sorted(
        f"{lease.key}\x1f{lease.job_id}".encode() for lease in leases)
    assert await real_redis.zcard(k.active) == 40  # a job of each key is left
    for name in (k.holds, k.held, k.active):
        assert await real_redis.object("encoding", name) == b"skiplist"
    await q.ack_many([(lease, None) for lease in leases])
    await real_redis.zrem(k.holds, "older")
    assert await real_redis.exists(k.holds, k.held) == 0
    assert len(await q.claim_many(3)) == 3
    assert await real_redis.zcard(k.holds) == 3
    assert await real_redis.object("encoding", k.holds) == b"listpack"
