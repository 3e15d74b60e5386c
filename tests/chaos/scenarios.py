"""Chaos scenarios: real worker processes, a real redis-server, injected faults, and the
invariant checker of ``leaseq.testing``. Used by ``tests/chaos/test_chaos.py`` (small
sizes, in CI) and by ``benchmarks/chaos.py`` (the report, full sizes).

Every scenario is bounded in jobs, faults and time, and returns an :class:`Outcome`.
"""

from __future__ import annotations

import datetime
import json
import random
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from leaseq import Queue
from leaseq.protocol.wire import text
from leaseq.testing import (
    ChaosReport,
    ReaperProcess,
    RedisServer,
    SchedulerProcess,
    WorkerProcess,
    check_invariants,
    wait_drained,
)
from tests.helpers.replyproxy import ReplyDropProxy

from .proxy import FaultyProxy

TARGET = "tests.chaos.handlers:HANDLERS"
SCHEDULES = "tests.chaos.handlers:SCHEDULES"
DRAIN_TIMEOUT = 240.0


@dataclass(frozen=True)
class Size:
    """How big a run is: ``SMALL`` for CI, ``FULL`` for the report."""

    jobs: int
    kills: int
    in_flight: int


SMALL = Size(jobs=1000, kills=5, in_flight=300)
FULL = Size(jobs=5000, kills=20, in_flight=1000)


@dataclass
class Outcome:
    """The result of one scenario."""

    scenario: str
    jobs: int
    faults: int
    report: ChaosReport
    seconds: float
    allow_dead: bool = False
    notes: list[str] = field(default_factory=list)
    measured: bool = False
    """A measurement (losses expected and reported), not a pass/fail scenario."""

    @property
    def problems(self) -> list[str]:
        """Invariant violations (empty when the scenario passed)."""
        return self.report.problems(allow_dead=self.allow_dead)


class Fleet:
    """Worker processes of one queue, restartable, all stopped at the end."""

    def __init__(self, url: str, queue: str, n: int, logdir: Path, **options: Any) -> None:
        self.workers = [
            WorkerProcess(url, TARGET, queue, log_path=logdir / f"worker-{i}.log", **options)
            for i in range(n)]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def restart_dead(self) -> None:
        for w in self.workers:
            if not w.alive:
                w.start()

    def kill_random(self) -> WorkerProcess:
        victim = random.choice([w for w in self.workers if w.alive])
        victim.kill()
        return victim

    async def maybe_kill(self, kills: int, size: Size) -> int:
        """SIGKILL a random worker (and restart the dead) three times in ten while
        fewer than ``size.kills`` were killed; return the new count of kills."""
        if kills < size.kills and random.random() < 0.3:
            self.kill_random()
            await anyio.sleep(0.05)
            self.restart_dead()
            return kills + 1
        return kills

    def terminate(self) -> list[int]:
        """SIGTERM all at once (they shut down in parallel), then wait for each; one still
        running after 60 s is killed and fails the scenario with its last log lines."""
        for w in self.workers:
            w.send(signal.SIGTERM)
        codes, hung = [], []
        for w in self.workers:
            try:
                codes.append(w.wait(timeout=60) if w.process is not None else 0)
            except subprocess.TimeoutExpired:
                w.kill()
                hung.append(w)
        if hung:
            tails = "\n".join(line for w in hung
                              for line in w.log_path.read_text().splitlines()[-10:])
            raise AssertionError(f"{len(hung)} worker(s) still ran 60 s after SIGTERM; "
                                 f"their last log lines:\n{tails}")
        return codes

    def kill_all(self) -> None:
        for w in self.workers:
            w.kill()


def log_events(logdir: Path, event: str) -> int:
    """How many JSON log lines of the run's processes have this event."""
    n = 0
    for path in logdir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == event:
                n += 1
    return n


async def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url)


async def _enqueue(url: str, queue: str, payloads: Sequence[Any], task: str = "work",
                   **kwargs: Any) -> list[str]:
    client = await _client(url)
    try:
        return await Queue(client, queue).enqueue_many(task, payloads, **kwargs)
    finally:
        await client.aclose()


async def _check(url: str, queue: str, ids: list[str], timeout: float = DRAIN_TIMEOUT
                 ) -> ChaosReport:
    client = await _client(url)
    try:
        await wait_drained(client, queue, timeout)
        return await check_invariants(client, queue, ids)
    finally:
        await client.aclose()


async def _stats(url: str, queue: str) -> Any:
    client = await _client(url)
    try:
        return await Queue(client, queue).stats()
    finally:
        await client.aclose()


def _payloads(n: int, max_sleep: float = 0.005) -> list[dict[str, Any]]:
    return [{"v": i, "s": random.uniform(0, max_sleep)} for i in range(n)]


def _name(scenario: str) -> str:
    return f"{scenario}-{uuid.uuid4().hex[:6]}"


# -- 1. SIGKILL workers ----------------------------------------------------------------------

async def sigkill_workers(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """SIGKILL random workers mid-job, repeatedly, while three drain the queue, and
    scheduler processes too, while three fire a one-second schedule into it; restart them
    each time. Every tick must be enqueued, and run, once."""
    q = _name("sigkill")
    start = time.monotonic()
    ids = await _enqueue(server.url, q, _payloads(size.jobs, 0.01))
    fleet = Fleet(server.url, q, 3, logdir, concurrency=20, lease_timeout=1.0)
    schedulers = [SchedulerProcess(server.url, q, SCHEDULES, log_path=logdir / f"sched-{i}.log")
                  for i in range(3)]
    fleet.start()
    for s in schedulers:
        s.start()
    kills = 0
    try:
        while kills < size.kills and (await _stats(server.url, q)).todos > 0:
            await anyio.sleep(random.uniform(0.2, 0.5))
            if kills % 2:
                random.choice(schedulers).kill()
            else:
                fleet.kill_random()
            kills += 1
            await anyio.sleep(0.05)
            fleet.restart_dead()
            for s in schedulers:
                if not s.alive:
                    s.start()
        # The schedulers start slower than the workers drain a small run: give them
        # three ticks at least.
        with anyio.fail_after(30):
            while len(await _ticks(server.url, q)) < 3:
                await anyio.sleep(0.1)
        for s in schedulers:
            s.terminate()
        ticks = await _ticks(server.url, q)
        report = await _check(server.url, q, ids + [f"tick@{t}" for t in ticks])
    finally:
        fleet.terminate()
        for s in schedulers:
            s.terminate()
    outcome = Outcome("SIGKILL workers and schedulers", size.jobs + len(ticks), kills, report,
                      time.monotonic() - start)
    outcome.notes.append(f"{len(ticks)} ticks of a one-second schedule, fired by 3 "
                         "schedulers that were SIGKILLed too")
    if not ticks or ticks != list(range(ticks[0], ticks[-1] + 1000, 1000)):
        outcome.notes.append(f"FAILED: the ticks are not each enqueued once: {ticks}")
    return outcome


async def _ticks(url: str, queue: str) -> list[int]:
    """The ticks whose job the schedule of :data:`SCHEDULES` enqueued."""
    client = await _client(url)
    try:
        jobs = [key.decode() async for key in client.scan_iter(
            match=f"leaseq:{{{queue}}}:job:tick@*", count=1000)]
    finally:
        await client.aclose()
    return sorted(int(j.rsplit("@", 1)[1]) for j in jobs)


# -- 2. zombie worker ------------------------------------------------------------------------

async def zombie_worker(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """SIGSTOP a worker holding leases until they expire and are re-claimed, then
    SIGCONT it: its heartbeats and acks must be rejected."""
    q = _name("zombie")
    start = time.monotonic()
    n = 60
    ids = await _enqueue(server.url, q, [{"v": i, "s": 0.4} for i in range(n)])
    zombie = WorkerProcess(server.url, TARGET, q, concurrency=10, lease_timeout=1.0,
                           log_path=logdir / "zombie.log")
    zombie.start()
    client = await _client(server.url)
    try:
        with anyio.fail_after(30):
            while (await Queue(client, q).stats()).in_progress < 10:
                await anyio.sleep(0.01)
        zombie.stop()
        rescuer = WorkerProcess(server.url, TARGET, q, concurrency=10, lease_timeout=1.0,
                                log_path=logdir / "rescuer.log")
        rescuer.start()
        await anyio.sleep(2.5)  # the zombie's leases expire; the rescuer takes its jobs
        zombie.cont()
        report = await _check(server.url, q, ids)
    finally:
        await client.aclose()
        zombie.terminate()
        rescuer.terminate()
    outcome = Outcome("zombie worker (SIGSTOP/SIGCONT)", n, 1, report,
                      time.monotonic() - start)
    rejected = log_events(logdir, "lease_lost")
    outcome.notes.append(f"stale acks/heartbeats rejected: {rejected}")
    return outcome


# -- 3. Redis killed and restarted -----------------------------------------------------------

async def redis_restart(size: Size, logdir: Path, appendfsync: str | None) -> Outcome:
    """SIGKILL redis-server twice mid-run and restart it, while a producer enqueues (with
    explicit ids, retried until acknowledged) and three workers drain. ``appendfsync``
    ``always`` must lose nothing; ``everysec`` and ``None`` (no persistence) are measured."""
    label = {"always": "AOF always", "everysec": "AOF everysec", None: "no persistence"}
    server = RedisServer(appendonly=appendfsync is not None,
                         appendfsync=appendfsync or "everysec")
    server.start()
    q = _name("restart")
    start = time.monotonic()
    fleet = Fleet(server.url, q, 3, logdir, concurrency=20, lease_timeout=1.0)
    fleet.start()
    acknowledged: list[str] = []
    n = size.jobs
    restarts = 0

    async def produce() -> None:
        client = await _client(server.url)
        queue = Queue(client, q)
        try:
            for i in range(0, n, 50):
                batch = [f"job-{j}" for j in range(i, min(i + 50, n))]
                while True:
                    try:
                        await queue.enqueue_many("work", [{"v": j} for j in batch],
                                                 job_ids=batch)
                        break
                    except (RedisError, OSError):
                        await anyio.sleep(0.1)  # server down: retry (ids make it safe)
                acknowledged.extend(batch)
                await anyio.sleep(0.04)
        finally:
            await client.aclose()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            for _ in range(2):
                await anyio.sleep(0.4)
                await anyio.to_thread.run_sync(server.restart)
                restarts += 1
        report = await _check(server.url, q, acknowledged, timeout=120)
    finally:
        fleet.terminate()
        server.close()
    outcome = Outcome(f"Redis SIGKILL+restart, {label[appendfsync]}", n, restarts, report,
                      time.monotonic() - start)
    if appendfsync != "always":
        outcome.notes.append("losses measured, not a failure: "
                             "only appendfsync always promises none")
        outcome.measured = True
    return outcome


# -- 4. network faults -----------------------------------------------------------------------

async def network_faults(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """Workers reach Redis through a proxy that drops, stalls and resets connections."""
    q = _name("network")
    start = time.monotonic()
    ids = await _enqueue(server.url, q, _payloads(size.jobs // 2, 0.005))
    async with FaultyProxy("127.0.0.1", server.port) as proxy:
        fleet = Fleet(proxy.url, q, 3, logdir, concurrency=20, lease_timeout=2.0)
        fleet.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(proxy.inject_faults, 0.3)
                report = await _check(server.url, q, ids)
                tg.cancel_scope.cancel()
        finally:
            fleet.terminate()
        faults = proxy.faults
    return Outcome("network drops/stalls/resets", len(ids), faults, report,
                   time.monotonic() - start)


# -- 5. slow Redis ---------------------------------------------------------------------------

async def slow_redis(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """``DEBUG SLEEP`` longer than a heartbeat interval but shorter than the lease: no
    lease may be lost (no duplicate); then longer than the lease: jobs are redone."""
    q = _name("slow")
    start = time.monotonic()
    ids = await _enqueue(server.url, q, [{"v": i, "s": 0.3} for i in range(200)])
    fleet = Fleet(server.url, q, 2, logdir, concurrency=20, lease_timeout=3.0)
    fleet.start()
    client = await _client(server.url)
    try:
        with anyio.fail_after(30):
            while (await Queue(client, q).stats()).in_progress < 20:
                await anyio.sleep(0.01)
        await client.execute_command("DEBUG", "SLEEP", "1.5")  # > heartbeat (1 s), < lease
        short = await _check(server.url, q, ids)
        ids2 = await _enqueue(server.url, q, [{"v": i, "s": 0.3} for i in range(100)])
        with anyio.fail_after(30):
            while (await Queue(client, q).stats()).in_progress < 20:
                await anyio.sleep(0.01)
        await client.execute_command("DEBUG", "SLEEP", "4")  # > lease: leases expire
        report = await _check(server.url, q, ids + ids2)
    finally:
        await client.aclose()
        fleet.terminate()
    outcome = Outcome("slow Redis (DEBUG SLEEP)", 300, 2, report, time.monotonic() - start)
    outcome.notes.append(f"duplicates after a pause shorter than the lease: "
                         f"{short.duplicated} (must be 0)")
    if short.duplicated:
        outcome.notes.append("FAILED: a lease was lost spuriously")
    return outcome


# -- 6. reapers ------------------------------------------------------------------------------

async def reaper_processes(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """Workers without reapers; two reaper processes, killed and restarted repeatedly,
    while workers are killed too (so there are expired leases to reap)."""
    q = _name("reapers")
    start = time.monotonic()
    ids = await _enqueue(server.url, q, _payloads(size.jobs // 2, 0.01))
    fleet = Fleet(server.url, q, 3, logdir, concurrency=20, lease_timeout=1.0, reaper=False)
    reapers = [ReaperProcess(server.url, q, interval=0.1, log_path=logdir / f"reaper-{i}.log")
               for i in range(2)]
    fleet.start()
    for r in reapers:
        r.start()
    faults = 0
    try:
        for _ in range(size.kills):
            await anyio.sleep(0.3)
            random.choice(reapers).kill()
            fleet.kill_random()
            faults += 2
            await anyio.sleep(0.05)
            fleet.restart_dead()
            for r in reapers:
                r.start()
        report = await _check(server.url, q, ids)
    finally:
        for r in reapers:
            r.terminate()
        fleet.terminate()
    return Outcome("reapers killed and restarted, two at once", len(ids), faults, report,
                   time.monotonic() - start)


# -- 7. poison and bad input -----------------------------------------------------------------

async def poison(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """Handlers that raise, hang past their timeout or call sys.exit; payloads of 0 bytes,
    10 MB and invalid UTF-8 stored directly; a job hash deleted behind the queue's back.
    Each ends dead with a reason (or done); the worker keeps serving the others."""
    q = _name("poison")
    start = time.monotonic()
    client = await _client(server.url)
    queue = Queue(client, q, max_attempts=2)
    bad: dict[str, str] = {}
    try:
        for task in ("fail", "hang", "exit"):
            bad[await queue.enqueue(task, None)] = task
        big = await queue.enqueue("work", "x" * 10_000_000)
        for label, raw in (("empty payload", b""), ("invalid UTF-8", b"\xff\xfe\x00bad")):
            job_id = await queue.enqueue("work", None)
            await client.hset(queue.keys.job(job_id), "payload", raw)
            bad[job_id] = label
        gone = await queue.enqueue("work", None)
        await client.delete(queue.keys.job(gone))
        bad[gone] = "deleted hash"
        good = await queue.enqueue_many("work", _payloads(200, 0.002))
        fleet = Fleet(server.url, q, 1, logdir, concurrency=10, lease_timeout=2.0,
                      max_attempts=2)
        fleet.start()
        try:
            report = await _check(server.url, q, [*bad, big, *good])
        finally:
            fleet.terminate()
        infos = await queue.jobs(list(bad))
    finally:
        await client.aclose()
    outcome = Outcome("poison jobs and bad payloads", len(bad) + 1 + len(good), len(bad),
                      report, time.monotonic() - start, allow_dead=True)
    for job_id, info in zip(bad, infos, strict=True):
        reason = (info.dead_reason or "").splitlines()[0] if info else "missing"
        state = info.state if info else None
        outcome.notes.append(f"{bad[job_id]}: {state}: {reason}")
        if state != "dead" or not reason:
            outcome.notes.append(f"FAILED: {bad[job_id]} did not end dead with a reason")
    if report.dead != len(bad):
        outcome.notes.append(f"FAILED: {report.dead} dead, expected {len(bad)}")
    return outcome


# -- 8. clean shutdown under load ------------------------------------------------------------

async def clean_shutdown(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """SIGTERM every worker while ``size.in_flight`` jobs run: afterwards nothing is in
    progress and no lease key remains; then new workers finish every job."""
    q = _name("shutdown")
    start = time.monotonic()
    n = size.in_flight
    ids = await _enqueue(server.url, q, [{"v": i, "s": 30} for i in range(n)])
    per_worker = n // 3 + 1
    fleet = Fleet(server.url, q, 3, logdir, concurrency=per_worker, lease_timeout=10.0,
                  grace_period=0.5)
    fleet.start()
    client = await _client(server.url)
    queue = Queue(client, q)
    try:
        with anyio.fail_after(60):
            while (await queue.stats()).in_progress < n:
                await anyio.sleep(0.05)
        codes = fleet.terminate()
        stats = await queue.stats()
        leases = [k async for k in client.scan_iter(match=queue.keys.prefix + "lease:*")]
        # Shorten the jobs and let fresh workers finish them.
        for job_id in ids:
            await client.hset(queue.keys.job(job_id), "payload", json.dumps({"v": 1}))
        fleet.start()
        report = await _check(server.url, q, ids)
    finally:
        await client.aclose()
        fleet.terminate()
    outcome = Outcome("SIGTERM under load", n, 3, report, time.monotonic() - start)
    outcome.notes.append(f"after SIGTERM: in_progress={stats.in_progress}, "
                         f"lease keys={len(leases)}, todos={stats.todos}, exit codes={codes}")
    if stats.in_progress or leases or any(codes):
        outcome.notes.append("FAILED: a clean shutdown left leases behind")
    return outcome


# -- 9. clock skew ---------------------------------------------------------------------------

async def clock_skew(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """Workers run under faketime 30 s ahead and 30 s behind the Redis host (with kills):
    lease time is Redis's, so nothing changes."""
    q = _name("skew")
    start = time.monotonic()
    ids = await _enqueue(server.url, q, _payloads(size.jobs // 2, 0.01))
    workers = [
        WorkerProcess(server.url, TARGET, q, concurrency=20, lease_timeout=1.0,
                      clock_offset=offset, log_path=logdir / f"skew{i}.log")
        for i, offset in enumerate(["+30s", "-30s", "+30s"])]
    for w in workers:
        w.start()
    kills = 0
    skews: list[float] = []
    try:
        for w in workers:
            w.wait_ready()
            # The log's timestamps come from the worker's (skewed) clock.
            stamp = next(e["timestamp"] for e in w.events() if e.get("event") == "worker_started")
            skews.append(datetime.datetime.fromisoformat(stamp).timestamp() - time.time())
        for _ in range(max(2, size.kills // 3)):
            await anyio.sleep(0.4)
            victim = random.choice(workers)
            victim.kill()
            kills += 1
            victim.start()
        report = await _check(server.url, q, ids)
    finally:
        for w in workers:
            w.terminate()
    outcome = Outcome("clock skew ±30 s (faketime)", len(ids), kills, report,
                      time.monotonic() - start)
    outcome.notes.append("worker clocks off by " + ", ".join(f"{x:+.0f} s" for x in skews))
    if not (skews[0] > 20 and skews[1] < -20):
        outcome.notes.append("FAILED: the workers' clocks were not skewed")
    return outcome


# -- 10. named crash points ------------------------------------------------------------------

async def crash_points(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """Workers kill themselves at a named point (after claim; after the handler's side
    effect, before ack; between the ack's WATCH and EXEC) and are restarted."""
    q = _name("crash")
    start = time.monotonic()
    # Each crash charges an attempt to every lease its worker held (up to 10), and a
    # loaded machine adds expiries: jobs took up to 5 attempts in 12 loaded runs, and at
    # the default 5 one ended dead in a CI run. 20 leaves exhaustion by chance out, so
    # a dead job here means an attempt counted that should not have been.
    ids = await _enqueue(server.url, q, _payloads(size.jobs // 2, 0.002), max_attempts=20)
    workers = [
        WorkerProcess(server.url, TARGET, q, concurrency=10, lease_timeout=1.0,
                      crash_point=f"{point}:0.03", log_path=logdir / f"{point}.log")
        for point in ("after_claim", "before_ack", "in_ack")]
    for w in workers:
        w.start()
    crashes = 0
    client = await _client(server.url)
    queue = Queue(client, q)
    try:
        with anyio.fail_after(DRAIN_TIMEOUT):
            while True:
                for w in workers:
                    if not w.alive:
                        crashes += 1
                        w.start()
                s = await queue.stats()
                if s.todos + s.in_progress + s.delayed == 0:
                    break
                await anyio.sleep(0.05)
        report = await _check(server.url, q, ids)
    finally:
        await client.aclose()
        for w in workers:
            w.terminate()
    outcome = Outcome("named crash points", len(ids), crashes, report,
                      time.monotonic() - start)
    if crashes == 0:
        outcome.notes.append("FAILED: no crash point fired")
    return outcome


# -- 11. Redis restarted empty ---------------------------------------------------------------

async def redis_restarted_empty(size: Size, logdir: Path) -> Outcome:
    """A server without persistence restarts empty: the reaper says so loudly
    (``redis_data_lost``) and ``stats`` shows the epoch marker gone or changed."""
    server = RedisServer()
    server.start()
    q = _name("empty")
    start = time.monotonic()
    ids = await _enqueue(server.url, q, [{"v": i, "s": 0.05} for i in range(200)])
    epoch_before = (await _stats(server.url, q)).epoch
    fleet = Fleet(server.url, q, 1, logdir, concurrency=5, lease_timeout=1.0)
    fleet.start()
    try:
        # Restart once the worker has surely read the epoch marker (it has acked a job),
        # not after a fixed time: a slow start-up would otherwise create the marker
        # afresh on the empty server, and there would be nothing to detect.
        with anyio.fail_after(DRAIN_TIMEOUT):
            while (await _stats(server.url, q)).done == 0:
                await anyio.sleep(0.05)
        await anyio.to_thread.run_sync(server.restart)
        epoch_after_restart = (await _stats(server.url, q)).epoch
        with anyio.fail_after(30):
            while log_events(logdir, "redis_data_lost") == 0:
                await anyio.sleep(0.1)
        client = await _client(server.url)
        try:
            report = await check_invariants(client, q, ids)
        finally:
            await client.aclose()
    finally:
        fleet.terminate()
        server.close()
    outcome = Outcome("Redis restarted empty (no persistence)", len(ids), 1, report,
                      time.monotonic() - start, measured=True)
    outcome.notes.append(
        f"epoch before {epoch_before}, right after restart {epoch_after_restart}; "
        f"redis_data_lost logged {log_events(logdir, 'redis_data_lost')} time(s); "
        f"{report.lost} jobs lost with the data (expected without persistence)")
    if log_events(logdir, "redis_data_lost") == 0:
        outcome.notes.append("FAILED: the data loss was not reported")
    return outcome


# -- 12. cancellation storm ------------------------------------------------------------------

async def cancellation_storm(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """Cancel hundreds of claims and acks mid-command; afterwards every pooled connection
    gives correct replies and the pool's in-use count is back to its baseline."""
    q = _name("cancel")
    start = time.monotonic()
    client = aioredis.Redis.from_url(server.url, max_connections=64)
    queue = Queue(client, q, lease_timeout=1.0)
    ids = await queue.enqueue_many("work", _payloads(2000, 0))
    pool = client.connection_pool
    baseline = len(pool._in_use_connections)
    cancelled = 0

    async def churn(seed: int) -> None:
        nonlocal cancelled
        rnd = random.Random(seed)
        for _ in range(40):
            with anyio.move_on_after(rnd.uniform(0, 0.004)) as scope:
                leases = await queue.claim_many(rnd.randint(1, 5))
                await queue.ack_many([(x, x.payload) for x in leases])
            cancelled += scope.cancelled_caught

    try:
        async with anyio.create_task_group() as tg:
            for seed in range(50):
                tg.start_soon(churn, seed)
        in_use = len(pool._in_use_connections)
        wrong = 0
        for i in range(500):
            key = f"{queue.keys.prefix}probe:{i}"
            await client.set(key, str(i))
            if await client.get(key) != str(i).encode():
                wrong += 1
            await client.delete(key)
        # Whatever the storm claimed and left unacked expires and is redone.
        from leaseq import Reaper, Worker

        from .handlers import HANDLERS

        worker = Worker(queue, HANDLERS, reaper=True, reaper_interval=0.1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            await wait_drained(client, q, DRAIN_TIMEOUT)
            worker.stop()
        await Reaper(queue).sweep()
        report = await check_invariants(client, q, ids)
    finally:
        await client.aclose()
    outcome = Outcome("cancellation storm", len(ids), cancelled, report,
                      time.monotonic() - start)
    outcome.notes.append(f"cancelled mid-command: {cancelled}; wrong replies after: {wrong}; "
                         f"pool in use: baseline {baseline}, after {in_use}")
    if wrong or in_use != baseline:
        outcome.notes.append("FAILED: the pool was left in a bad state")
    return outcome


# -- 13. lost replies ------------------------------------------------------------------------

LOST_REPLY_RATE = 0.03
LOST_REPLY_SEED = 13


async def lost_replies(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """Workers and a producer reach Redis through a proxy that loses about 3% of replies
    *after* the server applied the call (it waits for the reply, discards it and resets
    the connection), so calls that already ran are sent again: by redis-py's own retry
    (the producer's client has redis-py's default retry) or by leaseq. The producer
    enqueues batches of 5 generated ids and waits for the workers to claim each batch
    before the next, so a re-sent enqueue usually finds its jobs claimed already."""
    q = _name("lostreply")
    start = time.monotonic()
    ids: list[str] = []
    async with ReplyDropProxy("127.0.0.1", server.port) as proxy:
        proxy.drop_rate(LOST_REPLY_RATE, seed=LOST_REPLY_SEED)
        fleet = Fleet(proxy.url, q, 3, logdir, concurrency=20, lease_timeout=2.0)
        fleet.start()
        # Redis(host=, port=) has redis-py's default retry (10 tries); from_url has none.
        producer = aioredis.Redis(host="127.0.0.1", port=proxy.port)
        direct = await _client(server.url)
        try:
            queue = Queue(producer, q)
            payloads = _payloads(size.jobs, 0.005)
            with anyio.fail_after(DRAIN_TIMEOUT):
                for i in range(0, size.jobs, 5):
                    ids += await queue.enqueue_many("work", payloads[i:i + 5])
                    while await direct.scard(queue.keys.todos):
                        await anyio.sleep(0.002)
                    fleet.restart_dead()
            report = await _check(server.url, q, ids)
        finally:
            await producer.aclose()
            await direct.aclose()
            fleet.terminate()
        dropped = proxy.dropped
    outcome = Outcome("lost replies (reply dropped after the server applied the call)",
                      len(ids), dropped, report, time.monotonic() - start)
    outcome.notes.append(f"replies dropped after the server applied the call: {dropped} "
                         f"(rate {LOST_REPLY_RATE:.0%} of client chunks, seed "
                         f"{LOST_REPLY_SEED})")
    if dropped == 0:
        outcome.notes.append("FAILED: no reply was dropped")
    return outcome


# -- 14. SIGKILLed workers free their concurrency slots ---------------------------------------

async def sigkill_frees_slots(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """With ``max_in_flight=4``, SIGKILL both workers while they hold the 4 slots with
    jobs that hang; a fresh worker, with no reaper anywhere, must get the slots back once
    the dead workers' leases pass (the claim drops a hold whose lease expired) and run
    every other job; a reaper started after that puts the killed jobs back, and they run."""
    q = _name("slots")
    start = time.monotonic()
    client = await _client(server.url)
    await Queue(client, q, max_in_flight=4).prepare()  # stored: every worker applies it
    hung = await _enqueue(server.url, q, [{"v": i, "s": 3600} for i in range(6)])
    doomed = Fleet(server.url, q, 2, logdir, concurrency=3, lease_timeout=1.0, reaper=False)
    fresh = WorkerProcess(server.url, TARGET, q, concurrency=4, lease_timeout=1.0,
                          reaper=False, log_path=logdir / "fresh.log")
    reaper = ReaperProcess(server.url, q, log_path=logdir / "reaper.log")
    queue = Queue(client, q)
    peak = 0
    drained_without_reaper = False
    quick: list[str] = []
    try:
        doomed.start()
        with anyio.fail_after(30):
            while (await queue.stats()).in_progress < 4:
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)  # room for a fifth claim, if the limit let one through
        held = await queue.stats()
        peak = max(held.in_progress, held.holding)
        doomed.kill_all()
        quick = await _enqueue(server.url, q, _payloads(size.jobs // 10, 0.002))
        for job_id in hung:  # whoever runs them from now on returns at once
            await client.hset(queue.keys.job(job_id), "payload", json.dumps({"v": 0}))
        fresh.start()
        with anyio.move_on_after(60):
            while True:
                s = await queue.stats()
                peak = max(peak, s.holding)
                if s.done == len(quick) + len(hung) - 4:
                    drained_without_reaper = True
                    break
                await anyio.sleep(0.01)
        reaper.start()
        report = await _check(server.url, q, hung + quick)
    finally:
        await client.aclose()
        doomed.terminate()
        fresh.terminate()
        reaper.terminate()
    outcome = Outcome("SIGKILLed workers free their max_in_flight slots", len(hung + quick),
                      2, report, time.monotonic() - start)
    outcome.notes.append(f"most slots held at once: {peak} (max_in_flight=4)")
    if peak > 4:
        outcome.notes.append("FAILED: more than max_in_flight jobs held a slot")
    if not drained_without_reaper:
        outcome.notes.append("FAILED: the other jobs did not run before a reaper ran: the "
                             "killed workers' slots were not freed by their leases' expiry")
    return outcome


Scenario = Callable[[RedisServer, Size, Path], Awaitable[Outcome]]


def with_logdir() -> Path:
    """A fresh directory for one scenario's process logs."""
    return Path(tempfile.mkdtemp(prefix="leaseq-chaos-"))


async def cancel_storm(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """Cancel random jobs, waiting and running, while workers are SIGKILLed and restarted:
    no cancelled job is acked, no cancel touches a later run of its job (each cancelled
    job was cancelled waiting, or by a cancel bound to its last lease), nothing is lost."""
    q = _name("cancels")
    start = time.monotonic()
    n = max(200, size.jobs // 2)
    # One job in ten runs for half a second, so a cancel aimed at a running job finds it
    # still running however fast this machine drains the rest.
    ids = await _enqueue(server.url, q, [{"v": i, "s": 0.5 if i % 10 == 0
                                          else random.uniform(0, 0.05)} for i in range(n)])
    fleet = Fleet(server.url, q, 3, logdir, concurrency=10, lease_timeout=1.0)
    fleet.start()
    client = await _client(server.url)
    queue = Queue(client, q)
    said: Counter[str] = Counter()
    kills = 0
    try:
        with anyio.fail_after(DRAIN_TIMEOUT):
            while True:
                stats = await queue.stats()
                if stats.todos + stats.in_progress == 0:
                    break
                running = [text(m) for m in
                           await client.srandmember(queue.keys.in_progress, 2)]
                for job_id in random.sample(ids, 5) + running:
                    said[await queue.cancel(job_id, reason="storm")] += 1
                kills = await fleet.maybe_kill(kills, size)
                await anyio.sleep(0.05)
        report = await _check(server.url, q, ids)
        k = queue.keys
        async with client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(k.job(job_id), ["token", "cancel_token", "settled"])
            rows = await pipe.execute()
        cancelled = {text(m) for m in await client.smembers(k.cancelled)}
        done = {text(m) for m in await client.smembers(k.done)}
        stale = acked = 0
        for job_id, (token, bound, settled) in zip(ids, rows, strict=True):
            if job_id in cancelled and bound is not None and bound != token:
                stale += 1  # cancelled by a cancel of an earlier lease
            if job_id in done and bound is not None and bound == settled:
                acked += 1  # acked although a cancel was bound to that very lease
    finally:
        await client.aclose()
        fleet.terminate()
    outcome = Outcome("cancels during SIGKILLs", n, kills, report, time.monotonic() - start)
    outcome.notes.append(f"cancel outcomes: {dict(said)}; cancelled {report.cancelled}")
    if stale or acked:
        outcome.notes.append(f"FAILED: {stale} job(s) cancelled by a stale cancel, {acked} "
                             "acked with a cancel bound to their lease")
    if not said["delivered"] or not said["cancelled"]:
        outcome.notes.append(f"FAILED: the storm did not cancel both waiting and running "
                             f"jobs ({dict(said)})")
    return outcome


async def reduce_after_map(server: RedisServer, size: Size, logdir: Path) -> Outcome:
    """A reduce job enqueued after a map of jobs (``after=``), with the map's workers
    SIGKILLed while it runs: the reduce starts once, after every map job is done, and
    nothing is lost."""
    q = _name("mapreduce")
    start = time.monotonic()
    n = max(200, size.jobs // 2)
    ids = await _enqueue(server.url, q, _payloads(n, 0.02))
    client = await _client(server.url)
    queue = Queue(client, q)
    reduce_id = await queue.enqueue("work", {"v": "reduce", "s": 0}, after=ids)
    fleet = Fleet(server.url, q, 3, logdir, concurrency=10, lease_timeout=1.0)
    fleet.start()
    kills = 0
    try:
        with anyio.fail_after(DRAIN_TIMEOUT):
            # Kills only while the reduce waits: a kill of its own worker would explain a
            # second run of it.
            while (await queue.stats()).blocked:
                kills = await fleet.maybe_kill(kills, size)
                await anyio.sleep(0.05)
        report = await _check(server.url, q, [*ids, reduce_id])
        maps = await queue.jobs(ids)
        reduce = await queue.job(reduce_id)
        claimed_at = await client.hget(queue.keys.job(reduce_id), "claimed_at")
    finally:
        await client.aclose()
        fleet.terminate()
    outcome = Outcome("reduce after a map, SIGKILLs", n + 1, kills, report,
                      time.monotonic() - start)
    last_map = max((m.finished_at or 0) if m else 0 for m in maps)
    started = int(claimed_at) / 1000 if claimed_at is not None else None
    outcome.notes.append(f"reduce: {reduce.state if reduce else None}, attempts "
                         f"{reduce.attempts if reduce else None}; started "
                         f"{None if started is None else round(started - last_map, 3)} s "
                         "after the last map job ended")
    if reduce is None or reduce.state != "done" or reduce.attempts != 1:
        outcome.notes.append("FAILED: the reduce did not run exactly once")
    elif started is None or started < last_map or any(
            m is None or m.state != "done" for m in maps):
        outcome.notes.append("FAILED: the reduce started before every map job was done")
    if not kills:
        outcome.notes.append("FAILED: no worker was killed while the map ran")
    return outcome


IN_SERVER: tuple[Scenario, ...] = (
    sigkill_workers, zombie_worker, network_faults, slow_redis, reaper_processes, poison,
    clean_shutdown, clock_skew, crash_points, cancellation_storm, lost_replies,
    sigkill_frees_slots, cancel_storm, reduce_after_map)
"""The scenarios that share the session's redis-server (the others start their own)."""
