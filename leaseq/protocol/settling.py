"""Settling a lease: the fenced ack transaction, fail, bury and release (settle.lua),
and lease renewal (extend.lua)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import anyio
from redis.exceptions import NoScriptError

from ..exceptions import InvalidInput, LeaseLost, LeaseqError
from ..models import JobState, Lease
from . import crash, scripts, tx, validate
from .codec import encode
from .core import QueueCore
from .keys import QueueKeys
from .validate import storable
from .wire import CONNECTION_ERRORS, is_cluster, text

__all__ = ["Settling", "ack_together"]

# An ack transaction is retried when a watched lease key changed (a heartbeat of the same
# worker renewing it, for example); more retries than this means something is wrong.
_MAX_WATCH_RETRIES = 32
# Connections lost during one ack before its error reaches the caller (redis-py's own
# default retries a command three times).
_MAX_DROPPED = 3
# Longest error text or dead reason stored with a job.
_MAX_ERROR_CHARS = 65_536
_MAX_PROGRESS_TEXT = 4096
_MAX_PROGRESS_BYTES = 65_536
_SETTLE_OUTCOMES: dict[str, JobState] = {"todo": "todo", "delayed": "delayed", "dead": "dead",
                                          "cancelled": "cancelled"}


class Settling(QueueCore):
    """:meth:`ack`, :meth:`fail`, :meth:`bury`, :meth:`release` and :meth:`extend` of
    :class:`~leaseq.Queue`, each fenced by the lease's token."""

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
        (ok,) = await ack_together([(self, acks)])
        return ok

    async def _acked_before(self, leases: Sequence[Lease]) -> list[bool]:
        """Whether each job's recorded settlement is an ack by this very lease."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for lease in leases:
                pipe.hmget(self.keys.job(lease.job_id), ["settled", "settled_by"])
            settled = await pipe.execute()
        return [tok is not None and text(tok) == lease.token and text(by) == "ack"
                for lease, (tok, by) in zip(leases, settled, strict=True)]

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

    async def settle_cancelled(self, lease: Lease) -> None:
        """End a job whose cancel is pending (:meth:`~leaseq.Queue.cancel` of a running
        job): the holder of ``lease`` moves it to ``cancelled``. Raises
        :class:`LeaseLost` if the lease is no longer held, or holds no pending cancel.
        Idempotent for a retried call."""
        await self._settle(lease, "cancel", "", 0)

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
             k.dead, k.wake, *k.control],
            [lease.job_id, lease.token, mode, error, delay_ms, cap],
        ))
        if outcome == "lost":
            raise LeaseLost(self.name, lease.job_id, lease.token)
        await self._replicated(mode)
        return _SETTLE_OUTCOMES[outcome]

    async def progress(
        self, lease: Lease, fraction: float, message: str | None = None, **data: Any,
    ) -> None:
        """Store the progress of the job ``lease`` holds: ``fraction`` (0 to 1), an
        optional ``message`` and JSON ``data``; ``inspect``, the API and the dashboard
        show it, and it is published on the queue's ``progress`` channel. Fenced: raises
        :class:`LeaseLost` if the lease is no longer held (a stale holder's progress
        never overwrites the new holder's)."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) \
                or not math.isfinite(fraction) or not 0 <= fraction <= 1:
            raise InvalidInput(f"fraction must be a number from 0 to 1, got {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise InvalidInput(f"message must be text or None, got {message!r}")
        try:
            value = json.dumps({"fraction": fraction, "message": message and storable(
                message[:_MAX_PROGRESS_TEXT]), "data": data}, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"progress data must be JSON: {exc}") from exc
        if len(value) > _MAX_PROGRESS_BYTES:
            raise InvalidInput(f"progress is {len(value)} bytes of JSON, at most "
                               f"{_MAX_PROGRESS_BYTES}")
        k = self.keys
        stored = await scripts.PROGRESS(
            self.redis, [k.lease(lease.job_id), k.job(lease.job_id), *k.control],
            [lease.job_id, lease.token, value, self.publish, k.progress])
        if not int(stored):
            raise LeaseLost(self.name, lease.job_id, lease.token)

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
        """Renew many leases of the same length in one round trip; ``None`` marks a lost
        one. A renewed lease with a cancel pending comes back with ``cancel_pending``."""
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
            self.redis, [*self.keys.control, *(self.keys.lease(lease.job_id) for lease in leases)],
            [ms, *(lease.token for lease in leases)],
        )
        now = int(reply[0]) / 1000
        secs = ms / 1000
        return [
            replace(lease, lease_timeout=secs, deadline=now + secs, local_deadline=t0 + secs,
                    cancel_pending=int(ok) == 2)
            if int(ok) else None
            for lease, ok in zip(leases, reply[1:], strict=True)
        ]


async def ack_together(
    parts: Sequence[tuple[Settling, Sequence[tuple[Lease, Any]]]],
) -> list[list[bool]]:
    """Ack the leases of one or more queues in one transaction (:meth:`Settling.ack_many`
    of each, as one step); return, per queue and lease, whether it was acked.

    The queues must share one client, and on a cluster there must be one queue: a
    transaction runs on one node, and each queue has its own slot. A worker serving
    several queues through one client acks their jobs together this way, so its
    batches do not split by queue (two round trips per batch, whatever the queues).
    """
    first = parts[0][0]
    if any(q.redis is not first.redis for q, _ in parts) or (
            len(parts) > 1 and is_cluster(first.redis)):
        raise InvalidInput("acks go together only for queues of one client, not on a cluster")
    data = [[encode(q.serializer, result, "result") for _, result in acks]
            for q, acks in parts]
    leases = [[lease for lease, _ in acks] for _, acks in parts]
    # Each queue's lease keys, then its uses_after key, read (and watched) together:
    # once uses_after is set, the ack also releases the jobs waiting for these
    # (resolve.lua, in the MULTI).
    watched: list[str] = []
    for (q, _), held in zip(parts, leases, strict=True):
        watched += [q.keys.lease(lease.job_id) for lease in held]
        watched.append(q.keys.uses_after)
    if len(watched) == len(parts):
        return [[] for _ in parts]
    owned: list[list[int]] = []
    resolving: list[int] = []  # the parts whose MULTI ends with resolve.lua

    def commands(current: list[Any]) -> list[tx.Command] | None:
        # Runs after WATCH and the read: a change after the read aborts the EXEC.
        nonlocal owned, resolving
        owned, resolving = [], []
        at = 0
        for held in leases:
            owned.append([i for i, v in enumerate(current[at:at + len(held)])
                          if v is not None and text(v) == held[i].token])
            at += len(held) + 1
        if not any(owned):
            return None
        crash.point("in_ack")
        out: list[tx.Command] = []
        at = 0
        for p, (q, _) in enumerate(parts):
            mine, at = owned[p], at + len(leases[p]) + 1
            if not mine:
                continue
            out += _ack_commands(q.keys, [(leases[p][i], data[p][i]) for i in mine],
                                 q.publish, q.controls.events)
            if current[at - 1] is not None:
                resolving.append(p)
                out.append(("EVALSHA", scripts.RESOLVE.sha, len(q.keys.control),
                            *q.keys.control, *(leases[p][i].job_id for i in mine)))
        return out

    dropped = 0
    for _ in range(_MAX_WATCH_RETRIES):
        try:
            if await tx.watch_read_exec(first.redis, watched, commands) is not False:
                break
        except NoScriptError:
            # The ack committed; only the release of the jobs waiting for it did not
            # run (the script was not loaded; every resolve of the EXEC met the same
            # script cache): run each alone, loading it first.
            for p in resolving:
                q = parts[p][0]
                await scripts.RESOLVE(q.redis, q.keys.control,
                                      [leases[p][i].job_id for i in owned[p]])
            break
        except CONNECTION_ERRORS:
            # The reply (or the request) was lost with the connection: start again
            # from the WATCH, which finds an ack that committed (its leases gone).
            dropped += 1
            if dropped > _MAX_DROPPED:
                raise
            await anyio.sleep(0.01 * dropped)
    else:
        count = sum(len(held) for held in leases)
        names = ", ".join(repr(q.name) for q, _ in parts)
        raise LeaseqError(
            f"ack of {count} jobs in queue{'s' if len(parts) > 1 else ''} {names} did not "
            f"commit after {_MAX_WATCH_RETRIES} tries: their lease keys kept changing")
    out: list[list[bool]] = []
    for p, (q, _) in enumerate(parts):
        if owned and owned[p]:
            await q._replicated("ack")
        acked = set(owned[p]) if owned else set()
        ok = [i in acked for i in range(len(leases[p]))]
        lost = [i for i in range(len(ok)) if not ok[i]]
        if lost:
            # An ack retried after a lost reply finds its own settlement recorded.
            before = await q._acked_before([leases[p][i] for i in lost])
            for i, was_acked in zip(lost, before, strict=True):
                ok[i] = was_acked
        out.append(ok)
    return out


def _ack_commands(
    k: QueueKeys, acked: Sequence[tuple[Lease, bytes]], publish: str, events: int | None,
) -> list[tx.Command]:
    """The MULTI/EXEC body acking ``acked`` (leases whose keys still hold their tokens,
    with their encoded results)."""
    ids = []
    results: list[Any] = ["" if events is None else events]
    for lease, data in acked:
        ids.append(lease.job_id)
        results += [lease.job_id, data, lease.token, lease.attempt]
    # Each job's result, settled token, finished_at, done_at entry and acked event: one
    # script for the batch (one QUEUED reply to read instead of one per command), sent
    # with its source (without comments: Redis hashes it on every call).
    out: list[tx.Command] = [("EVAL", scripts.RESULTS_SENT, len(ids) + 2, k.done_at,
                              k.stream, *(k.job(i) for i in ids), *results)]
    # The ids are in in_progress: the watched lease keys still hold our tokens, and a
    # lease exists only while its id is in in_progress. So SREM + SADD here is the
    # batched form of SMOVE in_progress done.
    out += [("SREM", k.in_progress, *ids), ("SADD", k.done, *ids),
            ("DEL", *[k.lease(i) for i in ids])]
    # Waiters (Queue.wait) hear of the batch in the step that ends it: one message.
    out.append((publish, k.finished, " ".join(ids)))
    return out + _release_commands(k, [lease for lease, _ in acked])


def _release_commands(k: QueueKeys, leases: Sequence[Lease]) -> list[tx.Command]:
    """What acked leases hold besides their job (lua/_ctl.lua's ctl_unhold and
    ctl_forget, unconditional here: the watched leases prove the holds are theirs)."""
    held = [lease for lease in leases if lease.holds & 1]
    placed = [lease.job_id for lease in leases if lease.holds & 2]
    out: list[tx.Command] = []
    if held:
        out += [("ZREM", k.holds, *(lease.job_id for lease in held)),
                ("ZREM", k.held, *(f"{lease.key}\x1f{lease.job_id}" for lease in held))]
        # A key parked at its concurrency limit is looked at again by the next claim: one
        # ZADD for the batch's keys (a ZADD per key was nearly one command, and one QUEUED
        # reply to read, per job of a drain over 1,000 keys).
        parked: list[str | int] = []
        for key in dict.fromkeys(lease.key for lease in held):
            parked += (0, key)
        out.append(("ZADD", k.parked, "XX", *parked))
        out += [("LPUSH", k.wake, "1"), ("LTRIM", k.wake, 0, 63)]
    if placed:
        out.append(("HDEL", k.placed, *placed))
    return out
