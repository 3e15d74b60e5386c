"""Bad input is refused with a leaseq exception before anything is written."""

from __future__ import annotations

import math

import pytest
import redis.asyncio as aioredis

from leaseq import InvalidInput, LeaseqError, Queue, Reaper, SerializationError


@pytest.mark.parametrize("name", ["", "a{b}", "with space", "x" * 129, None, 5, "-lead", "é"])
async def test_bad_queue_names_are_refused(redis: aioredis.Redis, name: object):
    with pytest.raises(InvalidInput, match="queue name"):
        Queue(redis, name)  # type: ignore[arg-type]


@pytest.mark.parametrize("lease", [0, -1, math.nan, math.inf, "30", True])
async def test_bad_lease_timeouts_are_refused(redis: aioredis.Redis, lease: object):
    with pytest.raises(InvalidInput, match="lease_timeout"):
        Queue(redis, "q", lease_timeout=lease)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda q: q.enqueue("", {}), "task"),
        (lambda q: q.enqueue(None, {}), "task"),
        (lambda q: q.enqueue("t", {1, 2}), "payload"),
        (lambda q: q.enqueue("t", float("nan")), "payload"),
        (lambda q: q.enqueue("t", object()), "payload"),
        (lambda q: q.enqueue("t", 1, job_id=""), "job_id"),
        (lambda q: q.enqueue("t", 1, job_id=7), "job_id"),
        # Lone surrogates (from a lenient decoder) are not Unicode Redis can store.
        (lambda q: q.enqueue("t\udb61", 1), "task"),
        (lambda q: q.enqueue("t", 1, job_id="\ud800"), "job_id"),
        (lambda q: q.enqueue("t", ["\udb61"]), "payload"),
        (lambda q: q.enqueue("t", 1, delay=-1), "delay"),
        (lambda q: q.enqueue("t", 1, max_attempts=0), "max_attempts"),
        (lambda q: q.enqueue("t", 1, lease_timeout=0), "lease_timeout"),
        (lambda q: q.enqueue_many("t", [1, {2}]), "payload"),
        (lambda q: q.enqueue_many("t", [1, 2], job_ids=["a"]), "job ids"),
        (lambda q: q.claim_many(0), "n must be"),
    ],
)
async def test_bad_enqueue_and_claim_arguments_write_nothing(redis: aioredis.Redis, call, match):
    q = Queue(redis, "q")
    with pytest.raises(InvalidInput, match=match):
        await call(q)
    assert await redis.dbsize() == 0


async def test_unserialisable_payload_is_a_serialization_error(redis: aioredis.Redis):
    q = Queue(redis, "q")
    with pytest.raises(SerializationError) as info:
        await q.enqueue("t", {"when": object()})
    assert isinstance(info.value, LeaseqError) and isinstance(info.value, ValueError)


async def test_unserialisable_result_leaves_the_lease_in_place(redis: aioredis.Redis):
    q = Queue(redis, "q")
    job_id = await q.enqueue("t", 1)
    lease = await q.claim()
    assert lease is not None
    with pytest.raises(SerializationError, match="result"):
        await q.ack(lease, result={1, 2})
    assert await redis.get(q.keys.lease(job_id)) == lease.token.encode()
    await q.ack(lease, result=[1, 2])


async def test_reaper_refuses_bad_arguments(redis: aioredis.Redis):
    q = Queue(redis, "q")
    with pytest.raises(InvalidInput):
        Reaper()
    with pytest.raises(InvalidInput):
        Reaper(q, interval=0)
    with pytest.raises(InvalidInput):
        Reaper("q")  # type: ignore[arg-type]
