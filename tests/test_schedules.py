"""Periodic schedules: which ticks fall due (a fixed clock, daylight-saving changes
included), ``tick.lua`` deciding each tick once, and schedulers firing them — several in
one process, a worker's own, and ``leaseq scheduler`` processes, some on clocks 30 s off
and some SIGKILLed — enqueueing each tick exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from leaseq import Cron, Every, InvalidInput, JobContext, Queue, Scheduler, Worker
from leaseq.protocol import scheduling
from leaseq.protocol.schedule import from_timing
from leaseq.testing import RedisServer, SchedulerProcess, WorkerProcess

DAY = 86_400_000


def ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def local(tick: int, zone: str) -> str:
    return datetime.fromtimestamp(tick / 1000, ZoneInfo(zone)).isoformat()


# -- which ticks are due (no Redis: a fixed clock) --------------------------------------------

def test_every_ticks_at_multiples_of_its_period_since_the_epoch():
    e = Every(60, "report")
    assert e.name == "report" and e.job_id(120_000) == "report@120000"
    assert e.next_tick(0) == 60_000 and e.next_tick(59_999) == 60_000
    assert e.next_tick(60_000) == 120_000
    assert e.ticks(0, 180_000) == (3, [60_000, 120_000, 180_000])
    assert e.ticks(60_000, 119_999) == (0, [])


def test_a_declared_timing_makes_the_same_schedule_again():
    for s in (Every(1234567, "rare"), Cron("30 2 * * *", "nightly", tz="Europe/Paris")):
        again = from_timing(s.timing(), s.task)
        assert again is not None and again.spec() == s.spec()
        assert again.next_tick(1_700_000_000_000) == s.next_tick(1_700_000_000_000)
    assert from_timing({"cron": "61 * * * *"}, "t") is None
    assert from_timing("every 5s", "t") is None


@pytest.mark.parametrize(("catch_up", "run", "skipped"), [
    (0, [15_000, 16_000, 17_000, 18_000, 19_000, 20_000], 13),
    (1, [14_000, 15_000, 16_000, 17_000, 18_000, 19_000, 20_000], 12),
    (3, [12_000, 13_000, 14_000, 15_000, 16_000, 17_000, 18_000, 19_000, 20_000], 10),
])
def test_after_an_outage_the_newest_missed_ticks_run_up_to_catch_up(
    catch_up: int, run: list[int], skipped: int,
):
    # Last tick 1 s, now 20 s, grace 5 s: ticks 2..14 s were missed, 15..20 s are on time.
    due = Every(1, "t", catch_up=catch_up).due(1_000, 20_000, 5_000)
    assert list(due.run) == run
    assert due.skipped == skipped
    assert due.last_skipped == 14_000 - catch_up * 1000


def test_a_long_outage_is_counted_exactly_without_listing_every_tick():
    due = Every(1, "t", catch_up=2).due(0, 30 * DAY, 5_000)
    assert len(due.run) == 2 + 6
    assert due.skipped == 30 * DAY // 1000 - 8
    assert due.last_skipped == due.run[0] - 1000


def test_a_daily_time_that_a_dst_change_skips_runs_once_at_the_change():
    # Europe/Paris jumps from 02:00 to 03:00 on 29 March 2026: 02:30 does not exist.
    paris = ZoneInfo("Europe/Paris")
    c = Cron("30 2 * * *", "nightly", tz="Europe/Paris")
    count, ticks = c.ticks(ms(datetime(2026, 3, 28, 12, tzinfo=paris)),
                           ms(datetime(2026, 3, 30, 12, tzinfo=paris)))
    assert count == 2
    assert [local(t, "Europe/Paris") for t in ticks] == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_a_daily_time_in_the_repeated_hour_runs_once():
    # America/New_York repeats 01:00-02:00 on 1 November 2026.
    ny = ZoneInfo("America/New_York")
    c = Cron("30 1 * * *", "nightly", tz="America/New_York")
    count, ticks = c.ticks(ms(datetime(2026, 10, 31, 12, tzinfo=ny)),
                           ms(datetime(2026, 11, 2, 12, tzinfo=ny)))
    assert count == 2
    assert [local(t, "America/New_York") for t in ticks] == [
        "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_a_sub_hourly_cron_fires_each_instant_of_the_repeated_hour_once():
    ny = ZoneInfo("America/New_York")
    c = Cron("*/30 * * * *", "often", tz="America/New_York")
    start = ms(datetime(2026, 11, 1, 0, 45, tzinfo=ny))
    count, ticks = c.ticks(start, start + 3 * 3_600_000)
    assert len(set(ticks)) == count == 6  # three hours of real time, two ticks an hour
    assert ticks == sorted(ticks) and all(b - a == 1_800_000 for a, b in pairwise(ticks))


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Cron("61 * * * *", "t"), "bad cron expression '61 * * * *'"),
    (lambda: Cron("* * * *", "t"), "a cron expression has five fields"),
    (lambda: Cron("* * * * *", "t", tz="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
    (lambda: Every(0.5, "t"), "seconds must be at least 1"),
    (lambda: Every(float("inf"), "t"), "seconds"),
    (lambda: Every(1, "t", overlap="sometimes"), "overlap must be 'allow' or 'skip'"),
    (lambda: Every(1, "t", catch_up=-1), "catch_up must be an integer from 0 to 1000"),
    (lambda: Every(1, "bad\nname"), "task"),
    (lambda: Every(1, "t", max_attempts=0), "max_attempts"),
])
def test_a_bad_schedule_is_refused_in_one_line(make: Any, message: str):
    with pytest.raises(InvalidInput) as refused:
        make()
    assert message in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1


def test_two_schedules_with_one_name_are_refused():
    q = Queue(aioredis.Redis(), "q")
    with pytest.raises(InvalidInput, match="two schedules named 'report'"):
        Scheduler(q, [Every(60, "report"), Cron("0 * * * *", "report")])
    Scheduler(q, [Every(60, "report"), Cron("0 * * * *", "report", name="hourly")])


# -- tick.lua: each tick decided once ---------------------------------------------------------

async def state_of(redis: aioredis.Redis, q: Queue, name: str) -> dict[str, str]:
    raw = await redis.hgetall(q.keys.schedule(name))
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                         else v) for k, v in raw.items()}


async def test_a_tick_is_enqueued_once_whoever_fires_it_and_whenever(redis: aioredis.Redis):
    q = Queue(redis, "ticks")
    s = Every(1, "t", {"n": 1})
    assert await scheduling.fire(q, s, None, "baseline", 10_500) == "baseline"
    assert await scheduling.fire(q, s, None, "baseline", 10_500) == "raced"
    assert await scheduling.fire(q, s, 10_500, "run", 11_000) == "enqueued"
    # A second scheduler that read the same state, or this call sent again.
    assert await scheduling.fire(q, s, 10_500, "run", 11_000) == "raced"
    job = await q.job("t@11000")
    assert job is not None and job.state == "todo" and job.payload == {"n": 1}
    # Even once the job is done and forgotten, the tick is not enqueued again.
    lease = await q.claim()
    assert lease is not None and lease.job_id == "t@11000"
    await q.ack(lease)
    await redis.delete(q.keys.job("t@11000"))
    await redis.srem(q.keys.done, "t@11000")
    assert await scheduling.fire(q, s, 10_500, "run", 11_000) == "raced"
    assert await scheduling.fire(q, s, 11_000, "run", 11_000) == "raced"  # not after the last
    assert await scheduling.fire(q, s, 11_000, "run", 12_000) == "enqueued"
    st = await state_of(redis, q, "t")
    assert st["last_tick"] == "12000" and st["last_job"] == "t@12000" and st["enqueued"] == "2"
    assert (await q.stats()).todos == 1


async def test_overlap_skip_waits_for_the_previous_job_and_counts_the_skips(
    redis: aioredis.Redis,
):
    q = Queue(redis, "overlap")
    s = Every(1, "t", overlap="skip")
    await scheduling.fire(q, s, None, "baseline", 0)
    assert await scheduling.fire(q, s, 0, "run", 1000) == "enqueued"
    assert await scheduling.fire(q, s, 1000, "run", 2000) == "overlap"  # waiting
    lease = await q.claim()
    assert lease is not None
    assert await scheduling.fire(q, s, 2000, "run", 3000) == "overlap"  # running
    await q.ack(lease)
    assert await scheduling.fire(q, s, 3000, "run", 4000) == "enqueued"
    st = await state_of(redis, q, "t")
    assert st["skipped_overlap"] == "2" and st["last_skip_reason"] == "overlap"
    assert st["last_job"] == "t@4000"


async def test_missed_ticks_are_recorded_as_skipped_and_a_known_id_is_not_enqueued(
    redis: aioredis.Redis,
):
    q = Queue(redis, "missed")
    s = Every(1, "t")
    await scheduling.fire(q, s, None, "baseline", 0)
    assert await scheduling.fire(q, s, 0, "missed", 9000, 9) == "missed"
    await q.enqueue("t", None, job_id="t@10000")  # the same id, enqueued by hand
    assert await scheduling.fire(q, s, 9000, "run", 10_000) == "known"
    st = await state_of(redis, q, "t")
    assert st["skipped_missed"] == "9" and st["last_tick"] == "10000"
    assert st.get("enqueued") is None and (await q.stats()).todos == 1


# -- schedulers in one process ----------------------------------------------------------------

async def ticks_of(redis: aioredis.Redis, q: Queue, name: str) -> list[int]:
    ids: list[str] = []
    for key in (q.keys.todos, q.keys.in_progress, q.keys.done):
        ids += [m.decode() if isinstance(m, bytes) else m for m in await redis.smembers(key)]
    return sorted(int(i.split("@")[1]) for i in ids if i.startswith(name + "@"))


def assert_contiguous(ticks: list[int], period: int = 1000) -> None:
    assert ticks, "no tick was enqueued"
    assert ticks == list(range(ticks[0], ticks[-1] + period, period)), ticks


@pytest.fixture(params=["real", "cluster"])
async def lane(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """The real lanes of the ``redis`` fixture (a scheduler runs on real time)."""
    from .conftest import _flushed_client, _flushed_cluster_client

    if request.param == "cluster":
        client: aioredis.Redis = await _flushed_cluster_client(  # type: ignore[assignment]
            request.getfixturevalue("redis_cluster"))
    else:
        client = await _flushed_client(request.getfixturevalue("redis_server"))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.real_redis
async def test_three_schedulers_of_one_schedule_enqueue_each_tick_once(lane: aioredis.Redis):
    schedule = Every(1, "tick")
    schedulers = [Scheduler(Queue(lane, "trio"), [schedule]) for _ in range(3)]
    q = Queue(lane, "trio")
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            for s in schedulers:
                await tg.start(s.run)
            with anyio.fail_after(30):
                while len(await ticks_of(lane, q, "tick")) < 4:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    ticks = await ticks_of(lane, q, "tick")
    assert_contiguous(ticks)
    enqueued = [e["tick"] for e in logs if e["event"] == "schedule_enqueued"]
    assert sorted(enqueued) == ticks  # one enqueue per tick among the three
    (info,) = await q.schedules()
    assert info.name == "tick" and info.enqueued == len(ticks) and not info.stale
    assert info.last_job == f"tick@{ticks[-1]}" and info.last_job_state == "todo"
    assert info.next_tick is not None and info.next_tick * 1000 > ticks[-1]


@pytest.mark.real_redis
async def test_catch_up_after_every_scheduler_was_down(real_redis: aioredis.Redis):
    """The scheduler's clock is handed in (``_fire_due(schedule, now)``): as if every
    scheduler had been down for 20 s."""
    for catch_up, runs, skipped in ((2, 2 + 6, 12), (0, 6, 14)):
        q = Queue(real_redis, f"catchup{catch_up}")
        s = Every(1, "tick", catch_up=catch_up)
        scheduler = Scheduler(q, [s], grace=5.0)
        await scheduler._fire_due(s, 100_000)  # first sight: the baseline
        with capture_logs() as logs:
            await scheduler._fire_due(s, 120_000)
        st = await state_of(real_redis, q, "tick")
        assert st["skipped_missed"] == str(skipped) and st["last_tick"] == "120000"
        assert int(st["enqueued"]) == runs
        (skip,) = [e for e in logs if e["event"] == "schedule_skipped"]
        assert skip["reason"] == "missed" and skip["ticks"] == skipped
        enqueued = [e["tick"] for e in logs if e["event"] == "schedule_enqueued"]
        assert enqueued == list(range(120_000 - (runs - 1) * 1000, 120_001, 1000))


@pytest.mark.real_redis
async def test_a_changed_schedule_goes_on_from_its_last_tick_without_a_duplicate_or_a_gap(
    real_redis: aioredis.Redis,
):
    q = Queue(real_redis, "changed")
    every_two = Every(2, "tick", name="sync")
    scheduler = Scheduler(q, [every_two])
    await scheduler._fire_due(every_two, 100_000)
    await scheduler._fire_due(every_two, 104_500)
    every_one = Every(1, "tick", name="sync")  # a new timing, the same name
    await Scheduler(q, [every_one])._fire_due(every_one, 107_200)
    assert await ticks_of(real_redis, q, "sync") == [
        102_000, 104_000, 105_000, 106_000, 107_000]


@pytest.mark.real_redis
async def test_a_schedule_nobody_declares_any_more_is_stale_and_not_run(
    real_redis: aioredis.Redis,
):
    q = Queue(real_redis, "gone")
    await Scheduler(q, [Every(60, "old"), Every(60, "new")]).tick_once()
    infos = {i.name: i for i in await q.schedules()}
    assert not infos["old"].stale and infos["old"].next_tick is not None
    # Two minutes later only "new" is still declared by a running scheduler.
    raw = json.loads(await real_redis.hget(q.keys.schedules, "old"))
    raw["declared_at"] -= 120_000
    await real_redis.hset(q.keys.schedules, "old", json.dumps(raw))
    infos = {i.name: i for i in await q.schedules()}
    assert infos["old"].stale and infos["old"].next_tick is None
    assert not infos["new"].stale
    listed = leaseq_cli(real_redis, "gone")
    assert "stale" in listed


def leaseq_cli(client: aioredis.Redis, queue: str) -> str:
    kwargs = client.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}/0"
    done = leaseq(url, "schedules", "-q", queue)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.real_redis
async def test_overlap_skip_with_a_handler_slower_than_the_period(real_redis: aioredis.Redis):
    q = Queue(real_redis, "slow")
    running: list[int] = []
    peak = 0

    async def slow(ctx: JobContext, payload: Any) -> None:
        nonlocal peak
        running.append(1)
        peak = max(peak, len(running))
        await anyio.sleep(2.5)
        running.pop()

    worker = Worker(q, {"slow": slow}, concurrency=4, reaper=False,
                    schedules=[Every(1, "slow", overlap="skip")])
    samples: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(30):
            while worker.counters["acked"] < 2:
                stats = await q.stats()
                samples.append(stats.todos + stats.in_progress + stats.delayed)
                await anyio.sleep(0.05)
        worker.stop()
    (info,) = await q.schedules()
    assert info.skipped_overlap >= 2 and info.enqueued >= 2
    assert max(samples) <= 1 and peak == 1  # never two of the schedule's jobs at once


# -- scheduler processes: skewed clocks, SIGKILL ----------------------------------------------

SCHEDULES = "tests.helpers.schedules:EVERY_SECOND"


@pytest.fixture
def processes() -> Iterator[list[SchedulerProcess]]:
    started: list[SchedulerProcess] = []
    yield started
    for p in started:
        p.terminate()


async def wait_for_ticks(redis: aioredis.Redis, q: Queue, n: int, timeout: float) -> list[int]:
    with anyio.fail_after(timeout):
        while len(ticks := await ticks_of(redis, q, "tick")) < n:
            await anyio.sleep(0.05)
    return ticks


@pytest.mark.real_redis
async def test_five_schedulers_on_clocks_30_s_apart_make_exactly_30_jobs_in_30_s(
    real_redis: aioredis.Redis, redis_server: RedisServer,
    processes: list[SchedulerProcess],
):
    q = Queue(real_redis, "five")
    processes.extend(SchedulerProcess(redis_server.url, "five", SCHEDULES, clock_offset=offset)
                     for offset in (None, "+30s", "-30s", "+30s", "-30s"))
    for p in processes:
        p.start()
    for p in processes:
        p.wait_ready()
    skews = []
    for p in processes:
        stamp = next(e["timestamp"] for e in p.events() if e["event"] == "scheduler_started")
        skews.append(datetime.fromisoformat(stamp).timestamp() - time.time())
    assert skews[1] > 20 and skews[2] < -20, skews  # the clocks really are off
    first = (await wait_for_ticks(real_redis, q, 1, 30))[0]
    # Thirty seconds of ticks: until the job of the 30th tick exists.
    with anyio.fail_after(60):
        while first + 29_000 not in await ticks_of(real_redis, q, "tick"):
            await anyio.sleep(0.1)
    for p in processes:
        assert p.terminate() == 0
    ticks = await ticks_of(real_redis, q, "tick")
    assert_contiguous(ticks)
    assert len([t for t in ticks if first <= t <= first + 29_000]) == 30
    enqueued = Counter(e["job_id"] for p in processes for e in p.events()
                       if e["event"] == "schedule_enqueued")
    assert set(enqueued.values()) == {1} and len(enqueued) == len(ticks)
    (info,) = await q.schedules()
    assert info.enqueued == len(ticks)


@pytest.mark.real_redis
async def test_the_ticks_go_on_when_four_of_five_schedulers_are_sigkilled(
    real_redis: aioredis.Redis, redis_server: RedisServer,
    processes: list[SchedulerProcess],
):
    q = Queue(real_redis, "killed")
    processes += [SchedulerProcess(redis_server.url, "killed", SCHEDULES) for _ in range(5)]
    for p in processes:
        p.start()
    for p in processes:
        p.wait_ready()
    before = await wait_for_ticks(real_redis, q, 3, 30)
    for p in processes[:4]:
        p.kill()
    after = await wait_for_ticks(real_redis, q, len(before) + 5, 30)
    assert processes[4].terminate() == 0
    ticks = await ticks_of(real_redis, q, "tick")
    assert_contiguous(ticks)
    assert ticks[:len(before)] == before and len(after) >= len(before) + 5


@pytest.mark.real_redis
async def test_after_every_scheduler_stopped_the_missed_ticks_are_counted_and_ticks_go_on(
    real_redis: aioredis.Redis, redis_server: RedisServer,
):
    q = Queue(real_redis, "stopped")
    first = SchedulerProcess(redis_server.url, "stopped", SCHEDULES, grace=1.0)
    first.start()
    first.wait_ready()
    before = await wait_for_ticks(real_redis, q, 2, 30)
    assert first.terminate() == 0
    await anyio.sleep(4.5)  # every scheduler down: ticks go by
    second = SchedulerProcess(redis_server.url, "stopped", SCHEDULES, grace=1.0)
    second.start()
    try:
        second.wait_ready()
        after = await wait_for_ticks(real_redis, q, len(before) + 3, 30)
    finally:
        assert second.terminate() == 0
    ticks = await ticks_of(real_redis, q, "tick")
    gap = sorted(set(range(ticks[0], ticks[-1] + 1000, 1000)) - set(ticks))
    (info,) = await q.schedules()
    assert gap and info.skipped_missed == len(gap)  # each missed tick run or counted
    assert gap == list(range(gap[0], gap[-1] + 1000, 1000))  # one outage, one gap
    (skip,) = [e for e in second.events() if e["event"] == "schedule_skipped"]
    assert skip["ticks"] == len(gap) and skip["until"] == gap[-1]
    # The first job after the outage is the tick right after the skipped ones (with
    # catch_up=1, the newest missed tick still runs).
    resumed = [e["tick"] for e in second.events() if e["event"] == "schedule_enqueued"]
    assert resumed[0] == gap[-1] + 1000
    assert ticks[:len(before)] == before and len(after) > len(before)


# -- the command line -------------------------------------------------------------------------

def leaseq(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leaseq", "--redis", url, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.real_redis
async def test_a_worker_with_schedules_runs_their_jobs_and_schedules_lists_them(
    real_redis: aioredis.Redis, redis_server: RedisServer,
):
    q = Queue(real_redis, "cli")
    worker = WorkerProcess(redis_server.url, "tests.helpers.tasks:HANDLERS", "cli",
                           record=False,
                           extra_args=["--schedules", "tests.helpers.schedules:ECHO_EVERY_SECOND"])
    worker.start()
    try:
        worker.wait_ready()
        with anyio.fail_after(30):
            while (await q.stats()).done < 2:
                await anyio.sleep(0.05)
    finally:
        assert worker.terminate() == 0
    listed = leaseq(redis_server.url, "schedules", "-q", "cli", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["schedules"]
    assert row["name"] == "tick" and row["spec"] == "every 1s" and row["enqueued"] >= 2
    assert row["last_job_state"] in ("todo", "in_progress", "done")
    table = leaseq(redis_server.url, "schedules", "-q", "cli")
    assert table.returncode == 0 and "every 1s" in table.stdout


@pytest.mark.real_redis
def test_scheduler_refuses_what_is_not_a_list_of_schedules(redis_server: RedisServer):
    bad = leaseq(redis_server.url, "scheduler", "-q", "x", "tests.helpers.tasks:HANDLERS")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [(
        "leaseq: SCHEDULES 'tests.helpers.tasks:HANDLERS' is not a list of Cron or Every "
        "schedules")]
    missing = leaseq(redis_server.url, "scheduler", "-q", "x", "tests.helpers.nowhere:X")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


# -- edges found in review --------------------------------------------------------------------

def test_the_next_tick_in_a_repeated_hour_is_after_now():
    # 06:05 UTC on 1 November 2026 is 01:05 EST, the second 01:xx of New York's day.
    c = Cron("30 1 * * *", "nightly", tz="America/New_York")
    now = ms(datetime(2026, 11, 1, 6, 5, tzinfo=ZoneInfo("UTC")))
    assert c.next_tick(now) > now
    assert local(c.next_tick(now), "America/New_York") == "2026-11-02T01:30:00-05:00"


def test_a_schedule_whose_payload_cannot_be_encoded_is_refused_at_once():
    q = Queue(aioredis.Redis(), "q")
    with pytest.raises(InvalidInput, match="payload of schedule 'report'"):
        Scheduler(q, [Every(60, "report", {"at": object()})])
    with pytest.raises(InvalidInput, match="grace must be under 1000 periods"):
        Scheduler(q, [Every(1, "often")], grace=1000.0)
    assert Every(1234567, "rare").spec() == "every 1234567s"


@pytest.mark.real_redis
async def test_an_unexpected_error_in_a_round_is_logged_and_the_scheduler_goes_on(
    real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
):
    q = Queue(real_redis, "resilient")
    real_fire = scheduling.fire
    failures = [ValueError("a corrupt state")]

    async def flaky(*args: Any, **kwargs: Any) -> str:
        if failures and args[3] == "run":
            raise failures.pop()
        return await real_fire(*args, **kwargs)

    monkeypatch.setattr(scheduling, "fire", flaky)
    scheduler = Scheduler(q, [Every(1, "tick")])
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.run)
            await wait_for_ticks(real_redis, q, 2, 30)
            tg.cancel_scope.cancel()
    assert [e["error"] for e in logs if e["event"] == "scheduler_failed"] == [
        "ValueError: a corrupt state"]
    assert_contiguous(await ticks_of(real_redis, q, "tick"))
