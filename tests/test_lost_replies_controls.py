"""Lost replies for the scheduling controls: each call the controls added or changed,
sent again by redis-py after the server applied it and the reply was lost, leaves what
ONE call leaves.

The proxy, the fixtures and the set invariants are those of ``test_lost_replies.py``.
Most tests here run their scenario twice on one server: once on a queue ``NAME-once``
through ``direct`` (no fault), once on ``NAME`` through the proxy with the reply of the
call under test dropped. Job ids are given, so the two queues must end up alike: the
claim index (``waiting``, ``active``, ``placed``), the parked keys, the holds, the rate
and deadline entries, the ``meta`` counters, the wake tokens, the settings and each job's
counters (:func:`controls_of`; values that are Redis times are left out and checked on
their own where they matter).

Operator calls (``pause``, ``resume``, ``configure``) are last writer wins: a re-sent
copy that arrives after another operator's call puts its own value back. That is one
legal order of two calls that overlapped (the first had not returned when the second
ran), as with two operators racing without a fault, so it is not tested as a failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from leaseq import Lease, Queue, Rate, Reaper
from leaseq.protocol import scripts
from leaseq.protocol.keys import QueueKeys
from leaseq.protocol.wire import text
from leaseq.testing import RedisServer

from . import test_lost_replies
from .conftest import wait_for
from .test_lost_replies import (
    assert_consistent,
    lose_reply,
    proxied,
    read_state,
    sha,
)

pytestmark = pytest.mark.real_redis

direct = test_lost_replies.direct
"""The fixture of ``test_lost_replies.py``: a flushed client with every script loaded."""

SEP = "\x1f"
INF = 10**15
"""A parked key's score while only a freed slot can unpark it (lua/_ctl.lua)."""
JOB_FIELDS = ("attempts", "failures", "releases", "expiries", "outcome", "settled_by",
              "dead_reason", "priority", "key", "max_attempts")
"""The job fields a one-call run and a re-sent run must agree on (no times, no tokens)."""
FIFO_LIMITED: dict[str, Any] = {
    "ordering": "fifo", "max_in_flight": 3, "key_concurrency": 1,
    "rate_limit": Rate(10, per=1.0, burst=5), "key_rate": Rate(20, per=1.0, burst=5)}


# -- helpers -----------------------------------------------------------------------------------

async def controls_of(direct: aioredis.Redis, name: str) -> dict[str, Any]:
    """What the controls hold for queue ``name``, without Redis times (see the module
    docstring), in a form two queues with the same job ids can be compared by."""
    k = QueueKeys(name)
    async with direct.pipeline(transaction=False) as pipe:
        pipe.zrange(k.waiting, 0, -1)
        pipe.zrange(k.active, 0, -1, withscores=True)
        pipe.zrange(k.parked, 0, -1, withscores=True)
        pipe.hgetall(k.placed)
        pipe.zrange(k.holds, 0, -1)
        pipe.zrange(k.held, 0, -1)
        pipe.zrange(k.rates, 0, -1)
        pipe.zrange(k.deadlines, 0, -1)
        pipe.hmget(k.meta, ["seq", "turn", "expired"])
        pipe.llen(k.wake)
        pipe.hgetall(k.settings)
        pipe.llen(k.events)
        (waiting, active, parked, placed, holds, held, rates, deadlines, meta, wake,
         settings, events) = await pipe.execute()
    state = await read_state(direct, name)

    def parked_at(score: float) -> Any:
        return int(score) if score in (0, INF) else "a time"

    return {
        "sets": state.sets,
        "jobs": {i: {f: v for f, v in job.items() if f in JOB_FIELDS}
                 for i, job in state.jobs.items()},
        "waiting": [text(m) for m in waiting],
        "active": [(text(m), s) for m, s in active],
        "parked": [(text(m), parked_at(s)) for m, s in parked],
        "placed": {text(f): text(v) for f, v in placed.items()},
        "holds": [text(m) for m in holds],
        "held": [text(m) for m in held],
        "rates": [text(m) for m in rates],
        "deadlines": [text(m) for m in deadlines],
        "meta": [None if v is None else text(v) for v in meta],
        "wake": wake,
        "settings": {text(f): text(v) for f, v in settings.items()},
        "events": events,
    }


@dataclass
class Run:
    """One lane of a twin run: its queue, what its setup returned, what the call under
    test returned."""

    q: Queue
    ctx: Any
    result: Any


Setup = Callable[[Queue], Awaitable[Any]]
Act = Callable[[Queue, Any], Awaitable[Any]]


@asynccontextmanager
async def twin(
    direct: aioredis.Redis, server: RedisServer, name: str, match: bytes,
    setup: Setup, act: Act, **options: Any,
) -> AsyncIterator[tuple[Run, Run]]:
    """Run ``setup(q)`` then ``act(q, ctx)`` on ``NAME-once`` (no fault) and on ``NAME``
    through the proxy with the reply of ``act``'s command containing ``match`` lost;
    check that the controls of both queues are alike and yield (once, lost) while the
    proxy (which the lost lane's queue talks through) is open."""
    q = Queue(direct, f"{name}-once", **options)
    ctx = await setup(q)
    once = Run(q, ctx, await act(q, ctx))
    async with proxied(server) as (proxy, client):
        q = Queue(client, name, **options)
        ctx = await setup(q)
        lost = Run(q, ctx, await lose_reply(proxy, match, lambda: act(q, ctx)))
        await assert_same_controls(direct, name)
        yield once, lost


async def assert_same_controls(direct: aioredis.Redis, name: str) -> None:
    """The controls of ``NAME`` (re-sent call) are those of ``NAME-once`` (one call)."""
    one = await controls_of(direct, f"{name}-once")
    resent = await controls_of(direct, name)
    differ = {part: {"one call": one[part], "re-sent": resent[part]}
              for part in one if one[part] != resent[part]}
    assert not differ, f"the re-sent call left the controls unlike one call: {differ}"


def entries_of(members: list[str], job_id: str) -> list[str]:
    """The ``waiting`` members of ``job_id``."""
    return [m for m in members if m.endswith(SEP + job_id)]


async def waiting_of(direct: aioredis.Redis, name: str) -> list[str]:
    return [text(m) for m in await direct.zrange(QueueKeys(name).waiting, 0, -1)]


async def redis_ms(direct: aioredis.Redis) -> int:
    secs, micros = await direct.time()
    return int(secs) * 1000 + int(micros) // 1000


async def enqueue_keyed(q: Queue, jobs: dict[str, str], **options: Any) -> None:
    """Enqueue one job per id (in order), each with its fair-queueing key."""
    for job_id, key in jobs.items():
        await q.enqueue("t", {"id": job_id}, job_id=job_id, key=key, **options)


# -- producers ---------------------------------------------------------------------------------

async def test_fifo_enqueue_of_a_generated_id_resent_indexes_the_job_once_and_it_is_claimed_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    async with proxied(redis_server) as (proxy, client):
        q = Queue(client, "fenq", ordering="fifo")
        job_id = await lose_reply(proxy, sha(scripts.ENQUEUE),
                                  lambda: q.enqueue("t", None, key="a", priority=3))
        k = q.keys
        assert await direct.zcard(k.waiting) == 1, await waiting_of(direct, "fenq")
        assert await direct.hlen(k.placed) == 1
        # A call that ranks jobs reserves one block of 64 enqueue numbers; a second run
        # that ranked again would have reserved a second block.
        assert await direct.hget(k.meta, "seq") == b"64", "the job was ranked twice"
        leases = await q.claim_many(5)
        assert [lease.job_id for lease in leases] == [job_id]
        assert await q.claim() is None
    await assert_consistent(direct, "fenq", held=leases)
    assert await direct.zcard(k.waiting) == 0


async def test_fifo_enqueue_of_given_ids_with_priority_key_and_deadline_resent_is_one_enqueue(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        await q.enqueue("t", None, job_id="first", key="a")

    async def act(q: Queue, _: None) -> list[str]:
        return await q.enqueue_many("t", [1, 2], job_ids=["hi", "lo"], key="a",
                                    priority=5, expires_in=60)

    async with twin(direct, redis_server, "fenqid", sha(scripts.ENQUEUE), setup, act,
                    ordering="fifo") as (once, lost):
        assert lost.result == once.result == ["hi", "lo"]
        waiting = await waiting_of(direct, "fenqid")
        assert [len(entries_of(waiting, i)) for i in ("first", "hi", "lo")] == [1, 1, 1]
        assert await direct.zcard(QueueKeys("fenqid").deadlines) == 2
        await assert_consistent(direct, "fenqid")
        # Priority first: the two new jobs come before the older one of priority 0.
        leases = await lost.q.claim_many(3)
        assert [lease.job_id for lease in leases] == ["hi", "lo", "first"]


# -- claims ------------------------------------------------------------------------------------

async def test_fifo_limited_claim_resent_returns_the_same_leases_and_takes_rate_and_slots_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        await enqueue_keyed(q, {"a1": "a", "a2": "a", "b1": "b", "c1": "c", "d1": "d"})

    async def act(q: Queue, _: None) -> list[Lease]:
        return await q.claim_many(4)

    options = {**FIFO_LIMITED, "key_concurrency": 2}
    async with twin(direct, redis_server, "fclaim", sha(scripts.CLAIM), setup, act,
                    **options) as (once, lost):
        # max_in_flight=3 of the 4 asked, one per key in turn.
        assert [lease.job_id for lease in lost.result] == ["a1", "b1", "c1"]
        def shown(leases: list[Lease]) -> list[tuple[Any, ...]]:
            return [(x.job_id, x.task, x.payload, x.attempt, x.max_attempts, x.lease_timeout,
                     x.key, x.holds) for x in leases]

        assert shown(lost.result) == shown(once.result)
        assert [(lease.attempt, lease.key, lease.holds) for lease in lost.result] == [
            (1, "a", 3), (1, "b", 3), (1, "c", 3)]
        k = QueueKeys("fclaim")
        assert await direct.zcard(k.holds) == 3
        assert await direct.zcard(k.held) == 3
        state = await assert_consistent(direct, "fclaim", held=lost.result)
        # GCRA: one claim of 3 moved the queue's arrival time on by 3 * 100 ms from the
        # claim's time, each key's by 50 ms, not twice that.
        claimed_at = {int(state.field(i, "claimed_at") or 0) for i in ("a1", "b1", "c1")}
        (at,) = claimed_at
        assert await direct.zscore(k.rates, "q") == at + 3 * 100
        for key in ("a", "b", "c"):
            assert await direct.zscore(k.rates, f"k{SEP}{key}") == at + 50, key
        # Full: nothing more starts until a slot frees.
        assert await lost.q.claim_many(4) == []
        assert lost.q.held_back == "full"


async def test_claim_with_a_rate_limit_resent_consumes_the_rate_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    """A rate that allows exactly the jobs of one claim: a second run of the claim would
    find no room (and the retry's leases would be none)."""
    async def setup(q: Queue) -> None:
        await enqueue_keyed(q, {f"j{i}": "a" for i in range(4)})

    async def act(q: Queue, _: None) -> list[Lease]:
        return await q.claim_many(2)

    async with twin(direct, redis_server, "frate", sha(scripts.CLAIM), setup, act,
                    ordering="fifo", rate_limit=Rate(2, per=60.0, burst=2)) as (_, lost):
        assert [lease.job_id for lease in lost.result] == ["j0", "j1"]
        state = await assert_consistent(direct, "frate", held=lost.result)
        at = int(state.field("j0", "claimed_at") or 0)
        assert await direct.zscore(QueueKeys("frate").rates, "q") == at + 2 * 30_000
        assert await lost.q.claim() is None
        assert lost.q.held_back == "limited"


# -- settling ----------------------------------------------------------------------------------

async def test_ack_resent_frees_the_slot_and_forgets_the_placement_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> Lease:
        await enqueue_keyed(q, {"a1": "a", "a2": "a"})
        lease = await q.claim()
        assert lease is not None and lease.job_id == "a1"
        assert await q.claim() is None and q.held_back == "keys"  # key a at its limit
        return lease

    async def act(q: Queue, lease: Lease) -> None:
        await q.ack(lease, "ok")

    async with twin(direct, redis_server, "fack", b"EXEC", setup, act,
                    **FIFO_LIMITED) as (_, lost):
        k = QueueKeys("fack")
        assert await direct.zcard(k.holds) == 0
        assert await direct.zcard(k.held) == 0
        assert await direct.hkeys(k.placed) == [b"a2"]
        state = await assert_consistent(direct, "fack", attempts={"a1": 1})
        assert state.where("a1") == ["done"]
        nxt = await lost.q.claim()
        assert nxt is not None and nxt.job_id == "a2", "key a did not become claimable again"
        await assert_consistent(direct, "fack", held=[nxt], attempts={"a1": 1})


@pytest.mark.parametrize(("mode", "then"), [("release", "a1"), ("fail", "a2")])
async def test_settle_resent_puts_the_job_in_waiting_once_and_frees_its_slot_once(
        direct: aioredis.Redis, redis_server: RedisServer, mode: str, then: str):
    """A release goes back to its place (ahead of a2), a failure is ranked anew (behind)."""
    name = f"f{mode}"
    before: dict[str, list[str]] = {}

    async def setup(q: Queue) -> list[Lease]:
        await enqueue_keyed(q, {"a1": "a", "a2": "a", "b1": "b"})
        before[q.name] = entries_of(await waiting_of(direct, q.name), "a1")
        leases = await q.claim_many(3)  # a1 and b1; key a parks at its limit
        assert [lease.job_id for lease in leases] == ["a1", "b1"]
        return leases

    async def act(q: Queue, leases: list[Lease]) -> Any:
        if mode == "release":
            return await q.release(leases[0])
        return await q.fail(leases[0], "boom")

    async with twin(direct, redis_server, name, sha(scripts.SETTLE), setup, act,
                    **FIFO_LIMITED) as (once, lost):
        assert lost.result == once.result == (None if mode == "release" else "todo")
        k = QueueKeys(name)
        mine = entries_of(await waiting_of(direct, name), "a1")
        assert len(mine) == 1, mine
        assert (mine == before[name]) == (mode == "release")
        assert await direct.zrange(k.holds, 0, -1) == [b"b1"]
        assert await direct.zrange(k.held, 0, -1) == [f"b{SEP}b1".encode()]
        assert await direct.zscore(k.parked, "a") == 0  # looked at again by the next claim
        state = await assert_consistent(direct, name, held=[lost.ctx[1]],
                                        attempts={"a1": 1 if mode == "fail" else 0})
        assert state.where("a1") == ["todos"]
        nxt = await lost.q.claim()
        assert nxt is not None and nxt.job_id == then


async def test_extend_resent_moves_the_hold_to_the_lease_s_new_expiry(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> Lease:
        await enqueue_keyed(q, {"a1": "a"})
        lease = await q.claim()
        assert lease is not None
        return lease

    async def act(q: Queue, lease: Lease) -> Lease:
        return await q.extend(lease, 60.0)

    async with twin(direct, redis_server, "fextend", sha(scripts.EXTEND), setup, act,
                    lease_timeout=10.0, **FIFO_LIMITED) as (_, lost):
        renewed = lost.result
        assert renewed.token == lost.ctx.token and renewed.lease_timeout == 60.0
        k = QueueKeys("fextend")
        score = await direct.zscore(k.holds, "a1")
        assert score is not None
        assert score == round(renewed.deadline * 1000), "the hold did not move with the lease"
        # The lease ends at the PTTL's moment + ttl, a moment between the two clock reads
        # (however long a loaded machine takes between them); the hold ends with it, to
        # the ms either way (the script's clock is TIME rounded down, PEXPIRE's its own).
        before = await redis_ms(direct)
        ttl = await direct.pttl(k.lease("a1"))
        after = await redis_ms(direct)
        assert before + ttl - 2 <= score <= after + ttl + 2, (score, before, after, ttl)
        assert ttl > 50_000
        await assert_consistent(direct, "fextend", held=[renewed])


# -- the reaper --------------------------------------------------------------------------------

async def test_reap_resent_puts_the_job_back_in_waiting_once_with_its_old_rank(
        direct: aioredis.Redis, redis_server: RedisServer):
    before: dict[str, list[str]] = {}

    async def setup(q: Queue) -> None:
        await enqueue_keyed(q, {"a1": "a", "a2": "a"})
        before[q.name] = entries_of(await waiting_of(direct, q.name), "a1")
        lease = await q.claim()
        assert lease is not None and lease.job_id == "a1"
        await direct.delete(q.keys.lease("a1"))  # the lease expired

    async def act(q: Queue, _: None) -> int:
        return await Reaper(q).sweep()

    async with twin(direct, redis_server, "freap", sha(scripts.REAP), setup, act,
                    **FIFO_LIMITED) as (once, lost):
        assert lost.result == once.result == 1
        mine = entries_of(await waiting_of(direct, "freap"), "a1")
        assert mine == before["freap"], "not back once at its old place"
        k = QueueKeys("freap")
        assert await direct.zcard(k.holds) == 0 and await direct.zcard(k.held) == 0
        assert await direct.llen(k.events) == 1
        state = await assert_consistent(direct, "freap", attempts={"a1": 1})
        assert state.field("a1", "expiries") == "1"
        nxt = await lost.q.claim()
        assert nxt is not None and nxt.job_id == "a1" and nxt.attempt == 2


async def _past_deadline(direct: aioredis.Redis, q: Queue, job_id: str) -> None:
    async def due() -> bool:
        at = await direct.zscore(q.keys.deadlines, job_id)
        return at is not None and await redis_ms(direct) >= at

    await wait_for(due)


async def test_expire_resent_counts_the_expired_job_once_and_it_is_dead_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        await enqueue_keyed(q, {"e1": "a"}, expires_in=0.05)
        await enqueue_keyed(q, {"n1": "a"})
        await _past_deadline(direct, q, "e1")

    async def act(q: Queue, _: None) -> int:
        return (await Reaper(q).sweep_report()).expired

    async with twin(direct, redis_server, "fexpire", sha(scripts.EXPIRE), setup, act,
                    ordering="fifo") as (once, lost):
        assert lost.result == once.result == 1
        k = QueueKeys("fexpire")
        assert await direct.hget(k.meta, "expired") == b"1"
        assert await direct.zcard(k.deadlines) == 0
        assert entries_of(await waiting_of(direct, "fexpire"), "e1") == []
        state = await assert_consistent(direct, "fexpire")
        assert state.where("e1") == ["dead"]
        assert state.field("e1", "dead_reason") == "expired before start"
        assert (await lost.q.stats()).expired == 1


async def test_promote_resent_indexes_the_due_job_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        await enqueue_keyed(q, {"d1": "a"}, delay=0.05)

        async def due() -> bool:
            at = await direct.zscore(q.keys.delayed, "d1")
            return at is not None and await redis_ms(direct) >= at

        await wait_for(due)

    async def act(q: Queue, _: None) -> int:
        return (await Reaper(q).sweep_report()).promoted

    async with twin(direct, redis_server, "fpromote", sha(scripts.PROMOTE), setup,
                    act, ordering="fifo") as (once, lost):
        assert lost.result == once.result == 1
        assert len(entries_of(await waiting_of(direct, "fpromote"), "d1")) == 1
        assert await direct.hget(QueueKeys("fpromote").meta, "seq") == b"64"  # one block
        state = await assert_consistent(direct, "fpromote")
        assert state.where("d1") == ["todos"]


# -- stored controls, pause, resume ------------------------------------------------------------

async def test_prepare_storing_named_controls_resent_stores_them_as_one_call(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        return None

    async def act(q: Queue, _: None) -> None:
        await q.prepare()

    async with twin(direct, redis_server, "fprep", sha(scripts.CONFIGURE), setup, act,
                    **FIFO_LIMITED) as (once, lost):
        assert lost.q.controls == once.q.controls
        assert await direct.hgetall(QueueKeys("fprep").settings) == {
            b"ordering": b"fifo", b"max_in_flight": b"3", b"key_concurrency": b"1",
            b"rate": b"10:1000:5", b"key_rate": b"20:1000:5"}
        other = Queue(direct, "fprep", **FIFO_LIMITED)
        await other.prepare()  # agrees: no SettingsConflict
        assert other.controls == lost.q.controls


async def test_configure_resent_stores_the_settings_as_one_call(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        await q.prepare()
        await enqueue_keyed(q, {"a1": "a"})  # a queue with jobs: the ordering stays

    async def act(q: Queue, _: None) -> Any:
        return await q.configure(max_in_flight=5, key_concurrency=None,
                                 rate_limit=Rate(4, per=2.0))

    async with twin(direct, redis_server, "fconf", sha(scripts.CONFIGURE), setup, act,
                    **FIFO_LIMITED) as (once, lost):
        assert lost.result == once.result
        assert await direct.hgetall(QueueKeys("fconf").settings) == {
            b"ordering": b"fifo", b"max_in_flight": b"5", b"rate": b"4:2000:2",
            b"key_rate": b"20:1000:5"}
        reader = Queue(direct, "fconf")
        await reader.prepare()
        assert reader.controls == lost.result


async def test_pause_resent_leaves_the_queue_paused(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        await q.prepare()  # its HSETNX must not be the command that loses its reply
        await enqueue_keyed(q, {"a1": "a"})

    async def act(q: Queue, _: None) -> None:
        await q.pause()

    async with twin(direct, redis_server, "fpause", b"HSET", setup, act,
                    ordering="fifo") as (_, lost):
        assert await lost.q.is_paused()
        assert await lost.q.claim() is None and lost.q.held_back == "paused"
        await assert_consistent(direct, "fpause")


async def test_resume_resent_leaves_the_queue_resumed_with_at_most_64_wake_tokens(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        await q.prepare()
        await q.pause()
        await enqueue_keyed(q, {"a1": "a"})

    async def act(q: Queue, _: None) -> None:
        await q.resume()

    async with twin(direct, redis_server, "fresume", b"EXEC", setup, act,
                    ordering="fifo") as (_, lost):
        assert not await lost.q.is_paused()
        assert 0 < await direct.llen(QueueKeys("fresume").wake) <= 64
        lease = await lost.q.claim()
        assert lease is not None and lease.job_id == "a1"
        await assert_consistent(direct, "fresume", held=[lease])



async def test_fifo_claim_that_expired_a_job_resent_counts_the_expiry_once(
        direct: aioredis.Redis, redis_server: RedisServer):
    """The claim finds e1 past its start deadline (dead, counted) and leases n1."""
    async def setup(q: Queue) -> None:
        await enqueue_keyed(q, {"e1": "a"}, expires_in=0.05)
        await enqueue_keyed(q, {"n1": "a"})
        await _past_deadline(direct, q, "e1")

    async def act(q: Queue, _: None) -> list[Lease]:
        return await q.claim_many(2)

    async with twin(direct, redis_server, "fclexp", sha(scripts.CLAIM), setup, act,
                    ordering="fifo") as (once, lost):
        assert [lease.job_id for lease in lost.result] == ["n1"]
        assert [lease.job_id for lease in once.result] == ["n1"]
        k = QueueKeys("fclexp")
        assert await direct.hget(k.meta, "expired") == b"1"
        assert await direct.zcard(k.deadlines) == 0
        state = await assert_consistent(direct, "fclexp", held=lost.result)
        assert state.where("e1") == ["dead"]


async def test_claim_resent_leaves_held_back_as_one_claim_does(
        direct: aioredis.Redis, redis_server: RedisServer):
    async def setup(q: Queue) -> None:
        await enqueue_keyed(q, {"a1": "a"})
        await q.pause()
        assert await q.claim() is None and q.held_back == "paused"
        await q.resume()

    async def act(q: Queue, _: None) -> list[Lease]:
        return await q.claim_many(1)

    async with twin(direct, redis_server, "fheld", sha(scripts.CLAIM), setup, act,
                    ordering="fifo") as (once, lost):
        assert [lease.job_id for lease in lost.result] == ["a1"]
        assert once.q.held_back == ""
        assert lost.q.held_back == once.q.held_back, "stale: the claim took what it asked for"
