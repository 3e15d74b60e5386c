"""Bad input is refused with a leaseq exception before anything is written."""

from __future__ import annotations

import math

import anyio
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


@pytest.mark.parametrize("value", [float("nan"), {(1, 2): 3}, "\ud800", "cycle"])
async def test_what_json_cannot_hold_is_refused_before_any_write(
    redis: aioredis.Redis, value: object,
):
    if value == "cycle":
        cycle: list[object] = []
        cycle.append(cycle)
        value = cycle
    q = Queue(redis, "q")
    with pytest.raises(SerializationError, match="payload cannot be serialised"):
        await q.enqueue("t", {"v": value})
    assert await redis.dbsize() == 0


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


@pytest.mark.parametrize("value", [1e15, 10**400, 10 * 365 * 86_400 + 1, -(10**400)])
async def test_durations_beyond_what_redis_takes_are_refused(redis: aioredis.Redis, value):
    """Every duration is bounded (ten years) before anything is written: 1e15 s used to
    reach SET PX as '1e+17' and fail a claim halfway; 10**400 raised OverflowError."""
    with pytest.raises(InvalidInput, match="lease_timeout"):
        Queue(redis, "q", lease_timeout=value)
    q = Queue(redis, "q")
    with pytest.raises(InvalidInput, match="delay"):
        await q.enqueue("t", 1, delay=value)
    with pytest.raises(InvalidInput, match="lease_timeout"):
        await q.enqueue("t", 1, lease_timeout=value)
    with pytest.raises(InvalidInput, match="done_ttl"):
        Queue(redis, "q", done_ttl=value)
    assert await redis.dbsize() == 0


@pytest.mark.parametrize("name", ["q\n", "\nq", "q\r\n"])
async def test_queue_names_are_matched_whole(redis: aioredis.Redis, name: str):
    """A trailing newline does not slip through the name check."""
    with pytest.raises(InvalidInput, match="queue name"):
        Queue(redis, name)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda q: q.enqueue("t\n", 1), "task"),
        (lambda q: q.enqueue("t\x00x", 1), "task"),
        (lambda q: q.enqueue("t", 1, job_id="a\nb"), "job_id"),
        (lambda q: q.enqueue("t", 1, job_id="a\n"), "job_id"),
        (lambda q: q.enqueue("t", 1, max_attempts=2**31), "max_attempts"),
        (lambda q: q.claim_many(10_001), "n must be"),
    ],
)
async def test_names_and_counts_are_checked_whole(redis: aioredis.Redis, call, match):
    q = Queue(redis, "q")
    with pytest.raises(InvalidInput, match=match):
        await call(q)
    assert await redis.dbsize() == 0


@pytest.mark.parametrize("owner", ["", "host\n", "w\udcff", "x" * 257])
async def test_bad_owner_names_are_refused(redis: aioredis.Redis, owner: str):
    """The owner is stored with every lease: one Redis cannot take would fail every
    later claim."""
    with pytest.raises(InvalidInput, match="owner"):
        Queue(redis, "q", owner=owner)


class Pickleish:
    """A binary serializer (its output is not UTF-8 text)."""

    def dumps(self, obj: object) -> bytes:
        return b"\x80\x04" + repr(obj).encode()

    def loads(self, data: bytes | str) -> object:
        return data


async def test_a_binary_serializer_on_a_decoding_client_is_refused(redis_server):
    """A client with decode_responses=True would fail to decode a claim's reply holding a
    binary payload (the worker crashed, the leases orphaned): refused up front."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        with pytest.raises(InvalidInput, match="decode_responses"):
            Queue(client, "q", serializer=Pickleish())
        Queue(client, "q")  # JSON is text: fine
    finally:
        await client.aclose()
    plain = aioredis.Redis.from_url(redis_server.url)
    try:
        Queue(plain, "q", serializer=Pickleish())  # a binary-safe client: fine
    finally:
        await plain.aclose()


@pytest.mark.parametrize(("field", "value"), [
    ("lease_ms", "1e+17"), ("lease_ms", "1.5"), ("lease_ms", "-4"), ("lease_ms", "x")])
async def test_a_bad_stored_lease_length_cannot_fail_a_claim_halfway(
    redis: aioredis.Redis, field: str, value: str
):
    """A claim never fails after its first move: a lease length Redis cannot take falls
    back to the queue's, and the job is claimed with a working lease."""
    q = Queue(redis, "q", lease_timeout=7)
    job = await q.enqueue("t", 1)
    await redis.hset(q.keys.job(job), field, value)
    lease = await q.claim()
    assert lease is not None and lease.lease_timeout == 7
    assert 0 < await redis.pttl(q.keys.lease(job)) <= 7000
    assert await redis.smembers(q.keys.in_progress) == {job.encode()}


@pytest.mark.parametrize(("field", "value"), [
    ("attempts", "x"), ("max_attempts", "1.5"),
    # tonumber() takes these, HINCRBY and the client do not:
    ("attempts", "1.0"), ("attempts", "1e1"), ("attempts", "0x5"), ("attempts", " 5"),
    ("max_attempts", "5.0"), ("max_attempts", "1e1")])
async def test_a_corrupt_stored_count_sends_the_job_to_dead_whole(
    redis: aioredis.Redis, field: str, value: str
):
    """A count the claim could not increment or compare makes the job dead (with the
    reason), instead of an error after the id was moved without its lease."""
    q = Queue(redis, "q")
    job = await q.enqueue("t", 1)
    other = await q.enqueue("t", 2)
    await redis.hset(q.keys.job(job), field, value)
    leases = await q.claim_many(5)
    assert [lease.job_id for lease in leases] == [other]
    assert await redis.smembers(q.keys.dead) == {job.encode()}
    assert await redis.exists(q.keys.lease(job)) == 0
    info = await q.job(job)
    assert info is not None and info.dead_reason == "job hash corrupt at claim"


async def test_a_large_reaper_batch_promotes_every_due_job(redis: aioredis.Redis):
    """Reaper(batch=10000) with 9,000 due delayed jobs: the promotion moves them in
    slices (unpack() of 9,000 values overflowed Lua's stack and failed every sweep)."""
    q = Queue(redis, "q", done_max=None, done_ttl=None)
    await q.enqueue_many("t", list(range(9000)), delay=0.001)
    await anyio.sleep(0.01)
    report = await Reaper(q, batch=10_000).sweep_report()
    assert report.promoted == 9000
    assert (await q.stats()).todos == 9000
