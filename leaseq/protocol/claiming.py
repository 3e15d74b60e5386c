"""Consumers' claims: take waiting jobs under fresh leases in one atomic step, and take
over the leases of a claim whose reply was lost."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import structlog
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import InvalidInput, LeaseLost, LeaseqError
from ..models import Lease
from . import scripts, validate
from .settling import Settling
from .validate import storable
from .wakeclaim import WaitAbandoned, blpop_then
from .wire import (
    RETRYABLE,
    connection_errors,
    error_text,
    is_cluster,
    opt_int,
    redis_failure,
    text,
)

__all__ = ["Claiming", "can_claim_together", "claim_together"]

log = structlog.get_logger("leaseq.queue")

# Claims of one call at most.
_MAX_CLAIM = 10_000
# Claim calls whose reply was lost, remembered for recovery (the oldest are forgotten).
_MAX_LOST_CLAIMS = 16
# Rounds of candidates a cluster claim tries before returning short (see claim_many).
_CLUSTER_CLAIM_ROUNDS = 3


class Claiming(Settling):
    """:meth:`claim` and :meth:`claim_many` of :class:`~leaseq.Queue` (a claimed job whose
    payload cannot be decoded is buried at once, hence the settle calls)."""

    async def claim(self) -> Lease | None:
        """Claim one job, or return ``None`` when none is waiting."""
        leases = await self.claim_many(1)
        return leases[0] if leases else None

    async def claim_many(
        self, n: int, *, max_attempts: Mapping[str, int] | None = None,
        wait: float | None = None, interrupt: anyio.Event | None = None,
    ) -> list[Lease]:
        """Claim up to ``n`` (at most 10,000) waiting jobs in one atomic step (one round
        trip; on a cluster two, see ``docs/protocol.md``).

        Each job gets a lease of its own length (the job's ``lease_timeout`` or the
        queue's). Due delayed jobs are promoted first. A job whose hash is missing or
        corrupt, or whose payload cannot be decoded, goes to ``dead`` with the reason
        recorded and is not returned.

        ``max_attempts`` maps task names to a lower limit on attempts for jobs of that
        task (a worker passes its ``Task(max_attempts=...)`` values): a claimed job whose
        own limit is higher gets this one stored with it, so the reaper, ``inspect`` and
        the dashboard see the limit that applies.

        A call that failed on a connection error may still have claimed jobs on the
        server (its reply was lost). The queue remembers such a call, and its next
        ``claim_many`` first recovers the leases that call took and still holds
        (counted in :attr:`recovered_leases`), so those jobs run instead of waiting
        out their leases; leases beyond ``n`` are released.

        ``wait`` (seconds) first blocks until a job is enqueued or ``wait`` passes (one
        ``BLPOP`` on the queue's wake list), then claims. On a plain or Sentinel client
        the two are written together on one connection and Redis runs the claim as soon
        as the ``BLPOP`` returns: no round trip between them. ``interrupt`` set during
        the wait ends it at once; the claim still runs and its leases are returned (if
        the server refuses ``CLIENT UNBLOCK``, the connection is closed instead and the
        call returns no leases). A wait cancelled otherwise, or ended that way, counts
        as a call whose reply was lost (see above).
        """
        validate.positive_int(n, "n", _MAX_CLAIM)
        wait_s = None if wait is None else validate.seconds(wait, "wait", allow_zero=False)
        caps = _caps_of(max_attempts)
        await self.prepare()
        leases = await self._recover_claims() if self._lost_claims else []
        if len(leases) >= n:
            for extra in leases[n:]:
                try:
                    await self.release(extra)
                except Exception as exc:
                    if not (isinstance(exc, LeaseLost) or redis_failure(exc)):
                        raise
                    # It expires and the reaper requeues it; the others are still ours.
                    log.warning("release_failed", queue=self.name, job_id=extra.job_id,
                                error=error_text(exc))
            return leases[:n]
        if wait_s is not None and not leases:
            if self._pipelines_wait():
                return await self._claim_after_wake(n, wait_s, caps, interrupt)
            await self._wait_for_wake(wait_s, interrupt)
        try:
            if not is_cluster(self.redis):
                return leases + await self._claim(n - len(leases), None, caps=caps)
            # On a cluster the candidates are named up front (see claim.lua); one that a
            # concurrent claimer took first is skipped, so a short claim is tried again a
            # few times rather than reported as an empty queue.
            for _ in range(_CLUSTER_CLAIM_ROUNDS):
                want = n - len(leases)
                candidates = await self._candidates(want)
                got = await self._claim(want, candidates, caps=caps)
                leases += got
                if len(got) == len(candidates) or len(leases) >= n:
                    break  # no candidate was lost to another claimer
        except Exception:
            if leases:
                # Already ours: returned rather than dropped (a failed call that may have
                # claimed is remembered for next time).
                return leases
            raise
        return leases

    def _pipelines_wait(self) -> bool:
        """Whether a waiting claim can go on one pooled connection with its BLPOP (not on
        a cluster, whose claim takes two steps, nor on a single-connection client)."""
        return (not is_cluster(self.redis)
                and getattr(self.redis, "connection", None) is None
                and not getattr(self.redis, "single_connection_client", False)
                and getattr(self.redis, "connection_pool", None) is not None)

    async def _claim_after_wake(
        self, n: int, wait_s: float, caps: Sequence[scripts.ArgT],
        interrupt: anyio.Event | None,
    ) -> list[Lease]:
        """claim.lua written behind a BLPOP on the wake list (see ``wakeclaim.py``)."""
        nonce = os.urandom(6).hex()
        keys, args = self._claim_call(n, None, nonce, caps)
        command = ("EVALSHA", scripts.CLAIM.sha, len(keys), *keys, *args)
        sent = time.monotonic()
        try:
            with connection_errors():
                began, reply = await blpop_then(self.redis, self.keys.wake, wait_s,
                                                command, interrupt)
        except BaseException as exc:
            # A connection error, no answer in time, a cancellation, or an interrupt the
            # server would not act on: the claim may have run and its reply be lost.
            self._remember_lost(nonce)
            if isinstance(exc, WaitAbandoned):
                return []
            raise
        t1 = time.monotonic()
        if isinstance(reply, NoScriptError):  # it did not run: load it and claim now
            with connection_errors():
                await self.redis.script_load(scripts.CLAIM.source)
            return await self._claim(n, None, caps=caps)
        if isinstance(reply, Exception):
            raise reply  # a refusal
        self._held_back(reply, t1)
        # The claim ran after the wait, which Redis's clock measured (TIME before the
        # BLPOP, the claim's own TIME after): the leases' local deadlines count from the
        # send plus that (never later than the truth), the clock offset from the reply
        # (the claim ran just before it).
        waited = max(0.0, int(reply[0]) - began) / 1000
        leases, _ = await self._leases_of(reply, t1, t1, sent=sent + waited)
        return leases

    async def _wait_for_wake(self, wait_s: float, interrupt: anyio.Event | None) -> None:
        """A BLPOP on the wake list alone (the claim follows it), ended early by
        ``interrupt``: a popped wake token is no loss, the claim comes next."""
        with anyio.CancelScope() as waiting:
            # A bare task, not a task group's, as in blpop_then (wakeclaim.py): the group
            # cost ~110 µs on every wake of an idle worker.
            watcher = (None if interrupt is None else
                       asyncio.get_running_loop().create_task(_cancel_on(interrupt, waiting)))
            try:
                with connection_errors():
                    await self.redis.blpop([self.keys.wake], timeout=wait_s)
            except RedisTimeoutError:
                pass  # the client's socket_timeout is shorter than the wait: it is over
            finally:
                if watcher is not None:
                    watcher.cancel()

    async def _candidates(self, want: int) -> list[str]:
        """The ids a cluster claim names: random waiting ones, or on a fifo queue those
        it would take first (candidates.lua)."""
        if self.controls.fifo:
            picked: list[Any] = await scripts.CANDIDATES(self.redis, self.keys.control, [want])
        else:
            with connection_errors():
                picked = await self.redis.srandmember(  # type: ignore[assignment]
                    self.keys.todos, want)
        return [text(i) for i in picked]

    async def _recover_claims(self) -> list[Lease]:
        """Leases of earlier claim calls whose reply never arrived, still held (each call
        is looked up by its nonce; see claim.lua). The pending nonces are taken at once,
        so two tasks sharing the queue never recover the same call; a lookup that fails
        puts back what it did not reach, and what was recovered before it is returned."""
        pending, self._lost_claims = self._lost_claims, []
        leases: list[Lease] = []
        for i, nonce in enumerate(pending):
            try:
                named: list[str] | None = None
                if is_cluster(self.redis):
                    with connection_errors():
                        record = await self.redis.get(self.keys.claim(nonce))
                    named = [] if record is None else [
                        str(v) for v in json.loads(record)[2::2]]
                leases += await self._claim(0, named, nonce)
            except BaseException as exc:  # a cancellation too puts the rest back
                self._lost_claims[:0] = pending[i:]
                if leases and isinstance(exc, Exception):
                    return leases
                raise
        return leases

    async def _claim(
        self, n: int, named: list[str] | None, nonce: str | None = None,
        caps: Sequence[scripts.ArgT] = (),
    ) -> list[Lease]:
        """One claim.lua call: the script picks the ids, or (``named``, on a cluster) it
        takes those of the named candidates still waiting. With the ``nonce`` of an
        earlier call whose reply was lost, it answers with that call's leases."""
        recovering = nonce is not None
        nonce = nonce or os.urandom(6).hex()
        keys, args = self._claim_call(n, named, nonce, caps)
        t0 = time.monotonic()
        try:
            reply = await scripts.CLAIM(self.redis, keys, args)
        except RETRYABLE:
            # The server may have run the claim and the reply be lost.
            if not recovering:
                self._remember_lost(nonce)
            raise
        t1 = time.monotonic()
        self._held_back(reply, t1)
        leases, gone = await self._leases_of(reply, t0, t1)
        if int(reply[2]) == 1:
            self.recovered_leases += len(leases)
            log.info("claim_recovered", queue=self.name, nonce=nonce, jobs=len(leases),
                     fence_base=int(reply[1]))
            if gone:
                log.warning("claim_reply_lost", queue=self.name, nonce=nonce, expired=gone,
                            detail="leases of a claim whose reply was lost were gone before "
                                   "they could be recovered; the reaper requeues those jobs, "
                                   "each charged an attempt (counted as a lease expiry)")
        elif recovering:
            log.info("claim_not_recorded", queue=self.name, nonce=nonce,
                     detail="a claim call that failed left no record: it never ran (or "
                            "its leases all expired)")
        return leases

    def _claim_call(
        self, n: int, named: list[str] | None, nonce: str, caps: Sequence[scripts.ArgT],
    ) -> tuple[list[scripts.KeyT], list[scripts.ArgT]]:
        """claim.lua's KEYS and ARGV (see its header)."""
        k = self.keys
        keys: list[scripts.KeyT] = [
            k.todos, k.in_progress, k.dead, k.delayed, k.wake, k.fence, k.claim(nonce),
            *k.control, *(k.job(i) for i in named or ()), *(k.lease(i) for i in named or ())]
        args: list[scripts.ArgT] = [k.prefix if named is None else "", n, self.lease_ms,
                                    nonce, self.owner, len(caps) // 2, *caps, *(named or ())]
        return keys, args

    def _remember_lost(self, nonce: str) -> None:
        """Remember a claim call whose reply may be lost, so the next claim takes its
        leases over instead of leaving them to expire (the oldest are forgotten)."""
        self._lost_claims.append(nonce)
        del self._lost_claims[:-_MAX_LOST_CLAIMS]

    def _held_back(self, reply: list[Any], t1: float) -> None:
        """Record why the claim could not take more (paused, a limit) and until when, and
        whether it left nothing waiting."""
        # A claim answered from its record says nothing of now: nothing is held back
        # until a fresh claim says so.
        fresh = int(reply[2]) == 0
        state = text(reply[3]) if fresh else ""
        retry_at = int(reply[4])
        self.held_back = state
        self.nothing_waiting = fresh and int(reply[5]) == 0
        self.held_back_until = (
            t1 + max(0.0, retry_at - int(reply[0])) / 1000 if state and retry_at else None)

    async def _leases_of(
        self, reply: list[Any], t0: float, t1: float, *, sent: float | None = None,
    ) -> tuple[list[Lease], int]:
        """The leases of a claim.lua reply (sent at ``t0``, answered at ``t1`` by the
        local clock; ``sent``: when the call went out, if it waited before the script
        ran), and how many of a recovered call's leases were gone. A job whose payload
        cannot be decoded is buried, not returned."""
        now = int(reply[0]) / 1000
        offset = now - (t0 + t1) / 2
        start = t0 if sent is None else sent
        name, default_attempts, loads = self.name, self.max_attempts, self.serializer.loads
        leases: list[Lease] = []
        gone = 0
        for i in range(6, len(reply), 11):
            (job_id, token, attempt, task, payload, max_attempts, lease_ms, ttl_ms,
             status, key, holds) = reply[i:i + 11]
            jid = text(job_id)
            if status != b"ok" and (state := text(status)) != "ok":
                if state == "gone":
                    gone += 1
                elif state == "expired":
                    log.info("job_expired", queue=self.name, job_id=jid,
                             reason="expired before start")
                elif state == "unmet":
                    log.info("job_dead", queue=self.name, job_id=jid,
                             reason="a job it was enqueued after did not succeed")
                else:
                    log.warning("job_dead", queue=self.name, job_id=jid,
                                reason="job hash missing or corrupt at claim")
                continue
            tok = text(token)
            left_s = int(ttl_ms) / 1000
            try:
                decoded = loads(payload)
                error = None
            except Exception as exc:
                decoded = None
                error = storable(f"payload cannot be decoded: {type(exc).__name__}: {exc}")
            # Positional, in the fields' order: keywords cost a claimed job 0.6 of the
            # 2 µs that making its Lease takes.
            lease = Lease(
                name, jid, tok, text(task), decoded,
                opt_int(attempt) or 0,  # attempt
                opt_int(max_attempts) or default_attempts,
                int(lease_ms) / 1000,  # lease_timeout
                now + left_s,  # deadline
                int(tok.split("-", 1)[0]),  # fence
                # local_deadline, conservative: the server measured what is left after
                # the call was sent.
                start + left_s,
                offset,  # server_offset
                text(key),
                int(holds),
            )
            if error is None:
                leases.append(lease)
            else:
                await self._bury_undecodable(lease, error)
        return leases, gone

    async def _bury_undecodable(self, lease: Lease, error: str) -> None:
        log.warning("job_dead", queue=self.name, job_id=lease.job_id, attempt=lease.attempt,
                    token=lease.token, reason=error)
        try:
            await self._settle(lease, "bury", error, 0)
        except Exception as exc:
            if not (isinstance(exc, LeaseqError) or redis_failure(exc)):
                raise
            # The other leases of the call are ours all the same; this one expires and
            # is claimed (and buried) again.
            log.warning("bury_failed", queue=self.name, job_id=lease.job_id,
                        error=error_text(exc))


async def _cancel_on(interrupt: anyio.Event, scope: anyio.CancelScope) -> None:
    await interrupt.wait()
    scope.cancel()


def _caps_of(max_attempts: Mapping[str, int] | None) -> list[scripts.ArgT]:
    """claim.lua's per-task attempt limits (task, limit pairs), checked."""
    caps: list[scripts.ArgT] = []
    for task, limit in (max_attempts or {}).items():
        caps += (validate.task_name(task), validate.positive_int(limit, "max_attempts"))
    return caps


def can_claim_together(queues: Sequence[Claiming]) -> bool:
    """Whether :func:`claim_together` can claim from ``queues`` in one round trip: one
    plain or Sentinel client with a pool, and no claim whose reply was lost waiting to
    be recovered (its queue recovers it through ``claim_many``)."""
    first = queues[0]
    return (first._pipelines_wait()
            and all(q.redis is first.redis and not q._lost_claims for q in queues))


async def claim_together(
    parts: Sequence[tuple[Claiming, int, Mapping[str, int] | None]],
) -> list[list[Lease] | Exception]:
    """``claim_many(n, max_attempts=...)`` of each ``(queue, n, max_attempts)``, the
    claim calls written together on one connection: one round trip for all, where
    ``claim_many`` takes one per queue (see :func:`can_claim_together`).

    Each queue's answer is its leases, or the error its claim met (a refusal), not
    raised, so one queue's error costs the others nothing. A connection error is
    raised, after every call is remembered as one whose reply may be lost (each queue
    recovers its own leases on its next claim). A call re-sent after a lost reply
    answers from its claim record, as ``claim_many``'s does."""
    if not can_claim_together([q for q, _, _ in parts]):
        raise InvalidInput("claims go together only for queues of one pooled client, "
                           "with no lost claim to recover")
    calls: list[tuple[str, list[scripts.ArgT]]] = []
    commands: list[tuple[Any, ...]] = []
    for q, n, max_attempts in parts:
        validate.positive_int(n, "n", _MAX_CLAIM)
        caps = _caps_of(max_attempts)
        await q.prepare()
        nonce = os.urandom(6).hex()
        keys, args = q._claim_call(n, None, nonce, caps)
        calls.append((nonce, caps))
        commands.append(("EVALSHA", scripts.CLAIM.sha, len(keys), *keys, *args))
    client = parts[0][0].redis
    t0 = time.monotonic()
    try:
        with connection_errors():
            replies = await scripts.evalsha_many(client, commands)
    except RETRYABLE:
        for (q, _, _), (nonce, _) in zip(parts, calls, strict=True):
            q._remember_lost(nonce)
        raise
    t1 = time.monotonic()
    out: list[list[Lease] | Exception] = []
    for (q, n, _), (_, caps), reply in zip(parts, calls, replies, strict=True):
        try:
            if isinstance(reply, NoScriptError):  # it did not run: load it and claim now
                with connection_errors():
                    await client.script_load(scripts.CLAIM.source)
                out.append(await q._claim(n, None, caps=caps))
            elif isinstance(reply, Exception):
                out.append(reply)
            else:
                q._held_back(reply, t1)
                leases, _ = await q._leases_of(reply, t0, t1)
                out.append(leases)
        except Exception as exc:
            # This queue's claim only (a burial that failed, the claim after a load):
            # the other queues' leases are kept.
            out.append(exc)
    return out
