"""Hypothesis state machines drive a queue and check it against a model of the protocol.

``ProtocolMachine`` (a set queue, no controls). Rules: enqueue, claim, a claim whose reply
is lost (its leases held by nobody until the next claim recovers them), ack / fail /
release / extend with any lease ever issued (stale ones included, and retries of calls
that already committed, even after the job was claimed and settled again), acks of up to
three such leases in one transaction (off a cluster, with another queue's job in it, as a
worker serving several queues of one client sends them), the claim written together
with another queue's (as a worker's claims under ``Weighted`` are), expire a live
lease (what the server does when time runs out), sweep, a schedule's tick (fired on a
fresh or a stale reading of its state, sent twice, with overlap allowed or skipped), and
pause / resume, and enqueue ``after=`` up to three known jobs (either policy). The model
releases a blocked job when its last dependency is done, and sends one whose dependency
ended dead or cancelled to todo marked to end dead (policy "dead"); a claim that picks
such a job, or the sweep's deadline pass, ends it dead with a reason naming the
dependency, and its own dependents follow. After every step: each id is in exactly the
set the model says, a lease key exists exactly for the ids the model says are held,
with the holder's token, and attempts are counted.

``ControlledMachine`` (a fifo queue with ``key_concurrency`` and ``max_in_flight``; see
``docs/scheduling.md``). Rules: enqueue with a fair key and a priority (with or without a
start deadline to come), enqueue a job whose deadline has passed, claim, the same lease
rules (a live lease every other draw), a lease that runs out, sweep, pause / resume. The
model keeps what the claim decides by: each key's line (priority, then rank), the
round-robin's turns, the parked keys and the holds; it predicts the exact ids of every
claim, in the order claimed (on a cluster, round by round of named candidates), and
why a claim came back short. After every step, besides the checks above: no key holds
more than its concurrency in slots or live leases, the queue no more than
``max_in_flight``, ``stats()`` agrees with the model (paused, holding, expired, keys,
waiting on limits), and each job expired before its start is dead with that reason.

There is no clock: ``expire`` deletes a lease key (what the server does at expiry). The
slot that lease holds is scored by the lease's deadline, 60 s away, so it stays held until
the reaper's ``sweep`` requeues the job (as it would for a claimer that died a moment ago).
``lapse`` is the one rule that waits (5 ms): it renews a lease for 1 ms, so both the lease
and its slot's deadline pass, as for a claimer that died a lease ago.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import fakeredis
import hypothesis.strategies as st
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from redis.asyncio.cluster import RedisCluster

from leaseq import Every, InvalidInput, Lease, LeaseLost, Queue, Reaper
from leaseq.protocol import scheduling
from leaseq.protocol.claiming import claim_together
from leaseq.protocol.settling import ack_together
from leaseq.testing import RedisServer
from leaseq.testing._cluster import RedisClusterServers

T = TypeVar("T")
MAX_ATTEMPTS = 3
# The controlled queue's limits, and what its jobs are enqueued with.
KEY_CONCURRENCY = 2
MAX_IN_FLIGHT = 5
FAIR_KEYS = ("a", "b", None)  # None: no key, the shared key ""
PRIORITIES = (-1, 0, 5)
# A parked key's score while only a freed slot can unpark it (lua/_ctl.lua's INF).
UNTIL_FREED = 10**15
# Rounds of named candidates a cluster claim tries (claiming._CLUSTER_CLAIM_ROUNDS).
CLUSTER_CLAIM_ROUNDS = 3
SEP = "\x1f"


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
    # Fifo queues: the job's fair key and priority, its place in the key's line (lower
    # first; None until it first waits) and whether its start deadline has passed.
    key: str = ""
    priority: int = 0
    rank: int | None = None
    expired: bool = False
    # Its lease holds a concurrency slot (a member of ``holds``), and that hold's score
    # (the lease's deadline) has passed.
    held: bool = False
    hold_passed: bool = False
    # The token of the lease a cancel is bound to (Queue.cancel of a running job).
    cancel_token: str | None = None
    # Dependencies (enqueue after=): the ids not ended yet, the policy, and the ids that
    # failed it (dead or cancelled) while it was blocked with policy "dead": it then
    # waits in todo to be ended dead by a claim or the sweep.
    left: set[str] = field(default_factory=set)
    policy: str = "dead"
    doomed_by: set[str] = field(default_factory=set)

    def cancel_pending(self, token: str | None) -> bool:
        return token is not None and self.cancel_token == token


class LeaseMachine(RuleBasedStateMachine):
    """What both machines share: the harness, the rules that settle or renew a lease, and
    the invariants on where each id is. Subclassed with a queue (``make_queue``) and a
    lane (``make_client``)."""

    # On a cluster a claim names its candidates (claim.lua), which the controlled model
    # follows; set by the cluster lane.
    names_candidates = False

    def make_client(self) -> aioredis.Redis:  # pragma: no cover - overridden
        raise NotImplementedError

    def make_queue(self) -> Queue:  # pragma: no cover - overridden
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = self.make_client()
        self.run(self.client.flushall())
        self.q = self.make_queue()
        self.reaper = Reaper(self.q, batch=3)
        self.jobs: dict[str, JobModel] = {}
        self.leases: list[Lease] = []
        self.paused = False
        self._window = 0
        self.seen_expired: set[str] = set()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()

    # -- hooks: what a lease's end means beyond its job (the controlled queue's slots) ---

    def _ended(self, m: JobModel) -> None:
        """The job's lease ended (acked, settled, reaped): its slot, if any, is free."""

    def _waits(self, job_id: str, keep: bool) -> None:
        """The job went back to todo; ``keep``: at its old place (a release, a reap)."""

    def _left_todo(self, job_id: str) -> None:
        """The job left todo other than by a claim (a cancel)."""

    def _resolve_dependents(self) -> None:
        """What the step that ended a job did for the jobs enqueued after it (in that
        same step, on the server): run before the checks of each step."""
        changed = True
        while changed:
            changed = False
            for m in self.jobs.values():
                if m.state != "blocked":
                    continue
                for dep in sorted(m.left):
                    state = self.jobs[dep].state
                    if state == "done" or (state in ("dead", "cancelled")
                                           and m.policy == "always"):
                        m.left.discard(dep)
                    elif state in ("dead", "cancelled"):
                        m.doomed_by.add(dep)
                if m.doomed_by or not m.left:
                    m.state, changed = "todo", True

    # -- rules -------------------------------------------------------------------------

    def _choose(self, i: int) -> Lease:
        """A lease ever issued, live or stale."""
        return self.leases[i % len(self.leases)]

    def _owned(self, lease: Lease) -> bool:
        m = self.jobs[lease.job_id]
        return m.lease_live and m.holder == lease.token

    def _drop_lease(self, m: JobModel) -> None:
        m.holder, m.lease_live = None, False

    @precondition(lambda self: self.leases)
    @rule(i=st.integers(0, 10_000))
    def ack(self, i: int) -> None:
        lease = self._choose(i)
        m = self.jobs[lease.job_id]
        if self._owned(lease) and m.cancel_pending(lease.token):
            # The cancel marked the lease: the holder's ack no longer matches.
            with pytest.raises(LeaseLost):
                self.run(self.q.ack(lease, result=lease.token))
        elif self._owned(lease):
            self.run(self.q.ack(lease, result=lease.token))
            m.state = "done"
            m.acked_by = lease.token
            self._drop_lease(m)
            self._ended(m)
        elif m.acked_by == lease.token:
            self.run(self.q.ack(lease, result=lease.token))  # idempotent retry
        else:
            with pytest.raises(LeaseLost):
                self.run(self.q.ack(lease, result="stale"))

    @precondition(lambda self: self.leases)
    @rule(picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=3))
    def ack_batch(self, picks: list[int]) -> None:
        """Several leases (live, stale, or acked already) acked in one transaction, as a
        worker's ack batcher sends them; off a cluster, together with a job of another
        queue of the same client (a worker serving several queues)."""
        leases = list({lease.token: lease for lease in map(self._choose, picks)}.values())
        parts: list[tuple[Queue, list[tuple[Lease, Any]]]] = [
            (self.q, [(lease, lease.token) for lease in leases])]
        side = Queue(self.client, "model_side")
        if self.names_candidates:
            with pytest.raises(InvalidInput, match="cluster"):
                self.run(ack_together([*parts, (side, [])]))
        else:
            self.run(side.enqueue("t", None))
            other = self.run(side.claim())
            assert other is not None
            parts.append((side, [(other, "side")]))
        expected = []
        for lease in leases:
            m = self.jobs[lease.job_id]
            if self._owned(lease) and not m.cancel_pending(lease.token):
                m.state, m.acked_by = "done", lease.token
                self._drop_lease(m)
                self._ended(m)
                expected.append(True)
            else:
                # A cancel marked the lease, or it is stale: lost, unless this very lease
                # acked the job before (a retry).
                expected.append(m.acked_by == lease.token)
        replies = self.run(ack_together(parts))
        assert replies[0] == expected, (leases, replies)
        if len(parts) > 1:
            assert replies[1] == [True]
            info = self.run(side.job(parts[1][1][0][0].job_id))
            assert info is not None and (info.state, info.result) == ("done", "side")

    def _settle(self, i: int, mode: str) -> None:
        lease = self._choose(i)
        m = self.jobs[lease.job_id]
        call = {"fail": lambda: self.q.fail(lease, "boom"),
                "release": lambda: self.q.release(lease)}[mode]
        if self._owned(lease) and m.cancel_pending(lease.token):
            # Whatever the holder settles, the job ends cancelled.
            outcome = self.run(call())
            assert outcome == ("cancelled" if mode == "fail" else None)
            m.state = "cancelled"
            m.settles.insert(0, (lease.token, mode, "cancelled"))
            self._drop_lease(m)
            self._ended(m)
        elif self._owned(lease):
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
            self._ended(m)
            if expected == "todo":
                self._waits(lease.job_id, keep=mode == "release")
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
        lease = self._choose(i)
        if self._owned(lease):
            renewed = self.run(self.q.extend(lease))
            assert renewed.token == lease.token
            assert renewed.cancel_pending == self.jobs[lease.job_id].cancel_pending(
                lease.token)
        else:
            with pytest.raises(LeaseLost):
                self.run(self.q.extend(lease))

    @rule(i=st.integers(0, 10_000))
    def expire(self, i: int) -> None:
        # In enqueue order, not by id: ids are random, and hypothesis replays a run by
        # its choices, which must pick the same lease again.
        live = [j for j, m in self.jobs.items() if m.lease_live]
        if not live:
            return
        job_id = live[i % len(live)]
        # Deleting the key is exactly what the server does when the expiry passes.
        self.run(self.client.delete(self.q.keys.lease(job_id)))
        self.jobs[job_id].lease_live = False

    @rule(i=st.integers(0, 10_000))
    def cancel(self, i: int) -> None:
        """Cancel any known job: a waiting one at once; a running one through its lease
        (bound to the live lease, or to the last claim's when it expired unreaped)."""
        if not self.jobs:
            return
        ids = list(self.jobs)
        job_id = ids[i % len(ids)]
        m = self.jobs[job_id]
        outcome = self.run(self.q.cancel(job_id, reason="model"))
        if m.state in ("todo", "blocked"):
            assert outcome == "cancelled"
            was_todo = m.state == "todo"
            m.state = "cancelled"
            if was_todo:
                self._left_todo(job_id)
        elif m.state == "in_progress":
            assert outcome == "delivered"
            m.cancel_token = m.holder if m.lease_live else m.tokens[-1]
        else:
            assert outcome == "finished", (outcome, m)

    @rule(pause=st.integers(0, 2))
    def pause_or_resume(self, pause: int) -> None:
        """Resume a paused queue; pause a running one a third of the time (so claims
        mostly find it running)."""
        if self.paused:
            self.run(self.q.resume())
        elif pause == 0:
            self.run(self.q.pause())
        else:
            return
        self.paused = not self.paused
        assert self.run(self.q.is_paused()) == self.paused

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def every_id_is_where_the_model_says(self) -> None:
        k = self.q.keys

        async def read() -> tuple[dict[str, set[str]], dict[str, Any]]:
            labels = ("todo", "in_progress", "done", "dead", "delayed", "cancelled",
                      "blocked")
            async with self.client.pipeline(transaction=False) as pipe:
                for key in (k.todos, k.in_progress, k.done, k.dead):
                    pipe.smembers(key)
                pipe.zrange(k.delayed, 0, -1)
                pipe.smembers(k.cancelled)
                pipe.smembers(k.blocked)
                replies = await pipe.execute()
            places = {label: {m.decode() for m in members}
                      for label, members in zip(labels, replies, strict=True)}
            found = [key async for key in self.client.scan_iter(
                match=k.prefix + "lease:*", count=1000)]
            async with self.client.pipeline(transaction=False) as pipe:
                for key in found:
                    pipe.get(key)
                tokens = await pipe.execute() if found else []
            skip = len(k.prefix + "lease:")
            return places, {key.decode()[skip:]: t for key, t in zip(found, tokens, strict=True)}

        self._resolve_dependents()
        places, leases = self.run(read())
        for job_id, m in self.jobs.items():
            holders = [label for label, members in places.items() if job_id in members]
            assert holders == [m.state], (job_id, holders, m)
        assert set().union(*places.values()) == set(self.jobs)
        # A lease with a cancel bound to it holds '<token>!' (cancel.lua).
        held = {j: m.holder + ("!" if m.cancel_pending(m.holder) else "")
                for j, m in self.jobs.items() if m.lease_live and m.holder}
        assert {j: v.decode() for j, v in leases.items()} == held

    @invariant()
    def attempts_and_counters_match(self) -> None:
        """Read through ``Queue.jobs``: a window of 4 jobs that moves on each step, and
        every job that ended dead expired before its start (checked once: dead is final
        here)."""
        ids = list(self.jobs)
        start = self._window = (self._window + 4) % max(len(ids), 1)
        window = (ids + ids)[start:start + min(4, len(ids))]
        dead_expired = [j for j in ids if j not in self.seen_expired
                        and self.jobs[j].expired and self.jobs[j].state == "dead"]
        infos = self.run(self.q.jobs(window + dead_expired))
        for job_id, info in zip(window + dead_expired, infos, strict=True):
            m = self.jobs[job_id]
            assert info is not None
            assert (info.attempts, info.failures, info.lease_expiries) == (
                m.attempts, m.failures, m.expiries), (job_id, m)
            assert (info.key or "", info.priority) == (m.key, m.priority), (job_id, m)
        for job_id, info in zip(dead_expired, infos[len(window):], strict=True):
            assert info is not None
            assert (info.state, info.dead_reason, info.attempts) == (
                "dead", "expired before start", 0), info
            self.seen_expired.add(job_id)


class ProtocolMachine(LeaseMachine):
    """The default queue (set ordering, no limits). Subclassed below with a lane."""

    def make_queue(self) -> Queue:
        return Queue(self.client, "model", max_attempts=MAX_ATTEMPTS, lease_timeout=60.0)

    def __init__(self) -> None:
        super().__init__()
        # Claims whose reply was lost, oldest first: the job ids their leases went to.
        self.lost_claims: list[list[Lease]] = []
        # The schedule's last decided tick and last enqueued job, as tick.lua keeps them.
        self.last_tick: int | None = None
        self.last_job: str | None = None

    @rule(n=st.integers(1, 4))
    def enqueue(self, n: int) -> None:
        for job_id in self.run(self.q.enqueue_many("t", list(range(n)))):
            self.jobs[job_id] = JobModel()

    @rule(picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
          always=st.booleans(), n=st.integers(1, 2))
    def enqueue_after(self, picks: list[int], always: bool, n: int) -> None:
        """Enqueue jobs after up to three known jobs, in any state."""
        if not self.jobs:
            return
        ids = list(self.jobs)
        deps = list(dict.fromkeys(ids[i % len(ids)] for i in picks))
        policy = "always" if always else "dead"
        states = {d: self.jobs[d].state for d in deps}
        failed = [d for d, s in states.items() if s in ("dead", "cancelled")]
        pending = {d for d, s in states.items() if s not in ("done", "dead", "cancelled")}
        created = self.run(self.q.enqueue_many("t", list(range(n)), after=deps,
                                               after_policy=policy))
        for job_id in created:
            if failed and policy == "dead":
                m = JobModel(state="dead")
            else:
                m = JobModel(state="blocked" if pending else "todo", left=set(pending),
                             policy=policy)
            self.jobs[job_id] = m
        infos = self.run(self.q.jobs(created))
        for info, job_id in zip(infos, created, strict=True):
            m = self.jobs[job_id]
            assert info is not None and info.after == tuple(deps), info
            assert info.state == m.state, (info, m)
            assert info.waiting_for == (len(pending) if m.state == "blocked" else 0), info
            if m.state == "dead":
                assert info.dead_reason in {
                    f"dependency {d} ended {states[d]}" for d in failed}, info

    def _learn_doomed_ends(self, before: set[str]) -> None:
        """After a claim or sweep: which of the doomed jobs (todo, to end dead) it
        ended, with the reason naming a failed dependency; ``before`` (doomed when the
        call began) must all have ended."""
        while True:
            doomed = [j for j, m in self.jobs.items() if m.state == "todo" and m.doomed_by]
            if not doomed:
                return
            infos = self.run(self.q.jobs(doomed))
            ended = [(j, i) for j, i in zip(doomed, infos, strict=True)
                     if i is not None and i.state == "dead"]
            for job_id, info in ended:
                m = self.jobs[job_id]
                assert info.dead_reason in {
                    f"dependency {d} ended {self.jobs[d].state}" for d in m.doomed_by}, info
                m.state = "dead"
            assert before.isdisjoint(j for j in doomed if self.jobs[j].state == "todo")
            if not ended:
                return
            self._resolve_dependents()

    @rule(job=st.integers(0, 50))
    def enqueue_known_id_is_a_no_op(self, job: int) -> None:
        if not self.jobs:
            return
        job_id = sorted(self.jobs)[job % len(self.jobs)]
        assert self.run(self.q.enqueue("t", "again", job_id=job_id)) == job_id

    @rule(n=st.integers(1, 4))
    def claim(self, n: int) -> None:
        self._claim(n)

    @precondition(lambda self: not self.lost_claims)
    @rule(n=st.integers(1, 4))
    def claim_with_another_queue(self, n: int) -> None:
        """The same claim written together with another queue's (``claim_together``, a
        worker's claim under ``Weighted`` over several queues of one client); refused on
        a cluster."""
        side = Queue(self.client, "model_side")
        if self.names_candidates:
            with pytest.raises(InvalidInput, match="one pooled client"):
                self.run(claim_together([(self.q, n, None), (side, 1, None)]))
            return
        self.run(side.enqueue("t", None))
        got: list[Any] = []

        async def together() -> list[Lease]:
            mine, theirs = await claim_together([(self.q, n, None), (side, 1, None)])
            assert not isinstance(mine, Exception) and not isinstance(theirs, Exception)
            got.extend(theirs)
            return mine

        self._claim(n, together)
        assert len(got) == 1 and got[0].queue == "model_side"
        self.run(side.ack(got[0]))

    def _claim(self, n: int,
               call: Callable[[], Coroutine[Any, Any, list[Lease]]] | None = None,
               ) -> list[Lease]:
        """claim_many(n) (or ``call()``, a claim of n written otherwise) against the
        model; returns the freshly claimed leases."""
        # Leases of lost claims that are still held come back first (claim.lua's record),
        # paused or not: they were claimed before.
        recovered = [lease for lost in self.lost_claims for lease in lost if self._owned(lease)]
        self.lost_claims = []
        todo = [j for j, m in self.jobs.items() if m.state == "todo"]
        doomed = {j for j in todo if self.jobs[j].doomed_by}
        leases = self.run(self.q.claim_many(n) if call is None else call())
        back = min(n, len(recovered))
        for lease in recovered[back:]:  # beyond n: released
            m = self.jobs[lease.job_id]
            if m.cancel_pending(lease.token):  # a release of it ends it cancelled
                m.state = "cancelled"
                m.settles.insert(0, (lease.token, "release", "cancelled"))
            else:
                m.state, m.attempts = "todo", m.attempts - 1
                m.settles.insert(0, (lease.token, "release", "todo"))
            self._drop_lease(m)
        assert [lease.token for lease in leases[:back]] == [r.token for r in recovered[:back]]
        fresh = 0 if self.paused else min(n - back, len(todo))
        # A doomed job the claim picked ends dead instead of being leased.
        self._learn_doomed_ends(set())
        ended = {j for j in doomed if self.jobs[j].state == "dead"}
        if self.names_candidates:
            # A cluster claim names its candidates; one that ended dead is made up for by
            # another round (claiming._CLUSTER_CLAIM_ROUNDS), so it may end more; and
            # the jobs enqueued after it that run anyway wait no more, so a later round
            # may take them.
            waiting = 0 if self.paused else sum(m.state == "todo" for m in self.jobs.values())
            assert len(leases) <= back + min(n - back, waiting), (leases, ended)
            assert back + fresh <= len(leases) + len(ended), (leases, ended)
        else:
            assert len(leases) + len(ended) == back + fresh, (leases, ended)
        assert not {lease.job_id for lease in leases} & doomed
        if back < n:  # a fresh claim ran: it says why it took nothing, if so
            assert self.q.held_back == ("paused" if self.paused else "")
        for lease in leases[:back]:
            assert lease.attempt == self.jobs[lease.job_id].attempts
            self.leases.append(lease)
        for lease in leases[back:]:
            self._claimed(lease)
        if back < n and not self.paused:  # and whether it left nothing waiting
            left = any(m.state == "todo" for m in self.jobs.values())
            assert self.q.nothing_waiting == (not left), left
        return leases[back:]

    @rule(n=st.integers(1, 3))
    def claim_whose_reply_is_lost(self, n: int) -> None:
        """The server ran the claim; the caller never saw the fresh leases (the call
        raised). The queue remembers the call's nonce, the tokens' random part."""
        leases = self._claim(n)
        for lease in leases:
            self.leases.remove(lease)  # nobody holds these lease objects
        # A cluster claim may take several rounds, each a call with its own nonce: the
        # replies of all of them were lost.
        for nonce in dict.fromkeys(lease.token.split("-", 1)[1] for lease in leases):
            self.q._lost_claims.append(nonce)
            self.lost_claims.append([lease for lease in leases
                                     if lease.token.split("-", 1)[1] == nonce])

    def _claimed(self, lease: Lease) -> None:
        m = self.jobs[lease.job_id]
        assert m.state == "todo"
        # Never leased once a job it waited for failed, even one the same claim ended
        # dead (a later round of a cluster claim may reach it).
        assert not m.doomed_by, (lease, m)
        m.state, m.holder, m.lease_live = "in_progress", lease.token, True
        m.attempts += 1
        assert lease.attempt == m.attempts
        assert lease.token not in m.tokens
        m.tokens.append(lease.token)
        self.leases.append(lease)

    @rule()
    def sweep(self) -> None:
        expected = 0
        for m in self.jobs.values():
            if m.state == "in_progress" and not m.lease_live:
                m.expiries += 1
                if m.cancel_pending(m.tokens[-1]):  # its holder died with a cancel bound
                    m.state = "cancelled"
                else:
                    m.state = "dead" if m.attempts >= MAX_ATTEMPTS else "todo"
                m.holder = None
                expected += 1
        doomed = {j for j, m in self.jobs.items() if m.state == "todo" and m.doomed_by}
        assert self.run(self.reaper.sweep()) == expected
        # The reap may have failed dependencies of blocked jobs, the deadline pass after
        # it ends every doomed job (and may go on to their own dependents).
        self._resolve_dependents()
        doomed |= {j for j, m in self.jobs.items() if m.state == "todo" and m.doomed_by}
        self._learn_doomed_ends(doomed)

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


class ControlledMachine(LeaseMachine):
    """A fifo queue with per-key and queue-wide concurrency limits, start deadlines and
    pause, one claimer: the model predicts every claim exactly.

    What the claim decides by (``docs/protocol.md``, "Scheduling controls"), kept here as
    claim.lua keeps it: ``active`` (key -> turn score; the lowest is served, equal scores
    by key bytes, as ``ZRANGE`` orders them), ``parked`` (key -> when to look again:
    ``UNTIL_FREED``, or 0 once a slot of the key freed), the turn and rank counters, and
    per job whether it holds a slot. A hold outlives a deleted lease key (``expire``)
    until the reaper requeues the job; one whose deadline passed (``lapse``) is dropped
    by the next claim, reaper or not.

    Where the docs say less than the scripts do, the model follows the scripts, and the
    difference was reported rather than asserted away: a key whose waiting jobs the
    reaper expired stays in ``active`` (keeping its turn, counted in ``keys_waiting``)
    until a claim finds it empty; ``keys_parked`` and ``waiting_on_limits`` count the
    ``parked`` set as it is, a key whose slot freed included until the next claim, a key
    at its limit that no claim has looked at yet not included."""

    def make_queue(self) -> Queue:
        return Queue(self.client, "model", ordering="fifo", key_concurrency=KEY_CONCURRENCY,
                     max_in_flight=MAX_IN_FLIGHT, max_attempts=MAX_ATTEMPTS,
                     lease_timeout=60.0)

    def __init__(self) -> None:
        super().__init__()
        self.active: dict[str, int] = {}
        self.parked: dict[str, int] = {}
        self.turn = 0  # meta.turn: the round-robin's counter
        self.seq = 0  # meta.seq: the enqueue counter ranks are made of
        self.expired = 0  # meta.expired
        self.run(self.q.prepare())  # stores the controls (stats reads what is stored)

    # -- the model's moves ---------------------------------------------------------------

    def _holding(self, key: str | None = None) -> int:
        """Holds, as a claim counts them (after dropping those whose deadline passed)."""
        return sum(1 for m in self.jobs.values() if m.held and (key is None or m.key == key))

    def _unhold(self, m: JobModel) -> None:
        m.held = m.hold_passed = False
        if m.key in self.parked:  # a freed slot lets the next claim look at the key again
            self.parked[m.key] = 0

    def _line(self, key: str) -> list[str]:
        """The key's waiting jobs in the order it serves them (priority, then rank)."""
        waiting = [(m.rank, j) for j, m in self.jobs.items()
                   if m.state == "todo" and m.key == key]
        return [j for _, j in sorted(waiting)]  # type: ignore[type-var]

    def _ended(self, m: JobModel) -> None:
        if m.held:  # else a claim freed it already, when its deadline passed
            self._unhold(m)

    def _waits(self, job_id: str, keep: bool) -> None:
        m = self.jobs[job_id]
        if not keep or m.rank is None:  # new, or retried: behind the others of its priority
            self.seq += 1
            m.rank = (1000 - m.priority) * 10**12 + self.seq
        if m.key not in self.parked:  # a parked key comes back when unparked
            self.active.setdefault(m.key, 0)

    def _left_todo(self, job_id: str) -> None:
        key = self.jobs[job_id].key
        if not self._line(key):  # its last waiting job: the key leaves the round-robin
            self.active.pop(key, None)
            self.parked.pop(key, None)

    def _new(self, job_id: str, key: str | None, priority: int, expired: bool) -> None:
        self.jobs[job_id] = JobModel(key=key or "", priority=priority, expired=expired)
        self._waits(job_id, keep=False)

    def _claim_call(self, n: int, named: set[str] | None) -> tuple[list[str], str]:
        """One claim.lua call on the model, with its effects (expired jobs to dead,
        parked keys, turns, picks in progress); returns the picked ids in the order
        picked and the claim's held-back reason. ``named``: a cluster claim's
        candidates (it stops at the first id it would take that is not named)."""
        if self.paused:
            return [], "paused"
        for m in self.jobs.values():
            if m.hold_passed:  # slots of leases past their deadline are free, reaper or not
                self._unhold(m)
        budget, why = n, ""
        if MAX_IN_FLIGHT - self._holding() < n:  # fewer free slots than asked for
            budget, why = max(MAX_IN_FLIGHT - self._holding(), 0), "full"
        if budget == 0:
            return [], why
        for key in [key for key, at in self.parked.items() if at == 0]:
            del self.parked[key]
            self.active[key] = 0
        picked: list[str] = []
        tries = 4 * budget + 16  # bounded work per call
        cut = False
        while len(picked) < budget and tries > 0:
            tries -= 1
            if not self.active:
                break
            key = min(self.active, key=lambda k: (self.active[k], k))
            if self._holding(key) >= KEY_CONCURRENCY:  # this call's picks count
                del self.active[key]
                self.parked[key] = UNTIL_FREED
                continue
            line = self._line(key)
            if not line:  # its jobs left todos other than by a claim (the reaper's expire)
                del self.active[key]
                continue
            job_id = line[0]
            if named is not None and job_id not in named:
                cut = True
                break
            m = self.jobs[job_id]
            if m.expired:  # never leased; the key is looked at again at once
                m.state = "dead"
                self.expired += 1
                continue
            picked.append(job_id)
            m.state, m.held = "in_progress", True
            m.attempts += 1
            if len(line) == 1:  # its last waiting job: the key leaves the round-robin
                del self.active[key]
            else:  # to the back of the round-robin
                self.turn += 1
                self.active[key] = self.turn
        # Stopped at a candidate it was not named, or out of tries with keys left to look
        # at, the claim says nothing (the caller names more; a wake token makes the next
        # claim go on); else a claim that took fewer than it could while jobs wait says
        # "keys" (every key that has them is at its limit).
        out_of_tries = tries == 0 and len(picked) < budget and bool(self.active)
        if len(picked) < budget and not why and not out_of_tries and not cut \
                and any(m.state == "todo" for m in self.jobs.values()):
            why = "keys"
        return picked, why

    def _candidates(self, n: int) -> set[str]:
        """candidates.lua on the model: the first waiting jobs of each key whose turn is
        next (parked keys due again, then the first n of the round-robin), 4n at most."""
        due = sorted(key for key, at in self.parked.items() if at == 0)[:n]
        keys = due + sorted(self.active, key=lambda k: (self.active[k], k))[:n]
        out = [job_id for key in keys for job_id in self._line(key)[:4 * n]]
        return set(out[:4 * n])

    def _predict_claim(self, n: int) -> tuple[list[str], str]:
        """The ids claim_many(n) returns, in order, and ``held_back`` after it."""
        if not self.names_candidates:
            return self._claim_call(n, None)
        picked: list[str] = []
        why = ""
        for _ in range(CLUSTER_CLAIM_ROUNDS):
            named = self._candidates(n - len(picked))
            got, why = self._claim_call(n - len(picked), named)
            picked += got
            if len(got) == len(named) or len(picked) >= n:
                break
        return picked, why

    def _choose(self, i: int) -> Lease:
        """Every other draw a live lease, if any (what frees slots), else any issued."""
        live = [lease for lease in self.leases if self._owned(lease)]
        pool = live if live and i % 2 else self.leases
        return pool[i // 2 % len(pool)]

    # -- rules -------------------------------------------------------------------------

    @initialize(jobs=st.lists(st.tuples(st.sampled_from(FAIR_KEYS), st.sampled_from(PRIORITIES)),
                              min_size=3, max_size=8))
    def some_work(self, jobs: list[tuple[str | None, int]]) -> None:
        """Work to start from, one enqueue per job (each a call of its own)."""
        for key, priority in jobs:
            self._new(self.run(self.q.enqueue("t", key=key, priority=priority)), key,
                      priority, expired=False)

    @rule(key=st.sampled_from(FAIR_KEYS), priority=st.sampled_from(PRIORITIES),
          n=st.integers(1, 3), deadline=st.booleans())
    def enqueue(self, key: str | None, priority: int, n: int, deadline: bool) -> None:
        """Jobs of one key and priority; with a start deadline an hour away or none."""
        ids = self.run(self.q.enqueue_many(
            "t", list(range(n)), key=key, priority=priority,
            expires_at=time.time() + 3600 if deadline else None))
        for job_id in ids:
            self._new(job_id, key, priority, expired=False)

    @rule(key=st.sampled_from(FAIR_KEYS), priority=st.sampled_from(PRIORITIES))
    def enqueue_expired(self, key: str | None, priority: int) -> None:
        """A job whose start deadline passed an hour ago: never leased."""
        job_id = self.run(self.q.enqueue("t", key=key, priority=priority,
                                         expires_at=time.time() - 3600))
        self._new(job_id, key, priority, expired=True)

    @rule(n=st.integers(1, 4))
    def claim(self, n: int) -> None:
        """The exact ids, in order, and why the claim stopped short (if it did)."""
        expected, why = self._predict_claim(n)
        leases = self.run(self.q.claim_many(n))
        assert [lease.job_id for lease in leases] == expected
        assert self.q.held_back == why
        if self.paused:
            assert leases == []
        for lease in leases:
            m = self.jobs[lease.job_id]
            assert lease.token not in m.tokens
            assert (lease.attempt, lease.key, lease.holds) == (m.attempts, m.key, 3)
            m.holder, m.lease_live = lease.token, True
            m.tokens.append(lease.token)
            self.leases.append(lease)

    @precondition(lambda self: any(m.lease_live for m in self.jobs.values()))
    @rule(i=st.integers(0, 10_000))
    def lapse(self, i: int) -> None:
        """Renew a live lease for 1 ms and let it run out: the server drops the lease key,
        and its slot is free for the next claim before any reaper ran (the hold's score
        passed), while the job stays in progress until the reaper requeues it."""
        live = [lease for lease in self.leases if self._owned(lease)]
        lease = live[i % len(live)]
        self.run(self.q.extend(lease, lease_timeout=0.001))
        time.sleep(0.005)
        m = self.jobs[lease.job_id]
        m.lease_live, m.hold_passed = False, True

    @rule()
    def sweep(self) -> None:
        """Leases that ran out: requeued at their old place, or dead out of attempts;
        waiting jobs past their start deadline: dead."""
        requeued = dead = expired = cancelled = 0
        for job_id, m in self.jobs.items():
            if m.state == "in_progress" and not m.lease_live:
                m.expiries += 1
                m.holder = None
                self._ended(m)
                if m.cancel_pending(m.tokens[-1]):  # its holder died with a cancel bound
                    m.state = "cancelled"
                    cancelled += 1
                elif m.attempts >= MAX_ATTEMPTS:
                    m.state = "dead"
                    dead += 1
                else:
                    m.state = "todo"
                    self._waits(job_id, keep=True)
                    requeued += 1
        emptied = set()
        for m in self.jobs.values():
            if m.state == "todo" and m.expired:
                m.state = "dead"
                expired += 1
                emptied.add(m.key)
        for key in emptied:  # a key its expired jobs left with none waiting leaves
            if not self._line(key):
                self.active.pop(key, None)
                self.parked.pop(key, None)
        self.expired += expired
        report = self.run(self.reaper.sweep_report())
        assert (report.requeued, report.dead, report.expired, report.cancelled) == (
            requeued, dead, expired, cancelled)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def limits_hold_and_stats_match(self) -> None:
        k = self.q.keys

        async def read() -> tuple[Any, list[bytes], list[bytes]]:
            stats = await self.q.stats()
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zrange(k.holds, 0, -1)
                pipe.zrange(k.held, 0, -1)
                holds, held = await pipe.execute()
            return stats, holds, held

        stats, holds, held = self.run(read())
        holders = {j: m for j, m in self.jobs.items() if m.held}
        assert {h.decode() for h in holds} == set(holders)
        assert {h.decode() for h in held} == {m.key + SEP + j for j, m in holders.items()}
        for leases in (holders.values(), [m for m in self.jobs.values() if m.lease_live]):
            per_key = Counter(m.key for m in leases)
            assert sum(per_key.values()) <= MAX_IN_FLIGHT, per_key
            assert max(per_key.values(), default=0) <= KEY_CONCURRENCY, per_key
        holding = sum(1 for m in holders.values() if not m.hold_passed)
        todos = sum(1 for m in self.jobs.values() if m.state == "todo")
        if self.paused or holding >= MAX_IN_FLIGHT:
            on_limits = todos
        else:
            on_limits = sum(len(self._line(key)) for key in self.parked)
        assert (stats.paused, stats.ordering, stats.todos, stats.holding, stats.expired) == (
            self.paused, "fifo", todos, holding, self.expired)
        assert (stats.keys_waiting, stats.keys_parked, stats.waiting_on_limits) == (
            len(self.active), len(self.parked), on_limits), (self.active, self.parked)


def _runs(examples: int, steps: int) -> settings:
    """How much hypothesis explores on one lane (a real server is slower per step)."""
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- lanes ---------------------------------------------------------------------------------


class FakeLane:
    def make_client(self) -> aioredis.Redis:
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)))


class RealLane:
    url = ""

    def make_client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.url)


class ClusterLane:
    """On a cluster, claims and trims name their keys (see ``docs/protocol.md``): a second
    way to claim, checked against the same model."""

    url = ""
    names_candidates = True

    def make_client(self) -> aioredis.Redis:
        return RedisCluster.from_url(self.url)  # type: ignore[return-value]


@pytest.fixture
def _real_server_url(redis_server: RedisServer) -> Any:
    RealLane.url = redis_server.url
    return redis_server.url


@pytest.fixture
def _cluster_url(redis_cluster: RedisClusterServers) -> Any:
    ClusterLane.url = redis_cluster.url
    return redis_cluster.url


class FakeRedisMachine(FakeLane, ProtocolMachine):
    pass


class RealRedisMachine(RealLane, ProtocolMachine):
    pass


class ClusterMachine(ClusterLane, ProtocolMachine):
    pass


class FakeRedisControlledMachine(FakeLane, ControlledMachine):
    pass


class RealRedisControlledMachine(RealLane, ControlledMachine):
    pass


class ClusterControlledMachine(ClusterLane, ControlledMachine):
    pass


TestProtocolOnFakeRedis = FakeRedisMachine.TestCase
TestProtocolOnFakeRedis.settings = _runs(50, 40)
TestControlsOnFakeRedis = FakeRedisControlledMachine.TestCase
TestControlsOnFakeRedis.settings = _runs(30, 40)


@pytest.mark.real_redis
@pytest.mark.usefixtures("_real_server_url")
class TestProtocolOnRealRedis(RealRedisMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = _runs(40, 40)


@pytest.mark.real_redis
@pytest.mark.usefixtures("_real_server_url")
class TestControlsOnRealRedis(RealRedisControlledMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = _runs(35, 40)


@pytest.mark.real_redis
@pytest.mark.usefixtures("_cluster_url")
class TestProtocolOnCluster(ClusterMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = _runs(30, 30)


@pytest.mark.real_redis
@pytest.mark.usefixtures("_cluster_url")
class TestControlsOnCluster(ClusterControlledMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = _runs(30, 30)
