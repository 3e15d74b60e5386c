"""A hypothesis state machine drives the queue and checks it against a model of the protocol.

Rules: enqueue, claim, a claim whose reply is lost (its leases held by nobody until the
next claim recovers them), ack / fail / release / extend with any lease ever issued (stale
ones included, and retries of calls that already committed, even after the job was claimed
and settled again), expire a live lease (what the server does when time runs out), sweep,
and a schedule's tick (fired on a fresh or a stale reading of its state, sent twice, with
overlap allowed or skipped). After every step: each id is in exactly the set the model
says, a lease key exists exactly for the ids the model says are held, with the holder's
token, and attempts are counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import fakeredis
import hypothesis.strategies as st
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from redis.asyncio.cluster import RedisCluster

from leaseq import Every, Lease, LeaseLost, Queue, Reaper
from leaseq.protocol import scheduling
from leaseq.testing import RedisServer
from leaseq.testing._cluster import RedisClusterServers

T = TypeVar("T")
MAX_ATTEMPTS = 3


@dataclass
class JobModel:
    state: str = "todo"
    attempts: int = 0
    holder: str | None = None  # token of the live lease, if any
    lease_live: bool = False
    failures: int = 0
    expiries: int = 0
    acked_by: str | None = None  # token of the ack that made it done
    # (token, mode, outcome) of the last settlements (fail, release), newest first: a
    # retried call finds its own among them (settle.lua keeps 8).
    settles: list[tuple[str, str, str]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


class ProtocolMachine(RuleBasedStateMachine):
    """Subclassed below with a concrete ``make_client``."""

    def make_client(self) -> aioredis.Redis:  # pragma: no cover - overridden
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = self.make_client()
        self.run(self.client.flushall())
        self.q = Queue(self.client, "model", max_attempts=MAX_ATTEMPTS, lease_timeout=60.0)
        self.reaper = Reaper(self.q, batch=3)
        self.jobs: dict[str, JobModel] = {}
        self.leases: list[Lease] = []
        # Claims whose reply was lost, oldest first: the job ids their leases went to.
        self.lost_claims: list[list[Lease]] = []
        # The schedule's last decided tick and last enqueued job, as tick.lua keeps them.
        self.last_tick: int | None = None
        self.last_job: str | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()

    # -- rules -----------------------------------------------------------------------

    @rule(n=st.integers(1, 4))
    def enqueue(self, n: int) -> None:
        for job_id in self.run(self.q.enqueue_many("t", list(range(n)))):
            self.jobs[job_id] = JobModel()

    @rule(job=st.integers(0, 50))
    def enqueue_known_id_is_a_no_op(self, job: int) -> None:
        if not self.jobs:
            return
        job_id = sorted(self.jobs)[job % len(self.jobs)]
        assert self.run(self.q.enqueue("t", "again", job_id=job_id)) == job_id

    @rule(n=st.integers(1, 4))
    def claim(self, n: int) -> None:
        self._claim(n)

    def _claim(self, n: int) -> list[Lease]:
        """claim_many(n) against the model; returns the freshly claimed leases."""
        # Leases of lost claims that are still held come back first (claim.lua's record).
        recovered = [lease for lost in self.lost_claims for lease in lost if self._owned(lease)]
        self.lost_claims = []
        todo = [j for j, m in self.jobs.items() if m.state == "todo"]
        leases = self.run(self.q.claim_many(n))
        back = min(n, len(recovered))
        for lease in recovered[back:]:  # beyond n: released
            m = self.jobs[lease.job_id]
            m.state, m.attempts = "todo", m.attempts - 1
            m.settles.insert(0, (lease.token, "release", "todo"))
            self._drop_lease(m)
        assert [lease.token for lease in leases[:back]] == [r.token for r in recovered[:back]]
        assert len(leases) == back + min(n - back, len(todo))
        for lease in leases[:back]:
            assert lease.attempt == self.jobs[lease.job_id].attempts
            self.leases.append(lease)
        for lease in leases[back:]:
            self._claimed(lease)
        return leases[back:]

    @rule(n=st.integers(1, 3))
    def claim_whose_reply_is_lost(self, n: int) -> None:
        """The server ran the claim; the caller never saw the fresh leases (the call
        raised). The queue remembers the call's nonce, the tokens' random part."""
        leases = self._claim(n)
        for lease in leases:
            self.leases.remove(lease)  # nobody holds these lease objects
        if leases:
            self.q._lost_claims.append(leases[0].token.split("-", 1)[1])
            self.lost_claims.append(leases)

    def _claimed(self, lease: Lease) -> None:
        m = self.jobs[lease.job_id]
        assert m.state == "todo"
        m.state, m.holder, m.lease_live = "in_progress", lease.token, True
        m.attempts += 1
        assert lease.attempt == m.attempts
        assert lease.token not in m.tokens
        m.tokens.append(lease.token)
        self.leases.append(lease)

    def _owned(self, lease: Lease) -> bool:
        m = self.jobs[lease.job_id]
        return m.lease_live and m.holder == lease.token

    def _drop_lease(self, m: JobModel) -> None:
        m.holder, m.lease_live = None, False

    @precondition(lambda self: self.leases)
    @rule(i=st.integers(0, 10_000))
    def ack(self, i: int) -> None:
        lease = self.leases[i % len(self.leases)]
        m = self.jobs[lease.job_id]
        if self._owned(lease):
            self.run(self.q.ack(lease, result=lease.token))
            m.state = "done"
            m.acked_by = lease.token
            self._drop_lease(m)
        elif m.acked_by == lease.token:
            self.run(self.q.ack(lease, result=lease.token))  # idempotent retry
        else:
            with pytest.raises(LeaseLost):
                self.run(self.q.ack(lease, result="stale"))

    def _settle(self, i: int, mode: str) -> None:
        lease = self.leases[i % len(self.leases)]
        m = self.jobs[lease.job_id]
        call = {"fail": lambda: self.q.fail(lease, "boom"),
                "release": lambda: self.q.release(lease)}[mode]
        if self._owned(lease):
            outcome = self.run(call())
            if mode == "release":
                m.attempts -= 1
                expected = "todo"
            else:
                m.failures += 1
                expected = "dead" if m.attempts >= MAX_ATTEMPTS else "todo"
                assert outcome == expected
            m.state = expected
            m.settles.insert(0, (lease.token, mode, expected))
            self._drop_lease(m)
        elif first := [o for t, md, o in m.settles[:8] if (t, md) == (lease.token, mode)]:
            again = self.run(call())
            if mode == "fail":
                assert again == first[0]
        else:
            with pytest.raises(LeaseLost):
                self.run(call())

    @precondition(lambda self: self.leases)
    @rule(i=st.integers(0, 10_000))
    def fail(self, i: int) -> None:
        self._settle(i, "fail")

    @precondition(lambda self: self.leases)
    @rule(i=st.integers(0, 10_000))
    def release(self, i: int) -> None:
        self._settle(i, "release")

    @precondition(lambda self: self.leases)
    @rule(i=st.integers(0, 10_000))
    def extend(self, i: int) -> None:
        lease = self.leases[i % len(self.leases)]
        if self._owned(lease):
            renewed = self.run(self.q.extend(lease))
            assert renewed.token == lease.token
        else:
            with pytest.raises(LeaseLost):
                self.run(self.q.extend(lease))

    @rule(i=st.integers(0, 10_000))
    def expire(self, i: int) -> None:
        live = sorted(j for j, m in self.jobs.items() if m.lease_live)
        if not live:
            return
        job_id = live[i % len(live)]
        # Deleting the key is exactly what the server does when the expiry passes.
        self.run(self.client.delete(self.q.keys.lease(job_id)))
        self.jobs[job_id].lease_live = False

    @rule()
    def sweep(self) -> None:
        expected = 0
        for m in self.jobs.values():
            if m.state == "in_progress" and not m.lease_live:
                m.expiries += 1
                m.state = "dead" if m.attempts >= MAX_ATTEMPTS else "todo"
                m.holder = None
                expected += 1
        assert self.run(self.reaper.sweep()) == expected

    @rule(step=st.integers(0, 3), stale=st.booleans(), skip=st.booleans())
    def tick(self, step: int, stale: bool, skip: bool) -> None:
        schedule = Every(1, "t", name="sched", overlap="skip" if skip else "allow")
        last = self.last_tick
        expected = last if not stale else (7 if last is None else last - 1000)
        tick = (last or 0) + step * 1000
        mode = "baseline" if last is None else "run"
        job_id = schedule.job_id(tick)
        if expected != last or (last is not None and tick <= last):
            predicted = "raced"
        elif mode == "baseline":
            predicted = "baseline"
        elif skip and self.last_job is not None and \
                self.jobs[self.last_job].state in ("todo", "in_progress"):
            predicted = "overlap"
        elif job_id in self.jobs:
            predicted = "known"
        else:
            predicted = "enqueued"
        call = scheduling.fire(self.q, schedule, expected, mode, tick)
        assert self.run(call) == predicted
        if predicted != "raced":
            self.last_tick = tick
        if predicted == "enqueued":
            self.jobs[job_id] = JobModel()
            self.last_job = job_id
        # The same call again (a re-send after a lost reply): decided already.
        assert self.run(scheduling.fire(self.q, schedule, expected, mode, tick)) == "raced"

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def every_id_is_where_the_model_says(self) -> None:
        k = self.q.keys

        async def read() -> tuple[dict[str, set[str]], dict[str, Any]]:
            places = {}
            for label, key in (("todo", k.todos), ("in_progress", k.in_progress),
                               ("done", k.done), ("dead", k.dead)):
                places[label] = {m.decode() for m in await self.client.smembers(key)}
            leases = {}
            async for key in self.client.scan_iter(match=k.prefix + "lease:*"):
                leases[key.decode()[len(k.prefix + "lease:"):]] = await self.client.get(key)
            return places, leases

        places, leases = self.run(read())
        for job_id, m in self.jobs.items():
            holders = [label for label, members in places.items() if job_id in members]
            assert holders == [m.state], (job_id, holders, m)
        assert set().union(*places.values()) == set(self.jobs)
        held = {j: m.holder for j, m in self.jobs.items() if m.lease_live}
        assert {j: v.decode() for j, v in leases.items()} == held

    @invariant()
    def attempts_and_counters_match(self) -> None:
        for job_id in list(self.jobs)[:8]:
            info = self.run(self.q.job(job_id))
            m = self.jobs[job_id]
            assert info is not None
            assert (info.attempts, info.failures, info.lease_expiries) == (
                m.attempts, m.failures, m.expiries), (job_id, m)


class FakeRedisMachine(ProtocolMachine):
    def make_client(self) -> aioredis.Redis:
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)))


TestProtocolOnFakeRedis = FakeRedisMachine.TestCase
def _runs(examples: int, steps: int) -> settings:
    """How much hypothesis explores on one lane (a real server is slower per step)."""
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


TestProtocolOnFakeRedis.settings = _runs(60, 40)


@pytest.fixture
def _real_server_url(redis_server: RedisServer) -> Any:
    RealRedisMachine.url = redis_server.url
    return redis_server.url


class RealRedisMachine(ProtocolMachine):
    url = ""

    def make_client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.url)


@pytest.mark.real_redis
@pytest.mark.usefixtures("_real_server_url")
class TestProtocolOnRealRedis(RealRedisMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = _runs(40, 40)


@pytest.fixture
def _cluster_url(redis_cluster: RedisClusterServers) -> Any:
    ClusterMachine.url = redis_cluster.url
    return redis_cluster.url


class ClusterMachine(ProtocolMachine):
    """On a cluster, claims and trims name their keys (see ``docs/protocol.md``): a second
    way to claim, checked against the same model."""

    url = ""

    def make_client(self) -> aioredis.Redis:
        return RedisCluster.from_url(self.url)  # type: ignore[return-value]


@pytest.mark.real_redis
@pytest.mark.usefixtures("_cluster_url")
class TestProtocolOnCluster(ClusterMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = _runs(30, 30)
