"""The reaper: returns jobs with expired leases, promotes due delayed jobs, trims done."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import structlog
from anyio.abc import TaskStatus

from ..exceptions import InvalidInput
from ..protocol import scripts, validate
from ..protocol.queue import Queue
from ..protocol.wire import is_cluster, redis_failure, text
from .metrics import Metrics
from .outage import Outage

__all__ = ["Reaper", "SweepReport"]

log = structlog.get_logger(__name__)

EVENTS_KEPT = 200
"""Lease-expiry events each queue keeps in its ``events`` list (newest first)."""


async def _trim(q: Queue, age_ms: int, count: int, batch: int) -> tuple[int, int]:
    """One trim.lua call: (forgotten, examined). On a cluster the batch's candidates are
    read first, so the script can declare every key it touches (see trim.lua)."""
    k = q.keys
    if not is_cluster(q.redis):
        reply = await scripts.TRIM(q.redis, [k.done, k.done_at, k.reply()],
                                   [k.prefix, age_ms, count, batch])
    else:
        ids = [text(i) for i in await q.redis.zrange(k.done_at, 0, batch - 1)]
        reply = await scripts.TRIM(q.redis, [k.done, k.done_at, *(k.job(i) for i in ids),
                                             k.reply()],
                                   ["", age_ms, count, batch, *ids])
    return int(reply[0]), int(reply[1])


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one :meth:`Reaper.sweep_report` pass did."""

    requeued: int
    """Jobs whose lease had expired, put back to ``todos``."""
    dead: int
    """Jobs whose lease had expired with no attempts left, moved to ``dead``."""
    repaired: int
    """Lease keys found without an expiry and given one."""
    promoted: int
    """Delayed jobs that were due and moved to ``todos``."""
    trimmed: int
    """Done jobs forgotten under the retention settings."""
    expired: int
    """Waiting or delayed jobs whose start deadline passed, moved to ``dead``."""
    cancelled: int
    """Jobs whose lease expired with a cancel bound to it, moved to ``cancelled``."""
    seconds: float
    """Wall time of the pass."""
    longest_call: float
    """The longest single Redis call of the pass, in seconds (client-side)."""


class _Stopwatch:
    """Keeps the longest duration of the calls it timed."""

    def __init__(self) -> None:
        self.longest = 0.0

    @contextmanager
    def call(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.longest = max(self.longest, time.perf_counter() - start)


class Reaper:
    """Sweeps one or more queues: the recovery half of the lease protocol.

    Safe to run anywhere and many times at once (a sidecar, or embedded in each worker):
    every move is a script that re-checks its condition atomically, so two reapers never
    requeue one job twice. Cost per sweep grows with ``in_progress`` only, scanned with
    ``SSCAN`` in batches of ``batch`` ids; the sizes of ``todos`` and ``done`` do not matter.
    ``metrics`` (a :class:`~leaseq.metrics.Metrics`) counts what the sweeps did.
    """

    def __init__(
        self, *queues: Queue, interval: float = 1.0, batch: int = 256,
        metrics: Metrics | None = None,
    ) -> None:
        if not queues:
            raise InvalidInput("Reaper needs at least one queue")
        for q in queues:
            if not isinstance(q, Queue):
                raise InvalidInput(f"Reaper takes Queue objects, got {q!r}")
        self.queues = queues
        self.interval = validate.seconds(interval, "interval", allow_zero=False)
        self.batch = validate.positive_int(batch, "batch")
        self.metrics = metrics
        self.outage = Outage("reaper", queues=[q.name for q in queues])
        self.data_losses = 0
        """How many times a sweep found a queue's epoch marker changed or gone."""

    async def sweep(self) -> int:
        """One pass over every queue; return the number of expired leases handled
        (jobs requeued, moved to ``dead``, or to ``cancelled`` when a cancel was bound
        to the lease)."""
        report = await self.sweep_report()
        return report.requeued + report.dead + report.cancelled

    async def sweep_report(self) -> SweepReport:
        """One pass over every queue, with the details of what it did."""
        start = time.perf_counter()
        totals = [0] * 7
        longest = 0.0
        error: BaseException | None = None
        for q in self.queues:
            try:  # one queue's failure must not keep the others from being swept
                counts, worst = await self._sweep_queue(q)
            except Exception as exc:
                if not redis_failure(exc):
                    raise
                error = error or exc
                continue
            totals = [a + b for a, b in zip(totals, counts, strict=True)]
            longest = max(longest, worst)
        if error is not None:
            raise error
        requeued, dead, repaired, promoted, trimmed, expired, cancelled = totals
        return SweepReport(requeued=requeued, dead=dead, repaired=repaired, promoted=promoted,
                           trimmed=trimmed, expired=expired, cancelled=cancelled,
                           seconds=time.perf_counter() - start, longest_call=longest)

    async def _check_epoch(self, q: Queue) -> None:
        """Say loudly when the server lost the queue's data (restart without persistence,
        FLUSHALL, failover to an empty replica): its epoch marker changed or vanished."""
        await q.prepare()
        await q.refresh_settings()
        found = await q.redis.hget(q.keys.meta, "epoch")
        if found is not None and text(found) == q.epoch:
            return
        log.error("redis_data_lost", queue=q.name, expected_epoch=q.epoch,
                  found_epoch=None if found is None else text(found),
                  detail="the server lost this queue's data; jobs enqueued before may be "
                         "gone; check the server's persistence (leaseq doctor)")
        self.data_losses += 1
        if self.metrics is not None:
            self.metrics.data_lost.labels(q.name).inc()
        q.forget_server_state()
        await q.prepare()

    async def _sweep_queue(self, q: Queue) -> tuple[list[int], float]:
        await self._check_epoch(q)
        watch = _Stopwatch()
        # requeued, dead, repaired, promoted, trimmed, expired, cancelled
        counts = [0] * 7
        error: BaseException | None = None
        # Each step on its own: one that fails (a corrupt job, a refusal) must not keep
        # the others from running. Trim goes before promote: at maxmemory it is the step
        # that frees memory, and Redis lets it run (its first write is a ZREM).
        for step in (self._reap, self._trim, self._promote, self._expire):
            try:
                await step(q, watch, counts)
            except Exception as exc:
                if not redis_failure(exc):
                    raise
                error = error or exc
        requeued, dead, repaired, _, _, expired, cancelled = counts
        if self.metrics is not None:
            for outcome, n in (("requeued", requeued), ("dead", dead), ("repaired", repaired),
                               ("cancelled", cancelled)):
                self.metrics.reaped.labels(q.name, outcome).inc(n)
        if expired:
            log.info("job_expired", queue=q.name, jobs=expired,
                     reason="expired before start")
        if requeued or dead or repaired or cancelled:
            log.info("job_reaped", queue=q.name, requeued=requeued, dead=dead,
                     repaired=repaired, cancelled=cancelled)
        if error is not None:
            raise error
        return counts, watch.longest

    async def _reap(self, q: Queue, watch: _Stopwatch, counts: list[int]) -> None:
        k = q.keys
        cursor: int = 0
        while True:
            with watch.call():
                cursor, raw_ids = await q.redis.sscan(k.in_progress, cursor, count=self.batch)
            ids = [text(i) for i in raw_ids]
            if ids:
                keys = [k.in_progress, k.todos, k.dead, k.wake, k.events, *k.control,
                        *(k.lease(i) for i in ids), *(k.job(i) for i in ids), k.reply()]
                with watch.call():
                    reply = await scripts.REAP(q.redis, keys,
                                               [q.lease_ms, EVENTS_KEPT, *ids])
                counts[0] += int(reply[0])
                counts[1] += int(reply[1])
                counts[2] += int(reply[2])
                counts[6] += int(reply[3])
                for job_id in reply[4:]:
                    log.warning("job_dead", queue=q.name, job_id=text(job_id),
                                reason="lease expired with no attempts left")
            if int(cursor) == 0:
                return

    async def _promote(self, q: Queue, watch: _Stopwatch, counts: list[int]) -> None:
        k = q.keys
        while True:
            with watch.call():
                n = int(await scripts.PROMOTE(
                    q.redis, [k.delayed, k.todos, k.wake, k.meta, *k.control, k.reply()],
                    [self.batch]))
            counts[3] += n
            if n < self.batch:
                return

    async def _expire(self, q: Queue, watch: _Stopwatch, counts: list[int]) -> None:
        """Jobs whose start deadline passed while they waited end dead (expire.lua)."""
        k = q.keys
        while True:
            # Deadlines are Redis ms; the local clock only picks candidates (a minute
            # ahead, for skew): the script checks each against Redis time.
            horizon = int(time.time() * 1000) + 60_000
            with watch.call():
                raw = await q.redis.zrangebyscore(k.deadlines, "-inf", horizon, 0, self.batch)
            ids = [text(i) for i in raw]
            if not ids:
                return
            with watch.call():
                expired, unmet = (int(n) for n in await scripts.EXPIRE(
                    q.redis, [k.todos, k.delayed, k.dead, *k.control,
                              *(k.job(i) for i in ids), k.reply()], ids))
            counts[5] += expired
            if unmet:
                log.info("job_dead", queue=q.name, jobs=unmet,
                         reason="a job they were enqueued after did not succeed")
            if expired + unmet < len(ids) or len(ids) < self.batch:
                return

    async def _trim(self, q: Queue, watch: _Stopwatch, counts: list[int]) -> None:
        if q.done_ttl is None and q.done_max is None:
            return
        age = -1 if q.done_ttl is None else math.ceil(q.done_ttl * 1000)
        count = -1 if q.done_max is None else q.done_max
        while True:
            with watch.call():
                forgotten, examined = await _trim(q, age, count, self.batch)
            counts[4] += int(forgotten)
            if int(examined) < self.batch:
                return

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sweep every ``interval`` seconds until cancelled.

        Redis errors (a lost connection, a refusal such as OOM or BUSY) are retried with a
        backoff (up to 30 s) and logged once per episode (``redis_unavailable``, then
        ``redis_recovered``); the reaper never dies of them. Reports ready through
        ``task_status`` after the first sweep attempt, for
        ``await task_group.start(reaper.run)``.
        """
        backoff = self.interval
        started = False
        log.info("reaper_started", queues=[q.name for q in self.queues],
                 interval=self.interval)
        while True:
            try:
                await self.sweep_report()
                backoff = self.interval
                self.outage.ok()
            except Exception as exc:
                if not redis_failure(exc):
                    raise
                # Any Redis error, refusals included: the reaper must outlive them all.
                self.outage.failed(exc, retry_in=backoff)
                backoff = min(backoff * 2, 30.0)
            if not started:
                started = True
                task_status.started()
            await anyio.sleep(backoff)
