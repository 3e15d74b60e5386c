"""The queue: producer calls, the lease calls of consumers, and read-only views."""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import structlog
from redis.exceptions import RedisError, ResponseError

from ..exceptions import InvalidInput, LeaseLost, LeaseqError
from ..models import JobInfo, JobState, Lease, QueueStats, WorkerInfo
from ..runtime import taskstats
from ..runtime.presence import live_workers
from . import admin, crash, scripts, tx, validate
from . import settings as _settings
from .codec import JsonSerializer, Serializer, encode
from .keys import QUEUES_KEY, QueueKeys, validate_queue_name
from .settings import STORED, Stored
from .validate import storable
from .views import read_jobs
from .wait import wait_all
from .wire import (
    RETRYABLE,
    AnyRedis,
    connection_errors,
    error_text,
    is_cluster,
    opt_int,
    redis_failure,
    text,
)

__all__ = ["Queue"]

log = structlog.get_logger(__name__)

# An ack transaction is retried when a watched lease key changed (a heartbeat of the same
# worker renewing it, for example); more retries than this means something is wrong.
_MAX_WATCH_RETRIES = 32
# Rounds of candidates a cluster claim tries before returning short (see claim_many).
_MAX_CLAIM = 10_000
# Longest error text or dead reason stored with a job.
_MAX_ERROR_CHARS = 65_536
# Claim calls whose reply was lost, remembered for recovery (the oldest are forgotten).
_MAX_LOST_CLAIMS = 16
_CLUSTER_CLAIM_ROUNDS = 3
_SETTLE_OUTCOMES: dict[str, JobState] = {"todo": "todo", "delayed": "delayed", "dead": "dead"}


async def _cluster_wait(cluster: Any, key: str, replicas: int, timeout_ms: int) -> int:
    """The marker write and ``WAIT`` on one connection to the master of ``key``'s slot
    (redis-py's cluster client would send ``WAIT`` to every node and add the replies)."""

    async def marker_then_wait(conn: Any) -> int:
        await conn.send_packed_command(conn.pack_commands([
            ("HINCRBY", key, "sync", 1), ("WAIT", replicas, timeout_ms)]))
        await conn.read_response()
        return int(await conn.read_response())

    return await tx.on_slot_node(cluster, key, marker_then_wait)


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _decodes_responses(redis: Any) -> bool:
    get_encoder = getattr(redis, "get_encoder", None)
    return bool(get_encoder is not None and getattr(get_encoder(), "decode_responses", False))


class Queue:
    """A named queue on one Redis server (or one Redis Cluster slot).

    ``redis`` is a ``redis.asyncio.Redis`` client, with or without ``decode_responses``;
    the queue never closes it. ``lease_timeout`` (seconds) is the default length of a
    lease; ``max_attempts`` the default number of claims a job gets before it goes to
    ``dead``. Done jobs are forgotten by the reaper after ``done_ttl`` seconds or beyond the
    newest ``done_max`` (either may be ``None`` to disable it).

    These four settings belong to the queue, not to one process: one given here is
    stored with the queue in Redis (at :meth:`prepare`, with a ``queue_settings_changed``
    warning when it replaces a different stored value); one not given is read from there,
    so a reaper sidecar or the dashboard applies what the application set. The built-in
    defaults (30 s, 5 attempts, a day, 100,000) apply only where nothing is stored; the
    attributes hold the applied values once :meth:`prepare` ran.

    ``replicas`` (the durability knob): when > 0, every enqueue, ack and settle waits
    (``WAIT``) until that many replicas have the write, for up to ``replica_timeout``
    seconds; a write not confirmed in time is still done on the master, and is logged
    (``replication_not_confirmed``) and counted in :attr:`unconfirmed_writes`. On a
    Redis Cluster the wait goes to the master that serves the queue's slot.

    Safe to share between tasks of one event loop; create one per process.
    """

    def __init__(
        self,
        redis: AnyRedis,
        name: str,
        *,
        lease_timeout: float | None = None,
        max_attempts: int | None = None,
        serializer: Serializer | None = None,
        done_ttl: float | Stored | None = STORED,
        done_max: int | Stored | None = STORED,
        owner: str | None = None,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        self.name = validate_queue_name(name)
        self.redis = redis
        # Settings given here are stored with the queue; the others are read from it (see
        # prepare), so every process applies the same ones.
        self._explicit: dict[str, int | None] = {}
        if lease_timeout is not None:
            self._explicit["lease_ms"] = validate.millis(lease_timeout, "lease_timeout")
        if max_attempts is not None:
            self._explicit["max_attempts"] = validate.positive_int(max_attempts, "max_attempts")
        if done_ttl is not STORED:
            self._explicit["done_ttl_ms"] = None if done_ttl is None else math.ceil(
                validate.seconds(done_ttl, "done_ttl", allow_zero=True) * 1000)
        if done_max is not STORED:
            if done_max is not None and (isinstance(done_max, bool)
                                         or not isinstance(done_max, int)
                                         or not 0 <= done_max <= validate.MAX_COUNT):
                raise InvalidInput(f"done_max must be an integer from 0 to "
                                   f"{validate.MAX_COUNT}, got {done_max!r}")
            self._explicit["done_max"] = done_max
        self.lease_timeout = 30.0
        """The default lease length in seconds (explicit, stored with the queue, or 30)."""
        self.lease_ms = 30_000
        self.max_attempts = 5
        """The default attempts per job (explicit, stored with the queue, or 5)."""
        self.done_ttl: float | None = 86_400.0
        """Seconds done jobs are kept (explicit, stored, or a day); ``None``: no limit."""
        self.done_max: int | None = 100_000
        """Done jobs kept at most (explicit, stored, or 100,000); ``None``: no limit."""
        self._apply({**_settings.DEFAULTS, **self._explicit})
        self.serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        if not isinstance(self.serializer, Serializer):
            raise LeaseqError("serializer must have dumps() and loads() methods")
        if _decodes_responses(redis) and getattr(self.serializer, "text", False) is not True:
            # The client would decode every reply as UTF-8: a binary payload in a claim's
            # reply would fail the whole reply (its leases orphaned), so refuse up front.
            raise InvalidInput(
                "this client decodes responses (decode_responses=True), which only works "
                "with a serializer whose output is UTF-8 text (one with text = True, like "
                "the default JSON serializer); use a client without decode_responses")
        self.owner = validate.owner(_default_owner() if owner is None else owner)
        self.replicas = 0 if replicas == 0 else validate.positive_int(replicas, "replicas")
        self.replica_timeout_ms = validate.millis(replica_timeout, "replica_timeout")
        self.unconfirmed_writes = 0
        """Writes that ``replicas`` replicas did not confirm within ``replica_timeout``."""
        self.keys = QueueKeys(self.name)
        self.recovered_leases = 0
        """Leases of claim calls whose reply was lost that a later claim took over."""
        self._lost_claims: list[str] = []
        self._server_checked = False
        self.epoch: str | None = None
        """The queue's epoch marker as this object first saw it (see :meth:`prepare`)."""

    def _apply(self, settings: Mapping[str, int | None]) -> None:
        lease_ms = settings["lease_ms"] or _settings.DEFAULTS["lease_ms"]
        assert lease_ms is not None
        self.lease_ms = lease_ms
        self.lease_timeout = lease_ms / 1000
        self.max_attempts = settings["max_attempts"] or 5
        ttl = settings["done_ttl_ms"]
        self.done_ttl = None if ttl is None else ttl / 1000
        self.done_max = settings["done_max"]

    async def refresh_settings(self) -> None:
        """Read the settings stored with the queue again and apply those this object was
        not given explicitly (a long-running reaper calls it every sweep, so a change made
        by another process takes effect)."""
        stored = await self.redis.hgetall(self.keys.settings)
        applied, _ = _settings.merge(self.name, {}, stored)
        self._apply({**applied, **self._explicit})

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, lease_timeout={self.lease_timeout})"

    # -- producers ----------------------------------------------------------------------

    async def enqueue(
        self,
        task: str,
        payload: Any = None,
        *,
        job_id: str | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        lease_timeout: float | None = None,
    ) -> str:
        """Add one job and return its id.

        With an explicit ``job_id`` that the queue already holds (waiting, delayed, in
        flight, done and retained, or dead) nothing is written and the id is returned:
        enqueue is idempotent per id. ``delay`` defers the job by that many seconds;
        ``max_attempts`` and ``lease_timeout`` override the queue's defaults for this job.
        """
        ids = await self._enqueue(
            task, [payload], None if job_id is None else [job_id], delay, max_attempts,
            lease_timeout,
        )
        return ids[0]

    async def enqueue_many(
        self,
        task: str,
        payloads: Iterable[Any],
        *,
        job_ids: Sequence[str] | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        lease_timeout: float | None = None,
    ) -> list[str]:
        """Add many jobs of one task in one round trip; return their ids in order.

        Every payload is serialised (and rejected on error) before anything is written.
        ``job_ids``, when given, must have one id per payload; known ids are skipped
        as in :meth:`enqueue`.

        All or nothing: the batch is one script call, which Redis runs whole or refuses
        whole (at ``maxmemory`` it is refused before its first write; once started it
        finishes even past the limit). The cost is that the server runs the whole batch
        at once, about 2-3 µs per job, while other clients wait: split batches of more
        than ~100,000 jobs into several calls (each then all or nothing on its own).
        """
        return await self._enqueue(task, list(payloads), job_ids, delay, max_attempts,
                                   lease_timeout)

    async def _enqueue(
        self,
        task: str,
        payloads: list[Any],
        job_ids: Sequence[str] | None,
        delay: float | None,
        max_attempts: int | None,
        lease_timeout: float | None,
    ) -> list[str]:
        validate.task_name(task)
        delay_ms = validate.optional_millis(delay, "delay")
        attempts = self.max_attempts if max_attempts is None else validate.positive_int(
            max_attempts, "max_attempts")
        lease_ms: int | str = "" if lease_timeout is None else validate.millis(
            lease_timeout, "lease_timeout")
        if job_ids is None:
            ids = [uuid.uuid4().hex for _ in payloads]
        else:
            ids = [validate.job_id(j) for j in job_ids]
            if len(ids) != len(payloads):
                raise InvalidInput(
                    f"{len(ids)} job ids for {len(payloads)} payloads")
        data = [encode(self.serializer, p, "payload") for p in payloads]
        if not ids:
            return ids
        await self.prepare()
        k = self.keys
        # One script call for the whole batch: Redis runs it all or refuses it whole (a
        # server at maxmemory refuses the call before its first write), so a caller never
        # has to guess which generated ids went in.
        keys = [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.wake,
                *(k.job(i) for i in ids)]
        args: list[scripts.ArgT] = ["1" if job_ids is None else "0"]
        for job, payload in zip(ids, data, strict=True):
            args += (job, task, payload, attempts, delay_ms, lease_ms)
        await scripts.ENQUEUE(self.redis, keys, args)
        await self._replicated("enqueue")
        return ids

    # -- consumers ----------------------------------------------------------------------

    async def claim(self) -> Lease | None:
        """Claim one job, or return ``None`` when none is waiting."""
        leases = await self.claim_many(1)
        return leases[0] if leases else None

    async def claim_many(
        self, n: int, *, max_attempts: Mapping[str, int] | None = None
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
        """
        validate.positive_int(n, "n", _MAX_CLAIM)
        caps: list[scripts.ArgT] = []
        for task, limit in (max_attempts or {}).items():
            caps += (validate.task_name(task), validate.positive_int(limit, "max_attempts"))
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
        try:
            if not is_cluster(self.redis):
                return leases + await self._claim(n - len(leases), None, caps=caps)
            # On a cluster the candidates are named up front (see claim.lua); one that a
            # concurrent claimer took first is skipped, so a short claim is tried again a
            # few times rather than reported as an empty queue.
            for _ in range(_CLUSTER_CLAIM_ROUNDS):
                want = n - len(leases)
                with connection_errors():
                    picked: list[Any] = await self.redis.srandmember(  # type: ignore[assignment]
                        self.keys.todos, want)
                candidates = [text(i) for i in picked]
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
        k = self.keys
        recovering = nonce is not None
        nonce = nonce or os.urandom(6).hex()
        keys = [k.todos, k.in_progress, k.dead, k.delayed, k.wake, k.fence, k.claim(nonce),
                *(k.job(i) for i in named or ()), *(k.lease(i) for i in named or ())]
        t0 = time.monotonic()
        try:
            reply = await scripts.CLAIM(
                self.redis, keys,
                [k.prefix if named is None else "", n, self.lease_ms, nonce, self.owner,
                 len(caps) // 2, *caps, *(named or ())])
        except RETRYABLE:
            # The server may have run the claim and the reply be lost: remember the call,
            # so the next claim takes its leases over instead of leaving them to expire.
            if not recovering:
                self._lost_claims.append(nonce)
                del self._lost_claims[:-_MAX_LOST_CLAIMS]
            raise
        t1 = time.monotonic()
        now = int(reply[0]) / 1000
        fence_base = int(reply[1])
        recovered = int(reply[2]) == 1
        offset = now - (t0 + t1) / 2
        leases: list[Lease] = []
        gone = 0
        for i in range(3, len(reply), 9):
            (job_id, token, attempt, task, payload, max_attempts, lease_ms, ttl_ms,
             status) = reply[i:i + 9]
            jid = text(job_id)
            if text(status) == "gone":
                gone += 1
                continue
            if text(status) != "ok":
                log.warning("job_dead", queue=self.name, job_id=jid,
                            reason="job hash missing or corrupt at claim")
                continue
            tok = text(token)
            lease_s = int(lease_ms) / 1000
            left_s = int(ttl_ms) / 1000
            try:
                decoded = self.serializer.loads(payload)
                error = None
            except Exception as exc:
                decoded = None
                error = storable(f"payload cannot be decoded: {type(exc).__name__}: {exc}")
            lease = Lease(
                queue=self.name, job_id=jid, token=tok, task=text(task), payload=decoded,
                attempt=opt_int(attempt) or 0,
                max_attempts=opt_int(max_attempts) or self.max_attempts, lease_timeout=lease_s,
                deadline=now + left_s, fence=int(tok.split("-", 1)[0]),
                # Conservative: the server measured what is left after the call was sent.
                local_deadline=t0 + left_s,
                server_offset=offset,
            )
            if error is not None:
                log.warning("job_dead", queue=self.name, job_id=jid, attempt=lease.attempt,
                            token=tok, reason=error)
                try:
                    await self._settle(lease, "bury", error, 0)
                except (LeaseqError, RedisError, OSError) as exc:
                    # The other leases of the call are ours all the same; this one expires
                    # and is claimed (and buried) again.
                    log.warning("bury_failed", queue=self.name, job_id=jid,
                                error=error_text(exc))
                continue
            leases.append(lease)
        if recovered:
            self.recovered_leases += len(leases)
            log.info("claim_recovered", queue=self.name, nonce=nonce, jobs=len(leases),
                     fence_base=fence_base)
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

    async def ack(self, lease: Lease, result: Any = None) -> None:
        """Mark the job done with ``result``, if ``lease`` still holds it.

        A ``WATCH``/``MULTI``/``EXEC`` transaction: it commits only while the lease key
        holds this lease's token. Raises :class:`LeaseLost` otherwise. Idempotent: a
        retry of an ack that already committed (a lost reply) returns normally.
        """
        (ok,) = await self.ack_many([(lease, result)])
        if not ok:
            raise LeaseLost(self.name, lease.job_id, lease.token)

    async def ack_many(self, acks: Sequence[tuple[Lease, Any]]) -> list[bool]:
        """Ack many leases in one transaction; return, per lease, whether it was acked.

        ``False`` means the lease was lost (see :meth:`ack`); those jobs are untouched.
        Results are serialised (and rejected on error) before anything is written.
        """
        data = [encode(self.serializer, result, "result") for _, result in acks]
        if not acks:
            return []
        k = self.keys
        lease_keys = [k.lease(lease.job_id) for lease, _ in acks]
        owned: list[int] = []

        def commands(current: list[Any]) -> list[tx.Command] | None:
            # Runs after WATCH and the read: a change after the read aborts the EXEC.
            nonlocal owned
            owned = [i for i, v in enumerate(current)
                     if v is not None and text(v) == acks[i][0].token]
            if not owned:
                return None
            crash.point("in_ack")
            out: list[tx.Command] = []
            done_at: list[Any] = []
            ids = []
            for i in owned:
                lease = acks[i][0]
                ms = int(lease.server_now() * 1000)
                done_at += [ms, lease.job_id]
                ids.append(lease.job_id)
                out.append(("HSET", k.job(lease.job_id), "result", data[i],
                            "finished_at", ms, "settled", lease.token, "settled_by", "ack"))
            # The ids are in in_progress: the watched lease keys still hold our tokens,
            # and a lease exists only while its id is in in_progress. So SREM + SADD here
            # is the batched form of SMOVE in_progress done.
            out += [("SREM", k.in_progress, *ids), ("SADD", k.done, *ids),
                    ("DEL", *[lease_keys[i] for i in owned]), ("ZADD", k.done_at, *done_at)]
            return out

        for _ in range(_MAX_WATCH_RETRIES):
            if await tx.watch_read_exec(self.redis, lease_keys, commands) is not False:
                break
        else:
            raise LeaseqError(
                f"ack of {len(acks)} jobs in queue {self.name!r} did not commit after "
                f"{_MAX_WATCH_RETRIES} tries: their lease keys kept changing")
        if owned:
            await self._replicated("ack")
        ok = [False] * len(acks)
        for i in owned:
            ok[i] = True
        lost = [i for i in range(len(acks)) if not ok[i]]
        if lost:
            # An ack retried after a lost reply finds its own settlement recorded.
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in lost:
                    pipe.hmget(k.job(acks[i][0].job_id), ["settled", "settled_by"])
                settled = await pipe.execute()
            for i, (tok, by) in zip(lost, settled, strict=True):
                if tok is not None and text(tok) == acks[i][0].token and text(by) == "ack":
                    ok[i] = True
        return ok

    async def fail(
        self, lease: Lease, error: str, *, retry_in: float | None = None,
        max_attempts: int | None = None,
    ) -> JobState:
        """Record a failed attempt with ``error``; return where the job went.

        The job goes back to ``todo`` (or to ``delayed`` for ``retry_in`` seconds), or to
        ``dead`` when it has used up its attempts (the job's ``max_attempts``, or the
        smaller ``max_attempts`` given here). Raises :class:`LeaseLost` if the lease is no
        longer held. Idempotent for a retried call.
        """
        delay_ms = validate.optional_millis(retry_in, "retry_in")
        cap: int | str = "" if max_attempts is None else validate.positive_int(
            max_attempts, "max_attempts")
        return await self._settle(lease, "fail", str(error), delay_ms, cap)

    async def bury(self, lease: Lease, reason: str) -> None:
        """Move the job to ``dead`` now with ``reason``, whatever attempts it has left
        (for work that can never succeed). Raises :class:`LeaseLost` if the lease is lost."""
        await self._settle(lease, "bury", str(reason), 0)

    async def release(self, lease: Lease) -> None:
        """Give the job back to ``todo`` at once, without counting the attempt.

        Used by a worker that shuts down before it could run the job. Raises
        :class:`LeaseLost` if the lease is no longer held. Idempotent for a retried call.
        """
        await self._settle(lease, "release", "", 0)

    async def _settle(
        self, lease: Lease, mode: str, error: str, delay_ms: int, cap: int | str = "",
    ) -> JobState:
        k = self.keys
        # Error text comes from anywhere (exception messages, file names): store what
        # UTF-8 can encode, bounded.
        error = storable(error[:_MAX_ERROR_CHARS])
        outcome = text(await scripts.SETTLE(
            self.redis,
            [k.lease(lease.job_id), k.job(lease.job_id), k.in_progress, k.todos, k.delayed,
             k.dead, k.wake],
            [lease.job_id, lease.token, mode, error, delay_ms, cap],
        ))
        if outcome == "lost":
            raise LeaseLost(self.name, lease.job_id, lease.token)
        await self._replicated(mode)
        return _SETTLE_OUTCOMES[outcome]

    async def _replicated(self, what: str) -> None:
        """With the durability knob on, wait until ``replicas`` replicas have this
        client's writes so far: a marker write, then WAIT on the same connection (the
        replication stream is ordered, so covering the marker covers what came before)."""
        if not self.replicas:
            return
        if is_cluster(self.redis):
            confirmed = await _cluster_wait(self.redis, self.keys.meta, self.replicas,
                                            self.replica_timeout_ms)
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(self.keys.meta, "sync", 1)
                pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms)
                _, confirmed = await pipe.execute()
        if int(confirmed) < self.replicas:
            self.unconfirmed_writes += 1
            log.warning("replication_not_confirmed", queue=self.name, write=what,
                        confirmed=int(confirmed), wanted=self.replicas,
                        timeout_ms=self.replica_timeout_ms)

    async def extend(self, lease: Lease, lease_timeout: float | None = None) -> Lease:
        """Renew the lease for ``lease_timeout`` seconds from now (default: its own length).

        Returns the renewed lease (same token, new deadline). Raises :class:`LeaseLost`
        if the lease is no longer held; nothing is changed then.
        """
        (renewed,) = await self.extend_many([lease], lease_timeout)
        if renewed is None:
            raise LeaseLost(self.name, lease.job_id, lease.token)
        return renewed

    async def extend_many(
        self, leases: Sequence[Lease], lease_timeout: float | None = None
    ) -> list[Lease | None]:
        """Renew many leases of the same length in one round trip; ``None`` marks a lost one."""
        if not leases:
            return []
        if lease_timeout is None:
            lengths = {lease.lease_timeout for lease in leases}
            if len(lengths) != 1:
                raise InvalidInput("extend_many needs leases of one length")
            lease_timeout = lengths.pop()
        ms = validate.millis(lease_timeout, "lease_timeout")
        t0 = time.monotonic()
        reply = await scripts.EXTEND(
            self.redis, [self.keys.lease(lease.job_id) for lease in leases],
            [ms, *(lease.token for lease in leases)],
        )
        now = int(reply[0]) / 1000
        secs = ms / 1000
        return [
            replace(lease, lease_timeout=secs, deadline=now + secs, local_deadline=t0 + secs)
            if int(ok) else None
            for lease, ok in zip(leases, reply[1:], strict=True)
        ]

    # -- views --------------------------------------------------------------------------

    async def stats(self) -> QueueStats:
        """Sizes of the queue's sets and the jobs acked in the last minute (by Redis's
        clock), read atomically in one round trip."""
        k = self.keys
        reply = await scripts.STATS(
            self.redis,
            [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.done_at, k.meta], [])
        todos, in_progress, done, dead, delayed, recent = (int(c) for c in reply[:6])
        epoch = reply[6] if len(reply) > 6 else None
        return QueueStats(todos=todos, in_progress=in_progress, done=done, dead=dead,
                          delayed=delayed, done_last_minute=recent,
                          epoch=None if epoch is None else text(epoch))

    async def job(self, job_id: str) -> JobInfo | None:
        """Everything recorded about one job, or ``None`` if the queue does not know it."""
        (info,) = await read_jobs(self, [validate.job_id(job_id)])
        return info

    async def jobs(self, job_ids: Sequence[str]) -> list[JobInfo | None]:
        """:meth:`job` for many ids in one round trip."""
        return await read_jobs(self, [validate.job_id(j) for j in job_ids])

    async def list_jobs(
        self, state: JobState, *, task: str | None = None, limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[JobInfo], str | None]:
        """One page of the jobs in ``state`` and the cursor of the next page (``None``
        after the last). The cost of a page is bounded by ``limit`` (at most 1,000),
        whatever the queue's size: ``done`` (newest first) and ``delayed`` (soonest
        first) are read by position, ``limit`` at a time; ``todo``, ``in_progress`` and
        ``dead`` one ``SSCAN`` step of ``COUNT limit`` at a time (no order; ``COUNT`` is a
        hint, so such a page may hold a few more than ``limit`` or none while more
        follow, and a job may appear on two pages while the set changes; every job
        present throughout appears). ``task`` keeps
        only that task's jobs, so a page may hold fewer than ``limit`` (and still have a
        next one)."""
        if state not in ("todo", "in_progress", "done", "dead", "delayed"):
            raise InvalidInput(f"state must be todo, in_progress, done, dead or delayed, "
                               f"got {state!r}")
        if task is not None:
            validate.task_name(task)
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidInput(f"cursor must be a string from an earlier page, got {cursor!r}")
        return await admin.list_jobs(self, state, task,
                                     validate.positive_int(limit, "limit", 1000), cursor)

    async def purge_waiting(self) -> int:
        """Delete every waiting and delayed job for good; return how many. Running jobs
        (and done and dead ones) are untouched; a job claimed meanwhile is left alone."""
        return await admin.purge_waiting(self)

    async def task_stats(self, minutes: int = 15, sample: int = 10_000) -> dict[str, Any]:
        """Per task: jobs acked, failed and dead in each of the last ``minutes`` minutes
        (by Redis's clock; as workers flush them, every 5 s), p50 and p95 of the
        handlers' run time (upper bounds of histogram buckets, in seconds), and the jobs
        waiting, delayed, running and dead per task, counted among at most ``sample`` ids
        per state (``sampled`` is true when a state held more, and those counts are then
        of the sample only)."""
        return await taskstats.read(
            self, validate.positive_int(minutes, "minutes", 120),
            validate.positive_int(sample, "sample", 100_000))

    async def workers(self) -> list[WorkerInfo]:
        """The live workers serving this queue, newest first (at most 1,000): each
        renews its entry every ``presence_interval`` seconds, and one that died drops out
        of the list once its entry expires (five intervals)."""
        return await live_workers(self)

    async def dead_jobs(self, limit: int = 100) -> list[JobInfo]:
        """Up to ``limit`` dead jobs with their reasons (in no particular order)."""
        return await admin.dead_jobs(self, validate.positive_int(limit, "limit"))

    async def oldest_lease_age(self) -> float | None:
        """Seconds since the oldest live claim was made (by Redis's clock; looks at up to
        10,000 leases), or ``None`` when nothing is in progress. A large value means a
        long job or a stuck one."""
        ages = await admin.lease_ages(self)
        return ages[0] if ages else None

    async def requeue_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Give dead jobs (the given ids, or all when ``None``) a fresh set of attempts
        and put them back in ``todos``; return how many moved. Ids that are not dead, and
        dead jobs whose hash is gone (nothing to run), are left alone."""
        ids = None if job_ids is None else [validate.job_id(j) for j in job_ids]
        return await admin.requeue_dead(self, ids)

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete dead jobs (the given ids, or all when ``None``) for good; return how
        many. Ids that are not dead are left alone."""
        ids = None if job_ids is None else [validate.job_id(j) for j in job_ids]
        return await admin.purge_dead(self, ids)

    async def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait until the job is done and return its result.

        Raises :class:`JobDead` with the recorded reason if it ends in ``dead``,
        :class:`JobNotFound` if the queue does not know the id (never enqueued, or done
        and forgotten by the retention before a poll saw it), and :class:`WaitTimeout`
        after ``timeout`` seconds. Polls with a backoff from 1 ms to 50 ms.
        """
        validate.job_id(job_id)
        (result,) = await wait_all(self, [job_id], timeout)
        return result

    async def map(
        self, task: str, payloads: Iterable[Any], *, timeout: float | None = None,
        max_attempts: int | None = None, lease_timeout: float | None = None,
    ) -> list[Any]:
        """Enqueue one job per payload and return their results in input order.

        Raises :class:`JobDead` for the first job (in input order) that ends dead, and
        :class:`WaitTimeout` if they are not all done within ``timeout`` seconds.
        """
        ids = await self.enqueue_many(task, payloads, max_attempts=max_attempts,
                                      lease_timeout=lease_timeout)
        return await wait_all(self, ids, timeout)

    # -- server checks ---------------------------------------------------------------------

    def forget_server_state(self) -> None:
        """Make the next call run :meth:`prepare` again (after the server lost its data)."""
        self._server_checked = False
        self.epoch = None

    async def prepare(self) -> None:
        """Register the queue by name, create or read its epoch marker, store the settings
        given explicitly and apply the stored ones for the others (see
        ``docs/protocol.md``, "Settings"), and check the server's eviction policy (a
        structured warning unless ``noeviction``).

        Runs once, before the first enqueue or claim; call it to fail fast at start-up.
        """
        if self._server_checked:
            return
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            # The registry lets `leaseq stats` and dashboards find queues by name.
            pipe.sadd(QUEUES_KEY, self.name)
            # The epoch marker tells a reaper when the server lost its data.
            pipe.hsetnx(k.meta, "epoch", uuid.uuid4().hex)
            pipe.hget(k.meta, "epoch")
            pipe.hgetall(k.settings)
            *_, epoch, stored = await pipe.execute()
        self.epoch = text(epoch)
        applied, to_store = _settings.merge(self.name, self._explicit, stored)
        if to_store:
            fields: dict[Any, Any] = dict(to_store)
            await self.redis.hset(k.settings, mapping=fields)
        self._apply(applied)
        self._server_checked = True
        try:
            conf = await self.redis.config_get("maxmemory-policy")
        except (ResponseError, RedisError):
            # CONFIG is often disabled on managed Redis; the check is advice, not a gate.
            log.debug("maxmemory_policy_unknown", queue=self.name)
            return
        policy = next((text(v) for v in conf.values()), None)
        if policy is not None and policy != "noeviction":
            log.warning(
                "maxmemory_policy_evicts", queue=self.name, policy=policy,
                advice="set maxmemory-policy noeviction: eviction drops leases and jobs",
            )
