"""Lost replies: the server applied a call, the reply never arrived, redis-py sent it again.

redis-py retries a command (and a whole pipeline) on a connection or timeout error: a
client built with ``Redis(host=..., port=...)`` has 10 retries with a 10 ms..1 s
backoff. (``Redis.from_url`` in redis-py 8.1 builds its connection pool without that
default, so its connections do *not* retry; the clients under test here are built the
way that retries, and `proxied` checks they do.) When the connection breaks after the
server ran the call, the retry runs it a second time. Each test below lets the real
server apply one call, drops the reply in :class:`ReplyDropProxy`, lets redis-py send the
call again, and then checks that

(a) the call returned what one successful call returns, and
(b) the queue is consistent: every id in exactly one of ``todos``, ``in_progress``,
    ``done``, ``dead``, ``delayed``, each with its job hash; a lease key exactly for the
    leases a caller holds (with its token and an expiry), and ``in_progress`` holding
    exactly those ids; and no job's ``attempts`` counting a claim nobody got.

The interleaved tests hold the retry back (:meth:`ReplyDropProxy.hold`) while another
client changes the queue, then let it through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from leaseq import Lease, Queue, Reaper
from leaseq.protocol import scripts
from leaseq.protocol.claiming import claim_together
from leaseq.protocol.doctor import Report, check_queue
from leaseq.protocol.keys import QueueKeys
from leaseq.protocol.settling import ack_together
from leaseq.protocol.wire import text
from leaseq.testing import RedisServer

from .conftest import wait_for
from .helpers.replyproxy import ReplyDropProxy

pytestmark = pytest.mark.real_redis

SETS = ("todos", "in_progress", "done", "dead", "delayed")
DEFAULT_RETRIES = 10
"""redis-py's default number of retries (``redis._defaults.DEFAULT_RETRY_COUNT``)."""


# -- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture
async def direct(real_redis: aioredis.Redis) -> aioredis.Redis:
    """A client of the real server that bypasses the proxy, with every script loaded:
    otherwise the first call of a script answers NOSCRIPT (it did not run), and the drop
    would hit a call that changed nothing."""
    for script in scripts.ALL:
        await real_redis.script_load(script.source)
    return real_redis


@asynccontextmanager
async def proxied(
    server: RedisServer, **client_options: Any
) -> AsyncIterator[tuple[ReplyDropProxy, aioredis.Redis]]:
    """A :class:`ReplyDropProxy` in front of ``server`` and a client through it with
    redis-py's default retry (unless ``client_options`` says otherwise)."""
    async with ReplyDropProxy("127.0.0.1", server.port) as proxy:
        client = aioredis.Redis(host="127.0.0.1", port=proxy.port, **client_options)
        try:
            if "retry" not in client_options:
                retry = client.connection_pool.connection_kwargs["retry"]
                assert retry.get_retries() == DEFAULT_RETRIES, "not redis-py's default retry"
            yield proxy, client
        finally:
            await client.aclose()


@dataclass(frozen=True)
class State:
    """What the server holds for one queue."""

    sets: dict[str, set[str]]
    hashes: set[str]
    leases: dict[str, tuple[str, int]]
    """id -> (token, PTTL in ms) of each lease key."""
    jobs: dict[str, dict[str, str]]

    def where(self, job_id: str) -> list[str]:
        """The sets holding ``job_id``."""
        return [name for name in SETS if job_id in self.sets[name]]

    def field(self, job_id: str, name: str) -> str | None:
        return self.jobs.get(job_id, {}).get(name)


async def read_state(direct: aioredis.Redis, name: str) -> State:
    k = QueueKeys(name)
    async with direct.pipeline(transaction=False) as pipe:
        for key in (k.todos, k.in_progress, k.done, k.dead):
            pipe.smembers(key)
        pipe.zrange(k.delayed, 0, -1)
        replies = await pipe.execute()
    sets = {n: {text(m) for m in members} for n, members in zip(SETS, replies, strict=True)}
    job_prefix, lease_prefix = k.prefix + "job:", k.prefix + "lease:"
    hashes = {text(key)[len(job_prefix):]
              async for key in direct.scan_iter(match=job_prefix + "*", count=1000)}
    lease_ids = [text(key)[len(lease_prefix):]
                 async for key in direct.scan_iter(match=lease_prefix + "*", count=1000)]
    async with direct.pipeline(transaction=False) as pipe:
        for job_id in lease_ids:
            pipe.get(k.lease(job_id))
            pipe.pttl(k.lease(job_id))
        for job_id in sorted(hashes):
            pipe.hgetall(k.job(job_id))
        replies = await pipe.execute()
    leases = {job_id: (text(replies[2 * i]), int(replies[2 * i + 1]))
              for i, job_id in enumerate(lease_ids)}
    jobs = {job_id: {text(f): text(v) for f, v in raw.items()}
            for job_id, raw in zip(sorted(hashes), replies[2 * len(lease_ids):], strict=True)}
    return State(sets, hashes, leases, jobs)


async def assert_consistent(
    direct: aioredis.Redis, name: str, held: Iterable[Lease] = (),
    attempts: Mapping[str, int] | None = None,
) -> State:
    """Check invariant (b) of the module docstring and return the state.

    ``held`` are the leases callers hold; ``attempts`` the claims each job was given to a
    caller (default: 1 for a held lease's job, 0 for any other).
    """
    state = await read_state(direct, name)
    holders = {lease.job_id: lease for lease in held}
    everyone = set().union(*state.sets.values()) | state.hashes
    misplaced = {i: state.where(i) for i in everyone if len(state.where(i)) != 1}
    assert not misplaced, f"ids not in exactly one set: {misplaced}"
    no_hash = everyone - state.hashes
    assert not no_hash, f"ids without a job hash: {no_hash}"
    assert set(state.leases) == set(holders), (
        f"lease keys {sorted(state.leases)} but callers hold {sorted(holders)}")
    assert state.sets["in_progress"] == set(holders), (
        f"in_progress {sorted(state.sets['in_progress'])} but callers hold {sorted(holders)}")
    for job_id, lease in holders.items():
        token, ttl = state.leases[job_id]
        assert token == lease.token, f"lease of {job_id} holds {token}, not {lease.token}"
        assert ttl > 0, f"lease of {job_id} has no expiry (PTTL {ttl})"
    expected = {i: holders[i].attempt if i in holders else 0 for i in state.hashes}
    expected.update(attempts or {})
    counted = {i: int(state.field(i, "attempts") or 0) for i in state.hashes}
    wrong = {i: (counted[i], expected[i]) for i in state.hashes if counted[i] != expected[i]}
    assert not wrong, f"attempts (counted, claims given to callers): {wrong}"
    return state


async def lose_reply(
    proxy: ReplyDropProxy, match: bytes, call: Callable[[], Awaitable[Any]]
) -> Any:
    """Run ``call`` with the reply of its first command containing ``match`` dropped after
    the server applied it; return what the (retried) call returned."""
    proxy.arm(match)
    result = await call()
    assert proxy.dropped == 1, "the armed command was never sent"
    return result


async def held_retry(
    proxy: ReplyDropProxy, match: bytes, call: Callable[[], Awaitable[Any]],
    meanwhile: Callable[[], Awaitable[None]],
) -> Any:
    """Drop the reply of ``call``'s command containing ``match``; hold its retry back until
    ``meanwhile()`` (through another client) is done; return what ``call`` returned."""
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["result"] = await call()

    proxy.hold()  # the call's own connection is open already: only the retry waits
    proxy.arm(match)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await proxy.wait_dropped(1)
        try:
            await meanwhile()
        finally:
            proxy.release()
    return outcome["result"]


def sha(script: scripts.Script) -> bytes:
    return script.sha.encode()


# -- the proxy, and what redis-py does when a reply is lost -------------------------------------

async def test_redis_py_sends_a_command_again_when_its_reply_was_lost_after_it_ran(
        direct: aioredis.Redis, redis_server: RedisServer):
    async with proxied(redis_server) as (proxy, client):
        assert await lose_reply(proxy, b"INCR", lambda: client.incr("n")) == 2
    assert await direct.get("n") == b"2"


async def test_redis_py_sends_a_whole_pipeline_again_and_the_proxy_waits_for_every_reply(
        direct: aioredis.Redis, redis_server: RedisServer):
    # 3,000 commands span many chunks; the proxy resets only after the server answered
    # all of them, and the retry sends all of them again.
    async with proxied(redis_server) as (proxy, client), \
            client.pipeline(transaction=False) as pipe:
        for _ in range(3000):
            pipe.incr("n")
        replies = await lose_reply(proxy, b"INCR", pipe.execute)
    assert replies[-1] == 6000
    assert await direct.get("n") == b"6000"


async def test_redis_py_sends_a_multi_exec_without_watch_again_so_it_commits_twice(
        direct: aioredis.Redis, redis_server: RedisServer):
    async with proxied(redis_server) as (proxy, client), \
            client.pipeline(transaction=True) as pipe:
        pipe.incr("n")
        assert await lose_reply(proxy, b"EXEC", pipe.execute) == [2]
    assert await direct.get("n") == b"2"


async def test_redis_py_raises_watch_error_for_a_lost_exec_reply_after_watch_not_a_resend(
        direct: aioredis.Redis, redis_server: RedisServer):
    async with proxied(redis_server) as (proxy, client), \
            client.pipeline(transaction=True) as pipe:
        await pipe.watch("n")
        pipe.multi()
        pipe.incr("n")
        proxy.arm(b"EXEC")
        with pytest.raises(WatchError):
            await pipe.execute()
    assert proxy.dropped == 1
    assert await direct.get("n") == b"1"  # committed once; the caller must find that out


async def test_a_redis_py_client_from_url_does_not_retry_so_a_lost_reply_raises(
        direct: aioredis.Redis, redis_server: RedisServer):
    # redis-py 8.1: Redis.from_url builds the pool without the client's default retry.
    async with ReplyDropProxy("127.0.0.1", redis_server.port) as proxy:
        client = aioredis.Redis.from_url(proxy.url)
        try:
            proxy.arm(b"INCR")
            with pytest.raises(RedisConnectionError):
                await client.incr("n")
        finally:
            await client.aclose()
    assert await direct.get("n") == b"1"


async def test_the_proxy_holds_a_retry_until_released_while_another_client_acts(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def meanwhile() -> None:
        assert await direct.get("n") == b"1"  # applied once, the retry not through yet
        await direct.set("seen", "1")

    async with proxied(redis_server) as (proxy, client):
        await client.ping()
        got = await held_retry(proxy, b"INCR", lambda: client.incr("n"), meanwhile)
    assert got == 2


# -- producers ---------------------------------------------------------------------------------

async def test_enqueue_of_a_generated_id_whose_reply_was_lost_creates_one_waiting_job(
        direct: aioredis.Redis, redis_server: RedisServer):
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "enq")
        job_id = await lose_reply(proxy, sha(scripts.ENQUEUE), lambda: q.enqueue("t", {"a": 1}))
    state = await assert_consistent(direct, "enq")
    assert state.hashes == {job_id}
    assert state.where(job_id) == ["todos"]


async def test_enqueue_of_a_given_id_whose_reply_was_lost_returns_the_id_and_creates_one_job(
        direct: aioredis.Redis, redis_server: RedisServer):
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "enqid")
        got = await lose_reply(proxy, sha(scripts.ENQUEUE),
                               lambda: q.enqueue("t", {"a": 1}, job_id="order-1"))
    assert got == "order-1"
    state = await assert_consistent(direct, "enqid")
    assert state.hashes == {"order-1"}
    assert state.where("order-1") == ["todos"]


async def test_enqueue_many_whose_reply_was_lost_creates_each_of_600_jobs_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "many")
        ids = await lose_reply(proxy, sha(scripts.ENQUEUE),
                               lambda: q.enqueue_many("t", list(range(600))))
    assert len(ids) == len(set(ids)) == 600
    state = await assert_consistent(direct, "many")
    assert state.hashes == set(ids)
    assert state.sets["todos"] == set(ids)


# -- consumers ---------------------------------------------------------------------------------

async def test_claim_whose_reply_was_lost_leases_one_job_with_one_attempt(
        direct: aioredis.Redis, redis_server: RedisServer):
    await Queue(direct, "claim1").enqueue_many("t", list(range(3)))
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "claim1")
        lease = await lose_reply(proxy, sha(scripts.CLAIM), q.claim)
    assert lease is not None and lease.attempt == 1
    state = await assert_consistent(direct, "claim1", held=[lease])
    assert state.sets["in_progress"] == {lease.job_id}


async def test_claims_of_two_queues_in_one_round_trip_whose_reply_was_lost_lease_each_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    """``claim_together`` writes both claims in one packet; redis-py's retry sends both
    again, and each answers from its claim record."""
    await Queue(direct, "claimtwo1").enqueue_many("t", list(range(3)))
    await Queue(direct, "claimtwo2").enqueue_many("t", list(range(3)))
    async with proxied(redis_server) as (proxy, client):
        q1, q2 = Queue(client, "claimtwo1"), Queue(client, "claimtwo2")
        await q1.prepare()
        await q2.prepare()
        got = await lose_reply(proxy, sha(scripts.CLAIM),
                               lambda: claim_together([(q1, 2, None), (q2, 1, None)]))
    l1, l2 = got
    assert isinstance(l1, list) and isinstance(l2, list)
    assert (len(l1), len(l2)) == (2, 1)
    for name, leases in (("claimtwo1", l1), ("claimtwo2", l2)):
        assert all(lease.attempt == 1 for lease in leases)
        state = await assert_consistent(direct, name, held=leases)
        assert state.sets["in_progress"] == {lease.job_id for lease in leases}


async def test_claims_of_two_queues_whose_reply_was_lost_without_retries_are_recovered(
        direct: aioredis.Redis, redis_server: RedisServer):
    await Queue(direct, "recovertwo1").enqueue_many("t", list(range(3)))
    await Queue(direct, "recovertwo2").enqueue_many("t", list(range(3)))
    async with proxied(redis_server, retry=Retry(NoBackoff(), 0)) as (proxy, client):
        q1, q2 = Queue(client, "recovertwo1"), Queue(client, "recovertwo2")
        await q1.prepare()
        await q2.prepare()
        proxy.arm(sha(scripts.CLAIM))
        with pytest.raises(RedisConnectionError):
            await claim_together([(q1, 2, None), (q2, 2, None)])
        assert proxy.dropped == 1
        for q in (q1, q2):
            taken = {text(i) for i in await direct.smembers(q.keys.in_progress)}
            assert len(taken) == 2  # the server ran both claims
            leases = await q.claim_many(2)
            assert {lease.job_id for lease in leases} == taken
            assert q.recovered_leases == 2
            await assert_consistent(direct, q.name, held=leases)


async def test_a_waiting_claim_whose_reply_was_lost_is_taken_over_by_the_next_claim(
        direct: aioredis.Redis, redis_server: RedisServer):
    """The BLPOP and the claim behind it are never re-sent: the caller sees the connection
    error, and its next claim takes over the leases the lost one took."""
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "claimwait")
        proxy.arm(sha(scripts.CLAIM))
        failed: list[BaseException] = []

        async def claim() -> None:
            try:
                await q.claim_many(2, wait=60)
            except RedisConnectionError as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(claim)
            # The proxy forwards the BLPOP and the claim; the enqueue wakes them.
            await wait_for(lambda: _blocked(direct))
            await Queue(direct, "claimwait").enqueue_many("t", [1, 2, 3])
        assert proxy.dropped == 1 and len(failed) == 1
        leases = await q.claim_many(2)
    assert q.recovered_leases == 2
    assert [lease.attempt for lease in leases] == [1, 1]
    state = await assert_consistent(direct, "claimwait", held=leases)
    assert state.sets["in_progress"] == {lease.job_id for lease in leases}
    assert len(state.sets["todos"]) == 1


async def _blocked(r: aioredis.Redis) -> bool:
    return int((await r.info("clients"))["blocked_clients"]) > 0


async def test_claim_many_whose_reply_was_lost_returns_exactly_the_leases_it_took(
        direct: aioredis.Redis, redis_server: RedisServer):
    await Queue(direct, "claim2").enqueue_many("t", list(range(5)))
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "claim2")
        leases = await lose_reply(proxy, sha(scripts.CLAIM), lambda: q.claim_many(2))
    assert len(leases) == 2
    assert [lease.attempt for lease in leases] == [1, 1]
    assert await direct.scard(q.keys.in_progress) == 2, "the retry claimed jobs a second time"
    state = await assert_consistent(direct, "claim2", held=leases)
    assert state.sets["in_progress"] == {lease.job_id for lease in leases}
    assert len(state.sets["todos"]) == 3


async def test_ack_whose_reply_was_lost_returns_normally_and_the_job_is_done(
        direct: aioredis.Redis, redis_server: RedisServer):
    job_id = await Queue(direct, "ack").enqueue("t", None)
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "ack")
        lease = await q.claim()
        assert lease is not None
        await lose_reply(proxy, b"EXEC", lambda: q.ack(lease, {"ok": True}))
    state = await assert_consistent(direct, "ack", attempts={job_id: 1})
    assert state.where(job_id) == ["done"]
    assert state.field(job_id, "settled") == lease.token


async def test_ack_many_whose_reply_was_lost_reports_every_lease_acked(
        direct: aioredis.Redis, redis_server: RedisServer):
    ids = await Queue(direct, "ackmany").enqueue_many("t", list(range(3)))
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "ackmany")
        leases = await q.claim_many(3)
        oks = await lose_reply(proxy, b"EXEC",
                               lambda: q.ack_many([(lease, lease.payload) for lease in leases]))
    assert oks == [True, True, True]
    state = await assert_consistent(direct, "ackmany", attempts=dict.fromkeys(ids, 1))
    assert state.sets["done"] == set(ids)


async def test_ack_of_two_queues_in_one_transaction_whose_reply_was_lost_reports_both_acked(
        direct: aioredis.Redis, redis_server: RedisServer):
    """A worker serving several queues through one client acks them together
    (``ack_together``): one EXEC, whose lost reply must not lose either queue's acks."""
    first = await Queue(direct, "acktwo1").enqueue_many("t", list(range(2)))
    second = await Queue(direct, "acktwo2").enqueue_many("t", list(range(2)))
    async with proxied(redis_server) as (proxy, client):
        q1, q2 = Queue(client, "acktwo1"), Queue(client, "acktwo2")
        l1, l2 = await q1.claim_many(2), await q2.claim_many(2)
        oks = await lose_reply(proxy, b"EXEC", lambda: ack_together(
            [(q1, [(lease, lease.payload) for lease in l1]),
             (q2, [(lease, lease.payload) for lease in l2])]))
    assert oks == [[True, True], [True, True]]
    for name, ids, leases in (("acktwo1", first, l1), ("acktwo2", second, l2)):
        state = await assert_consistent(direct, name, attempts=dict.fromkeys(ids, 1))
        assert state.sets["done"] == set(ids)
        assert {state.field(lease.job_id, "settled") for lease in leases} == {
            lease.token for lease in leases}


@pytest.mark.parametrize(("retry_in", "cap", "outcome", "where"), [
    (None, None, "todo", "todos"),
    (5.0, None, "delayed", "delayed"),
    (None, 1, "dead", "dead"),
], ids=["todo", "delayed", "dead"])
async def test_fail_whose_reply_was_lost_returns_the_first_outcome(
        direct: aioredis.Redis, redis_server: RedisServer, retry_in: float | None,
        cap: int | None, outcome: str, where: str):
    job_id = await Queue(direct, "fail").enqueue("t", None)
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "fail")
        lease = await q.claim()
        assert lease is not None
        got = await lose_reply(proxy, sha(scripts.SETTLE),
                               lambda: q.fail(lease, "boom", retry_in=retry_in, max_attempts=cap))
    assert got == outcome
    state = await assert_consistent(direct, "fail", attempts={job_id: 1})
    assert state.where(job_id) == [where]
    assert state.field(job_id, "failures") == "1"


async def test_release_whose_reply_was_lost_requeues_once_and_gives_the_attempt_back(
        direct: aioredis.Redis, redis_server: RedisServer):
    job_id = await Queue(direct, "release").enqueue("t", None)
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "release")
        lease = await q.claim()
        assert lease is not None
        assert await lose_reply(proxy, sha(scripts.SETTLE), lambda: q.release(lease)) is None
    state = await assert_consistent(direct, "release", attempts={job_id: 0})
    assert state.where(job_id) == ["todos"]
    assert state.field(job_id, "releases") == "1"


async def test_bury_whose_reply_was_lost_moves_the_job_to_dead_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    job_id = await Queue(direct, "bury").enqueue("t", None)
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "bury")
        lease = await q.claim()
        assert lease is not None
        assert await lose_reply(proxy, sha(scripts.SETTLE),
                                lambda: q.bury(lease, "cannot run")) is None
    state = await assert_consistent(direct, "bury", attempts={job_id: 1})
    assert state.where(job_id) == ["dead"]
    assert state.field(job_id, "dead_reason") == "cannot run"


async def test_extend_whose_reply_was_lost_returns_the_renewed_lease(
        direct: aioredis.Redis, redis_server: RedisServer):
    await Queue(direct, "extend").enqueue("t", None)
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "extend", lease_timeout=10.0)
        lease = await q.claim()
        assert lease is not None
        renewed = await lose_reply(proxy, sha(scripts.EXTEND), lambda: q.extend(lease, 60.0))
    assert renewed.token == lease.token and renewed.lease_timeout == 60.0
    state = await assert_consistent(direct, "extend", held=[renewed])
    assert state.leases[lease.job_id][1] > 10_000  # renewed beyond the first lease's length


# -- the reaper --------------------------------------------------------------------------------

async def test_sweep_whose_reap_reply_was_lost_reports_the_requeue_and_counts_one_expiry(
        direct: aioredis.Redis, redis_server: RedisServer):
    consumer = Queue(direct, "reap", lease_timeout=0.05)
    job_id = await consumer.enqueue("t", None)
    assert await consumer.claim() is not None

    async def expired() -> bool:
        return not await direct.exists(consumer.keys.lease(job_id))

    await wait_for(expired)
    async with proxied(redis_server) as (proxy, client):
        reaper = Reaper(Queue(client, "reap"))
        handled = await lose_reply(proxy, sha(scripts.REAP), reaper.sweep)
    assert handled == 1, "the sweep did not report the requeue its first REAP call made"
    state = await assert_consistent(direct, "reap", attempts={job_id: 1})
    assert state.where(job_id) == ["todos"]
    assert state.field(job_id, "expiries") == "1"


async def test_sweep_whose_promote_reply_was_lost_reports_the_due_job_promoted(
        direct: aioredis.Redis, redis_server: RedisServer):
    producer = Queue(direct, "promote")
    job_id = await producer.enqueue("t", None, delay=0.05)

    async def due() -> bool:
        secs, micros = await direct.time()
        score = await direct.zscore(producer.keys.delayed, job_id)
        return score is not None and secs * 1000 + micros // 1000 >= score

    await wait_for(due)
    async with proxied(redis_server) as (proxy, client):
        reaper = Reaper(Queue(client, "promote"))
        report = await lose_reply(proxy, sha(scripts.PROMOTE), reaper.sweep_report)
    assert report.promoted == 1, "the sweep did not report the promotion its first call made"
    state = await assert_consistent(direct, "promote")
    assert state.sets["todos"] == {job_id}
    assert state.where(job_id) == ["todos"]


async def test_sweep_whose_trim_reply_was_lost_reports_the_done_job_trimmed(
        direct: aioredis.Redis, redis_server: RedisServer):
    consumer = Queue(direct, "trim")
    await consumer.enqueue("t", None)
    lease = await consumer.claim()
    assert lease is not None
    await consumer.ack(lease, "ok")
    async with proxied(redis_server) as (proxy, client):
        reaper = Reaper(Queue(client, "trim", done_max=0))
        report = await lose_reply(proxy, sha(scripts.TRIM), reaper.sweep_report)
    assert report.trimmed == 1, "the sweep did not report the trim its first call made"
    state = await assert_consistent(direct, "trim")
    assert not state.hashes and not state.sets["done"]
    assert await direct.zcard(consumer.keys.done_at) == 0


# -- operator actions --------------------------------------------------------------------------

async def _dead_job(direct: aioredis.Redis, name: str) -> str:
    consumer = Queue(direct, name)
    job_id = await consumer.enqueue("t", None)
    lease = await consumer.claim()
    assert lease is not None
    await consumer.bury(lease, "poison")
    return job_id


async def test_requeue_dead_whose_reply_was_lost_reports_the_job_requeued(
        direct: aioredis.Redis, redis_server: RedisServer):
    job_id = await _dead_job(direct, "revive")
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "revive")
        moved = await lose_reply(proxy, sha(scripts.REVIVE), q.requeue_dead)
    assert moved == 1, "requeue_dead did not report the job its first call moved"
    state = await assert_consistent(direct, "revive", attempts={job_id: 0})
    assert state.where(job_id) == ["todos"]


async def test_purge_dead_whose_reply_was_lost_reports_the_job_purged(
        direct: aioredis.Redis, redis_server: RedisServer):
    await _dead_job(direct, "purge")
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "purge")
        purged = await lose_reply(proxy, sha(scripts.PURGE), q.purge_dead)
    assert purged == 1, "purge_dead did not report the job its first call purged"
    state = await assert_consistent(direct, "purge")
    assert not state.hashes and not any(state.sets.values())


async def _orphan_lease(q: Queue, direct: aioredis.Redis) -> tuple[str, list[Lease]]:
    job_id = await q.enqueue("t", None)
    await direct.psetex(q.keys.lease(job_id), 60_000, "1-000000000000")
    return job_id, []


async def _orphan_job(q: Queue, direct: aioredis.Redis) -> tuple[str, list[Lease]]:
    await direct.hset(q.keys.job("stray"), mapping={
        "task": "t", "payload": "null", "max_attempts": 5, "enqueued_at": 0})
    return "stray", []


async def _missing_hash(q: Queue, direct: aioredis.Redis) -> tuple[str, list[Lease]]:
    await direct.sadd(q.keys.todos, "hashless")
    return "hashless", []


async def _lease_without_expiry(q: Queue, direct: aioredis.Redis) -> tuple[str, list[Lease]]:
    job_id = await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    await direct.persist(q.keys.lease(job_id))
    return job_id, [lease]


@pytest.mark.parametrize(("check", "make", "match", "where"), [
    ("orphan_lease", _orphan_lease, sha(scripts.REPAIR), "todos"),
    ("orphan_job", _orphan_job, sha(scripts.REPAIR), "todos"),
    ("missing_hash", _missing_hash, sha(scripts.REPAIR), "dead"),
    ("lease_without_expiry", _lease_without_expiry, b"PEXPIRE", "in_progress"),
], ids=["orphan_lease", "orphan_job", "missing_hash", "lease_without_expiry"])
async def test_doctor_repair_whose_reply_was_lost_reports_the_problem_repaired(
        direct: aioredis.Redis, redis_server: RedisServer, check: str,
        make: Callable[[Queue, aioredis.Redis], Awaitable[tuple[str, list[Lease]]]],
        match: bytes, where: str):
    job_id, held = await make(Queue(direct, "doctor"), direct)
    report = Report()
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "doctor")
        await lose_reply(proxy, match, lambda: check_queue(q, report, repair=True))
    found = [f for f in report.findings if f.check == check]
    assert len(found) == 1 and found[0].repaired, report.findings
    assert not report.problems, report.problems
    state = await assert_consistent(direct, "doctor", held=held,
                                    attempts={job_id: len(held)})
    assert state.where(job_id) == [where]


# -- interleaved: the retry arrives after another client changed the queue ----------------------

async def test_enqueue_retried_after_a_consumer_claimed_the_job_leaves_it_only_in_progress(
        direct: aioredis.Redis, redis_server: RedisServer):
    consumer = Queue(direct, "ivclaim")
    taken: list[Lease] = []

    async def claim() -> None:
        lease = await consumer.claim()
        assert lease is not None
        taken.append(lease)

    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "ivclaim")
        await q.prepare()  # the connection the enqueue will use is open before the hold
        job_id = await held_retry(proxy, sha(scripts.ENQUEUE),
                                  lambda: q.enqueue("t", {"a": 1}), claim)
    (lease,) = taken
    assert lease.job_id == job_id
    state = await assert_consistent(direct, "ivclaim", held=[lease])
    assert state.where(job_id) == ["in_progress"]
    assert state.field(job_id, "token") == lease.token
    await consumer.ack(lease, "ok")
    state = await assert_consistent(direct, "ivclaim", attempts={job_id: 1})
    assert state.where(job_id) == ["done"]


async def test_enqueue_retried_after_a_consumer_acked_the_job_leaves_it_done_not_claimable(
        direct: aioredis.Redis, redis_server: RedisServer):
    consumer = Queue(direct, "ivack")

    async def claim_and_ack() -> None:
        lease = await consumer.claim()
        assert lease is not None
        await consumer.ack(lease, "ok")

    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "ivack")
        await q.prepare()
        job_id = await held_retry(proxy, sha(scripts.ENQUEUE),
                                  lambda: q.enqueue("t", {"a": 1}), claim_and_ack)
    state = await assert_consistent(direct, "ivack", attempts={job_id: 1})
    assert state.where(job_id) == ["done"]
    assert await consumer.claim() is None
    await assert_consistent(direct, "ivack", attempts={job_id: 1})


async def test_enqueue_many_retried_after_a_consumer_claimed_some_puts_no_id_in_two_sets(
        direct: aioredis.Redis, redis_server: RedisServer):
    consumer = Queue(direct, "ivmany")
    taken: list[Lease] = []

    async def claim_20() -> None:
        taken.extend(await consumer.claim_many(20))
        assert len(taken) == 20

    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "ivmany")
        await q.prepare()
        ids = await held_retry(proxy, sha(scripts.ENQUEUE),
                               lambda: q.enqueue_many("t", list(range(50))), claim_20)
    state = await assert_consistent(direct, "ivmany", held=taken)
    assert state.hashes == set(ids)
    assert state.sets["in_progress"] == {lease.job_id for lease in taken}
    assert state.sets["todos"] == set(ids) - state.sets["in_progress"]


@pytest.mark.parametrize("second", ["ack", "fail"])
@pytest.mark.parametrize("first", ["fail", "release"])
async def test_settle_retried_after_another_consumer_reclaimed_and_settled_returns_first_outcome(
        direct: aioredis.Redis, redis_server: RedisServer, first: str, second: str):
    job_id = await Queue(direct, "ivsettle").enqueue("t", None)
    other = Queue(direct, "ivsettle", owner="other-consumer")

    async def reclaim_and_settle() -> None:
        lease = await other.claim()
        assert lease is not None and lease.job_id == job_id
        if second == "ack":
            await other.ack(lease, "ok")
        else:
            assert await other.fail(lease, "again") == "todo"

    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "ivsettle")
        lease = await q.claim()
        assert lease is not None

        async def settle() -> Any:
            if first == "fail":
                return await q.fail(lease, "boom")
            return await q.release(lease)

        got = await held_retry(proxy, sha(scripts.SETTLE), settle, reclaim_and_settle)
    assert got == ("todo" if first == "fail" else None)
    claims = 2 if first == "fail" else 1  # a release gives its attempt back
    state = await assert_consistent(direct, "ivsettle", attempts={job_id: claims})
    assert state.where(job_id) == (["done"] if second == "ack" else ["todos"])


async def test_claim_whose_reply_was_lost_without_retries_is_recovered_by_the_next_claim(
        direct: aioredis.Redis, redis_server: RedisServer):
    await Queue(direct, "recover").enqueue_many("t", list(range(5)))
    async with proxied(redis_server, retry=Retry(NoBackoff(), 0)) as (proxy, client):
        q = Queue(client, "recover")
        await q.prepare()
        proxy.arm(sha(scripts.CLAIM))
        with pytest.raises(RedisConnectionError):
            await q.claim_many(2)
        assert proxy.dropped == 1
        taken = {text(i) for i in await direct.smembers(q.keys.in_progress)}
        assert len(taken) == 2  # the server ran the claim whose reply was lost
        leases = await q.claim_many(2)
    assert {lease.job_id for lease in leases} == taken
    assert [lease.attempt for lease in leases] == [1, 1]
    assert q.recovered_leases == 2
    await assert_consistent(direct, "recover", held=leases)


# -- calls added since: purge of waiting jobs, presence, stored settings, per-task limits ----

async def test_purge_waiting_whose_reply_was_lost_reports_every_job_purged(
        direct: aioredis.Redis, redis_server: RedisServer):
    await Queue(direct, "dropall").enqueue_many("t", list(range(20)))
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "dropall")
        purged = await lose_reply(proxy, sha(scripts.DROP), q.purge_waiting)
    assert purged == 20, "purge_waiting did not report the jobs its first call deleted"
    state = await assert_consistent(direct, "dropall")
    assert not state.hashes and not any(state.sets.values())


async def test_presence_whose_reply_was_lost_lists_the_worker_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    from leaseq.runtime.presence import Presence

    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "present")
        presence = Presence([q], lambda: {
            "host": "h", "pid": 1, "queues": ["present"], "concurrency": 1,
            "in_flight": 0, "started_at": 0.0, "version": "x"}, interval=60)
        await lose_reply(proxy, sha(scripts.PRESENCE), lambda: presence._beat(
            '{"id": "w", "host": "h", "pid": 1, "queues": ["present"], "concurrency": 1, '
            '"in_flight": 0, "started_at": 0.0, "version": "x"}'))
    workers = await Queue(direct, "present").workers()
    assert [w.id for w in workers] == [presence.worker_id]
    assert await direct.zcard(QueueKeys("present").workers) == 1


async def test_stored_settings_whose_reply_was_lost_are_stored_once_and_applied(
        direct: aioredis.Redis, redis_server: RedisServer):
    """prepare() (registry, epoch marker, stored settings: plain writes of fixed values)
    sent again after its reply was lost stores the same thing."""
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "settled", done_max=7, lease_timeout=12)
        await lose_reply(proxy, b"HSET", q.prepare)
    assert await direct.hgetall(QueueKeys("settled").settings) == {
        b"done_max": b"7", b"lease_ms": b"12000"}
    reader = Queue(direct, "settled")
    await reader.prepare()
    assert (reader.done_max, reader.lease_timeout) == (7, 12.0)


async def test_claim_with_a_task_limit_whose_reply_was_lost_stores_the_limit_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    await Queue(direct, "capped", max_attempts=5).enqueue("t", None)
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "capped")
        leases = await lose_reply(proxy, sha(scripts.CLAIM),
                                  lambda: q.claim_many(1, max_attempts={"t": 2}))
    (lease,) = leases
    assert (lease.attempt, lease.max_attempts) == (1, 2)
    await assert_consistent(direct, "capped", held=leases)
    assert await direct.hget(QueueKeys("capped").job(lease.job_id), "max_attempts") == b"2"


async def test_a_tick_whose_reply_was_lost_enqueues_its_job_once_and_the_scheduler_goes_on(
        direct: aioredis.Redis, redis_server: RedisServer):
    from leaseq import Every, Scheduler

    schedule = Every(1, "t", name="every")
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "ticked")
        scheduler = Scheduler(q, [schedule])
        await scheduler._fire_due(schedule, 1_000_000)  # the baseline
        # The re-sent call finds the tick decided ('raced'): the scheduler stops there
        # and the next round reads the state again.
        await lose_reply(proxy, sha(scripts.TICK),
                         lambda: scheduler._fire_due(schedule, 1_001_000))
        await scheduler._fire_due(schedule, 1_002_000)
    state = await assert_consistent(direct, "ticked")
    assert state.hashes == {"every@1001000", "every@1002000"}
    assert state.where("every@1001000") == ["todos"]
    raw = await direct.hgetall(QueueKeys("ticked").schedule("every"))
    assert raw[b"enqueued"] == b"2" and raw[b"last_tick"] == b"1002000"
