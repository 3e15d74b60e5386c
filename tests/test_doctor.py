"""``leaseq.doctor`` against a real redis-server: unknown queues, expired leases nobody
reaps, a stale or missing reaper, bounded reports of thousands of problems, and the JSON
form; then the ``leaseq doctor`` command as a subprocess (with ``--json``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import Queue, Reaper
from leaseq.protocol import doctor
from leaseq.protocol.admin import server_ms
from leaseq.protocol.doctor import Finding, Report, check_queue
from leaseq.protocol.keys import QUEUES_KEY
from leaseq.testing import RedisServer

pytestmark = pytest.mark.real_redis

ROOT = Path(__file__).parent.parent
MINUTE_MS = 60_000


def one(report: Report, check: str, queue: str | None = None) -> Finding:
    found = [f for f in report.findings if f.check == check and f.queue == queue]
    assert len(found) == 1, report.findings
    return found[0]


async def expired_leases(q: Queue, n: int, claimed_ago_ms: int) -> list[str]:
    """``n`` jobs as a worker that died leaves them once its leases expired: in
    ``in_progress`` with ``claimed_at`` set (Redis's clock) and no lease key."""
    ids = await q.enqueue_many("t", list(range(n)))
    now = await server_ms(q.redis)
    async with q.redis.pipeline(transaction=False) as pipe:
        for i, job_id in enumerate(ids):
            pipe.smove(q.keys.todos, q.keys.in_progress, job_id)
            # The first id has the oldest claim.
            pipe.hset(q.keys.job(job_id), mapping={"claimed_at": now - claimed_ago_ms + i,
                                                   "attempts": 1, "token": f"{i}-dead"})
        await pipe.execute()
    return ids


async def reaper_swept(q: Queue, ago_ms: int) -> None:
    """Stamp ``meta.reaper_seen`` as a sweep ``ago_ms`` ago would have (Redis's clock)."""
    await q.redis.hset(q.keys.meta, "reaper_seen", await server_ms(q.redis) - ago_ms)


# -- the library ------------------------------------------------------------------------------


async def test_unknown_queue_is_a_problem_and_doctor_creates_nothing(
        real_redis: aioredis.Redis):
    report = Report()
    await check_queue(Queue(real_redis, "nosuch"), report)
    assert [f.check for f in report.problems] == ["known"]
    assert "queue 'nosuch' is not known on this server" in report.problems[0].message
    assert await real_redis.dbsize() == 0  # neither registered nor any key written


async def test_registered_queue_without_keys_is_known(real_redis: aioredis.Redis):
    q = Queue(real_redis, "emptied")
    await q.prepare()
    await real_redis.delete(q.keys.meta)  # only the registry entry is left
    report = Report()
    await check_queue(q, report)
    assert not report.problems, report.problems
    assert one(report, "known", "emptied").status == "ok"


@pytest.mark.parametrize(("swept_ago_ms", "status", "reaper_status"), [
    (None, "problem", "warn"),             # no reaper ever swept the queue
    (10 * MINUTE_MS, "problem", "warn"),   # the last sweep was ten minutes ago
    (0, "warn", "ok"),                     # a live reaper requeues them at its next sweep
], ids=["reaper_missing", "reaper_stale", "reaper_fresh"])
async def test_expired_leases_are_a_problem_when_no_reaper_handles_them(
        real_redis: aioredis.Redis, swept_ago_ms: int | None, status: str,
        reaper_status: str):
    q = Queue(real_redis, "stale")
    ids = await expired_leases(q, 3, claimed_ago_ms=5 * MINUTE_MS)
    assert await q.claim() is None  # nothing waiting: every id is an expired lease
    await q.enqueue("t", "live")
    assert await q.claim() is not None  # a held lease is not an expired one
    if swept_ago_ms is not None:
        await reaper_swept(q, swept_ago_ms)
    report = Report()
    await check_queue(q, report)
    expired = one(report, "expired_leases", "stale")
    assert (expired.status, expired.count) == (status, 3)
    assert sorted(expired.examples) == sorted(ids)
    assert 299 <= expired.details["oldest_claim_age_s"] <= 330  # type: ignore[operator]
    assert "3 id(s) of in_progress whose lease expired" in expired.message
    assert "oldest claim 300 s ago" in expired.message
    assert one(report, "reaper", "stale").status == reaper_status
    assert bool(report.problems) == (status == "problem")


async def test_a_reaper_sweep_clears_what_doctor_reported(real_redis: aioredis.Redis):
    q = Queue(real_redis, "swept")
    await expired_leases(q, 4, claimed_ago_ms=2 * MINUTE_MS)
    await reaper_swept(q, 5 * MINUTE_MS)
    before = Report()
    await check_queue(q, before)
    assert [f.check for f in before.problems] == ["expired_leases"]
    assert "no reaper sweep for 300 s" in one(before, "reaper", "swept").message
    assert await Reaper(q).sweep() == 4  # a real sweep: requeues and stamps reaper_seen
    after = Report()
    await check_queue(q, after)
    assert not after.problems and not after.warnings, after.findings
    assert one(after, "expired_leases", "swept").count == 0
    assert one(after, "reaper", "swept").status == "ok"


async def test_five_thousand_problems_make_a_bounded_report_with_exact_counts(
        real_redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch):
    q = Queue(real_redis, "big")
    await expired_leases(q, 5000, claimed_ago_ms=10 * MINUTE_MS)
    async with real_redis.pipeline(transaction=False) as pipe:
        for start in range(0, 5000, 1000):
            pipe.sadd(q.keys.todos, *(f"hashless-{i}" for i in range(start, start + 1000)))
        await pipe.execute()

    async def no_smembers(*args: Any) -> Any:
        raise AssertionError("doctor loaded a whole set with SMEMBERS")

    monkeypatch.setattr(real_redis, "smembers", no_smembers)
    report = Report()
    await check_queue(q, report)
    assert len(report.findings) < 12, len(report.findings)
    expired, hashless = one(report, "expired_leases", "big"), one(report, "missing_hash", "big")
    assert (expired.status, expired.count) == ("problem", 5000)
    assert (hashless.status, hashless.count) == ("problem", 5000)
    assert len(expired.examples) == len(hashless.examples) == doctor.EXAMPLES
    assert set(hashless.examples) <= {f"hashless-{i}" for i in range(5000)}
    assert f"and {5000 - doctor.EXAMPLES} more" in hashless.message
    lines = report.lines()
    assert len(lines) < 8 and sum(map(len, lines)) < 3000, lines
    assert len(json.dumps(report.as_dict())) < 10_000


async def test_repair_of_many_items_is_one_summary_re_checked_per_item(
        real_redis: aioredis.Redis):
    q = Queue(real_redis, "fix")
    await q.enqueue("t", 1)
    async with real_redis.pipeline(transaction=False) as pipe:
        for i in range(1000):
            pipe.set(q.keys.lease(f"ghost-{i}"), "token")  # leases of no id in in_progress
        await pipe.execute()
    report = Report()
    await check_queue(q, report, repair=True)
    assert len(report.findings) < 12, len(report.findings)
    orphans = one(report, "orphan_lease", "fix")
    assert (orphans.count, orphans.repaired_count, orphans.status) == (1000, 1000, "ok")
    assert not report.problems
    assert [line.count("(repaired)") for line in report.lines() if "(repaired)" in line] == [1]
    assert not await real_redis.keys(q.keys.lease("*"))
    again = Report()
    await check_queue(q, again, repair=True)  # nothing left: the scripts change nothing
    assert one(again, "orphan_lease", "fix").count == 0
    assert one(again, "integrity", "fix").status == "ok"


async def test_json_form_round_trips(real_redis: aioredis.Redis):
    q = Queue(real_redis, "js")
    await expired_leases(q, 12, claimed_ago_ms=MINUTE_MS)
    await real_redis.sadd(q.keys.todos, "hashless")
    report = await doctor.diagnose(real_redis, ["js", "nosuch"])
    data = report.as_dict()
    assert (data["ok"], data["problems"]) == (False, 3)  # expired, missing_hash, unknown
    assert {c["status"] for c in data["checks"]} <= {"ok", "warn", "problem"}
    expired = next(c for c in data["checks"] if c["check"] == "expired_leases")
    assert (expired["queue"], expired["count"], len(expired["examples"])) == ("js", 12, 10)
    assert expired["details"]["last_sweep_age_s"] is None
    decoded = json.loads(json.dumps(data))
    assert decoded == data
    assert Report.from_dict(decoded) == report


# -- the command: `leaseq doctor` and its --json --------------------------------------------


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leaseq", "--redis", url, "doctor", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=dict(os.environ),
        check=False)


async def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: cli(url, *args))


async def test_cli_unknown_queue_exits_1_in_text_and_json(
        real_redis: aioredis.Redis, redis_server: RedisServer):
    text = await run_cli(redis_server.url, "-q", "nosuch")
    assert text.returncode == 1, text.stdout + text.stderr
    assert "FAIL  known: queue 'nosuch' is not known on this server" in text.stdout
    as_json = await run_cli(redis_server.url, "-q", "nosuch", "--json")
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    data = json.loads(as_json.stdout)
    assert (data["ok"], data["problems"]) == (False, 1)
    assert not await real_redis.exists(QUEUES_KEY)


async def test_cli_stale_reaper_with_expired_leases_exits_1(
        real_redis: aioredis.Redis, redis_server: RedisServer):
    q = Queue(real_redis, "cli-stale")
    await expired_leases(q, 2, claimed_ago_ms=3 * MINUTE_MS)
    await reaper_swept(q, 2 * MINUTE_MS)
    result = await run_cli(redis_server.url, "-q", "cli-stale", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = Report.from_dict(json.loads(result.stdout))
    assert [(f.check, f.count) for f in report.problems] == [("expired_leases", 2)]
    assert one(report, "reaper", "cli-stale").status == "warn"


async def test_cli_five_thousand_problems_print_a_bounded_summary(
        real_redis: aioredis.Redis, redis_server: RedisServer):
    q = Queue(real_redis, "cli-big")
    await q.enqueue("t", 1)
    await real_redis.sadd(q.keys.todos, *(f"hashless-{i}" for i in range(5000)))
    text = await run_cli(redis_server.url, "-q", "cli-big")
    assert text.returncode == 1, text.stderr
    assert len(text.stdout.splitlines()) < 15, text.stdout
    assert "FAIL  missing_hash: queue 'cli-big': 5000 id(s)" in text.stdout
    as_json = await run_cli(redis_server.url, "-q", "cli-big", "--json")
    data = json.loads(as_json.stdout)  # one document
    counts = {c["check"]: c["count"] for c in data["checks"] if c["queue"] == "cli-big"}
    assert (counts["missing_hash"], counts["orphan_job"]) == (5000, 0)
    repaired = await run_cli(redis_server.url, "-q", "cli-big", "--repair", "--json")
    assert repaired.returncode == 0, repaired.stdout
    fixed = next(c for c in json.loads(repaired.stdout)["checks"]
                 if c["check"] == "missing_hash")
    assert (fixed["status"], fixed["count"], fixed["repaired"]) == ("ok", 5000, 5000)
    assert await real_redis.scard(q.keys.dead) == 5000
