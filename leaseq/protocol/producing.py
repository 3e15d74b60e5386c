"""Producers: enqueue one job or a batch, all or nothing, deduplicated by id."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from redis.exceptions import ResponseError

from ..exceptions import InvalidInput
from . import scripts, validate
from .codec import encode
from .controls import job_fields
from .core import QueueCore
from .validate import AfterPolicy
from .wire import is_cluster, text

__all__ = ["Producing"]

_UNKNOWN = "LEASEQ_UNKNOWN_DEPENDENCY "


class Producing(QueueCore):
    """:meth:`enqueue` and :meth:`enqueue_many` of :class:`~leaseq.Queue`."""

    async def enqueue(
        self,
        task: str,
        payload: Any = None,
        *,
        job_id: str | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        lease_timeout: float | None = None,
        priority: int | None = None,
        key: str | None = None,
        expires_in: float | None = None,
        expires_at: float | None = None,
        after: Iterable[str] | None = None,
        after_policy: AfterPolicy = "dead",
    ) -> str:
        """Add one job and return its id.

        With an explicit ``job_id`` that the queue already holds (waiting, delayed, in
        flight, done and retained, or dead) nothing is written and the id is returned:
        enqueue is idempotent per id. ``delay`` defers the job by that many seconds;
        ``max_attempts`` and ``lease_timeout`` override the queue's defaults for this job.

        On a fifo queue, ``priority`` (-1000 to 1000, higher first; default 0) orders the
        job before lower ones of its key, and ``key`` (any text) is its fair-queueing
        key: keys take turns, so one with a million waiting jobs cannot starve one with
        a single job, and ``key_concurrency`` and ``key_rate`` apply per key. Either on a
        set queue is :class:`InvalidInput`.

        ``expires_in`` (seconds from now) or ``expires_at`` (Unix seconds, Redis's
        clock) is a start deadline: a job not started by then is never run; it ends
        dead with the reason "expired before start", counted in
        :attr:`QueueStats.expired`.

        ``after`` (ids of jobs of this queue) keeps the job ``blocked`` until every one
        of them is done; the last one's ack makes it claimable in the same step. If one
        of them ends dead or cancelled (or is deleted), the job ends dead with a reason
        naming it, without running; with ``after_policy="always"`` it runs anyway once
        they have all ended. An id that is no job of this queue (one of another queue,
        or a done job trimmed since) is :class:`InvalidInput`, and nothing is written.
        ``after`` cannot be combined with ``delay`` or a start deadline.
        """
        ids = await self._enqueue(
            task, [payload], None if job_id is None else [job_id], delay, max_attempts,
            lease_timeout, (priority, key, expires_in, expires_at), after, after_policy,
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
        priority: int | None = None,
        key: str | None = None,
        expires_in: float | None = None,
        expires_at: float | None = None,
        after: Iterable[str] | None = None,
        after_policy: AfterPolicy = "dead",
    ) -> list[str]:
        """Add many jobs of one task in one round trip; return their ids in order.

        Every payload is serialised (and rejected on error) before anything is written.
        ``job_ids``, when given, must have one id per payload; known ids are skipped
        as in :meth:`enqueue`, which also describes ``priority``, ``key``, the start
        deadline and ``after`` (the same for every job of the batch: a map's reduce is
        one job enqueued ``after=`` the map's ids).

        All or nothing: the batch is one script call, which Redis runs whole or refuses
        whole (at ``maxmemory`` it is refused before its first write; once started it
        finishes even past the limit). The cost is that the server runs the whole batch
        at once, about 4 µs per job (7 on a fifo queue), while other clients wait:
        split batches of more than ~100,000 jobs into several calls (each then all or
        nothing on its own).
        """
        return await self._enqueue(task, list(payloads), job_ids, delay, max_attempts,
                                   lease_timeout, (priority, key, expires_in, expires_at),
                                   after, after_policy)

    async def _enqueue(
        self,
        task: str,
        payloads: list[Any],
        job_ids: Sequence[str] | None,
        delay: float | None,
        max_attempts: int | None,
        lease_timeout: float | None,
        placing: tuple[int | None, str | None, float | None, float | None],
        after: Iterable[str] | None = None,
        after_policy: AfterPolicy = "dead",
    ) -> list[str]:
        validate.task_name(task)
        deps = validate.dependencies(after, after_policy, delay, placing[2], placing[3])
        delay_ms = validate.optional_millis(delay, "delay")
        attempts = self.max_attempts if max_attempts is None else validate.positive_int(
            max_attempts, "max_attempts")
        lease_ms: int | str = "" if lease_timeout is None else validate.millis(
            lease_timeout, "lease_timeout")
        if job_ids is None:
            # 128 random bits per id, as 32 hex digits, drawn in one call: 0.3 µs an id
            # in a batch of 10,000 where a uuid4 each took 3.6.
            pool = os.urandom(16 * len(payloads)).hex()
            ids = [pool[i:i + 32] for i in range(0, len(pool), 32)]
        else:
            ids = [validate.job_id(j) for j in job_ids]
            if len(ids) != len(payloads):
                raise InvalidInput(
                    f"{len(ids)} job ids for {len(payloads)} payloads")
            if deps and not set(ids).isdisjoint(deps):
                raise InvalidInput("a job cannot be enqueued after itself")
        data = [encode(self.serializer, p, "payload") for p in payloads]
        place = job_fields(True, *placing)  # the values first, then the ordering
        if not ids:
            return ids
        if (placing[0] is not None or placing[1] is not None) and not self.controls.fifo:
            # Read, not prepare(): a refused enqueue writes nothing, not even the
            # queue's registry entry.
            stored = await self.redis.hget(self.keys.settings, "ordering")
            if stored is None or text(stored) != "fifo":
                job_fields(False, *placing)
        await self.prepare()
        k = self.keys
        # One script call for the whole batch: Redis runs it all or refuses it whole (a
        # server at maxmemory refuses the call before its first write), so a caller never
        # has to guess which generated ids went in.
        keys = [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.wake, *k.control]
        if is_cluster(self.redis):
            keys += [k.job(i) for i in ids]
        if self.tracer is None:
            await self._send_enqueue(keys, job_ids is None, "", ids, task, data, attempts,
                                     delay_ms, lease_ms, place, deps, after_policy)
        else:
            with self.tracer.enqueued(self.name, task, len(ids)) as trace:
                await self._send_enqueue(keys, job_ids is None, trace, ids, task, data,
                                         attempts, delay_ms, lease_ms, place, deps,
                                         after_policy)
        return ids

    async def _send_enqueue(
        self, keys: list[str], fresh: bool, trace: str, ids: list[str], task: str,
        data: list[bytes], attempts: int, delay_ms: int, lease_ms: int | str,
        place: tuple[str, str, str], deps: list[str], after_policy: AfterPolicy,
    ) -> None:
        prefix = "" if is_cluster(self.redis) else self.keys.prefix
        args: list[scripts.ArgT] = ["1" if fresh else "0", trace, prefix, task, attempts,
                                    delay_ms, lease_ms, *place,
                                    after_policy[0] if deps else "", len(deps), *deps]
        for job, payload in zip(ids, data, strict=True):
            args += (job, payload)
        try:
            await scripts.ENQUEUE(self.redis, keys, args)
        except ResponseError as exc:
            if not str(exc).startswith(_UNKNOWN):
                raise
            raise InvalidInput(
                f"job {str(exc)[len(_UNKNOWN):]!r} is not a job of queue {self.name!r}: a "
                "job can only wait for jobs of its own queue (one slot on a cluster) that "
                "are still kept") from None
        await self._replicated("enqueue")
