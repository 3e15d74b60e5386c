"""`leaseq doctor` on the scheduling controls: the claim index of a fifo queue and the
concurrency holds are checked against the sets, and repaired without touching what a
live queue did meanwhile."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from leaseq import Queue
from leaseq.protocol.doctor import Finding, Report, diagnose
from leaseq.testing import RedisServer

from .test_doctor import run_cli

pytestmark = pytest.mark.real_redis


def _controls(report: Report) -> list[Finding]:
    return [f for f in report.findings if f.check == "controls"]


async def _damaged(redis: aioredis.Redis) -> Queue:
    """A fifo queue with one running job, whose index lost an entry, gained a stray one,
    and whose holds gained one of an id that is not running."""
    q = Queue(redis, "docf", ordering="fifo", max_in_flight=3)
    for i in range(3):
        await q.enqueue("t", i, key="k", job_id=f"j{i}")
    lease = await q.claim()
    assert lease is not None and lease.job_id == "j0"
    first, *_ = await redis.zrange(q.keys.waiting, 0, 0)
    await redis.zrem(q.keys.waiting, first)
    await redis.zadd(q.keys.waiting, {b"k\x1f0000000000000009\x1fghost": 0})
    await redis.zadd(q.keys.holds, {"leaked": 1e15})
    return q


async def test_a_clean_fifo_queue_passes_the_controls_check(
        real_redis: aioredis.Redis) -> None:
    q = Queue(real_redis, "clean", ordering="fifo", key_concurrency=1)
    await q.enqueue("t", 1, key="a")
    await q.enqueue("t", 2, key="b")
    assert await q.claim() is not None
    (finding,) = _controls(await diagnose(real_redis, ["clean"]))
    assert finding.severity == "ok"


async def test_doctor_finds_and_repairs_a_broken_index_and_a_leaked_hold(
        real_redis: aioredis.Redis) -> None:
    q = await _damaged(real_redis)
    (finding,) = _controls(await diagnose(real_redis, ["docf"]))
    assert finding.severity == "error"
    assert finding.count == 3
    assert set(finding.examples) == {"j1", "ghost", "leaked"}
    # Without --repair nothing changed: the unindexed job cannot be claimed, and the
    # leaked hold takes a slot (3 = j0, the leak and j2). The claim drops the stray
    # entry it meets on its own.
    assert [lease.job_id for lease in await q.claim_many(5)] == ["j2"]
    assert q.held_back == "full"

    (repaired,) = _controls(await diagnose(real_redis, ["docf"], repair=True))
    assert (repaired.count, repaired.repaired_count) == (2, 2)
    (again,) = _controls(await diagnose(real_redis, ["docf"]))
    assert again.severity == "ok"
    # Back in the index, j1 is claimable; the freed slot counts for it.
    assert [lease.job_id for lease in await q.claim_many(5)] == ["j1"]
    assert (await q.stats()).holding == 3


async def test_the_doctor_command_reports_and_repairs_the_controls(
        real_redis: aioredis.Redis, redis_server: RedisServer) -> None:
    await _damaged(real_redis)
    found = await run_cli(redis_server.url, "-q", "docf", "--json")
    assert found.returncode == 1, found.stdout + found.stderr
    report = Report.from_dict(json.loads(found.stdout))
    assert [(f.check, f.count) for f in report.problems] == [("controls", 3)]
    fixed = await run_cli(redis_server.url, "-q", "docf", "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    again = await run_cli(redis_server.url, "-q", "docf", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
