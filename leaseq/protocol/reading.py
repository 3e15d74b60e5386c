"""Read-only views and dead-job administration of a queue, and waiting for results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..exceptions import InvalidInput
from ..models import JobInfo, JobState, QueueEvent, QueueStats, ScheduleInfo, WorkerInfo
from . import admin, scripts, taskstats, validate
from .core import QueueCore
from .lifecycle import read_events
from .presence import live_workers
from .scheduling import read_schedules
from .views import read_jobs
from .wait import wait_all
from .wire import (
    text,
)

__all__ = ["Reading"]


class Reading(QueueCore):
    """The views of :class:`~leaseq.Queue`: counts, jobs, pages by state, per-task
    statistics, live workers, dead jobs and their requeue or purge, and :meth:`wait`."""

    async def stats(self) -> QueueStats:
        """Sizes of the queue's sets, the jobs acked in the last minute (by Redis's
        clock) and the state of its controls (pause, limits, keys), read atomically in
        one round trip."""
        k = self.keys
        reply = await scripts.STATS(
            self.redis,
            [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.done_at, k.meta,
             *k.control], [])
        todos, in_progress, done, dead, delayed, recent = (int(c) for c in reply[:6])
        epoch = reply[6]
        holding, held, active, parked, expired, cancelled, blocked = (
            int(c) for c in reply[9:16])
        return QueueStats(todos=todos, in_progress=in_progress, done=done, dead=dead,
                          delayed=delayed, done_last_minute=recent,
                          epoch=None if epoch is None else text(epoch),
                          paused=int(reply[7]) == 1, ordering=text(reply[8]),
                          holding=holding, waiting_on_limits=held, keys_waiting=active,
                          keys_parked=parked, expired=expired, cancelled=cancelled,
                          blocked=blocked)

    def events(self, since: str = "$", *, block: float | None = 5.0
               ) -> AsyncIterator[QueueEvent]:
        """The queue's lifecycle events (enqueued, started, progress, acked, failed,
        retried, released, dead, cancel_requested, cancelled, lease_expired) as an async
        iterator, read from the queue's stream: only when the queue keeps one
        (``Queue(events=N)``: the stream is kept at about N events, and writing them costs
        each job a few commands, so it is off by default).

        ``since``: ``"$"`` (events from now on), ``"0"`` (the oldest kept) or an event's
        ``id`` (the events after it: resume where a reader stopped). ``block``: seconds
        each read waits for new events (the iterator goes on until the caller stops);
        ``None``: return once the kept events are read."""
        return read_events(self, since, block)

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
        first) are read by position, ``limit`` at a time; ``todo``, ``in_progress``,
        ``dead``, ``cancelled`` and ``blocked`` one ``SSCAN`` step of ``COUNT limit`` at a time (no
        order; ``COUNT`` is a hint, so such a page may hold a few more than ``limit`` or
        none while more follow, and a job may appear on two pages while the set changes;
        every job present throughout appears). ``task`` keeps
        only that task's jobs, so a page may hold fewer than ``limit`` (and still have a
        next one)."""
        if state not in ("todo", "in_progress", "done", "dead", "delayed", "cancelled",
                         "blocked"):
            raise InvalidInput(f"state must be todo, in_progress, done, dead, delayed, "
                               f"cancelled or blocked, got {state!r}")
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

    async def schedules(self) -> list[ScheduleInfo]:
        """The periodic schedules declared for this queue (by any scheduler, at most
        1,000, by name): timing, next tick, last job and its state, what was skipped,
        and whether it is stale (no scheduler declared it for a minute: it no longer
        runs)."""
        return await read_schedules(self)

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

    async def purge_cancelled(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete cancelled jobs (the given ids, or all when ``None``) for good; return
        how many. Ids that are not cancelled are left alone."""
        ids = None if job_ids is None else [validate.job_id(j) for j in job_ids]
        return await admin.purge_dead(self, ids, "cancelled")

    async def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait until the job is done and return its result.

        Raises :class:`JobDead` with the recorded reason if it ends in ``dead``,
        :class:`JobNotFound` if the queue does not know the id (never enqueued, or done
        and forgotten by the retention before a poll saw it), :class:`JobCancelled` if it
        was cancelled, and :class:`WaitTimeout` after ``timeout`` seconds. The job is
        looked at once whatever the timeout (that look may take up to a second more
        than a shorter timeout), so ``timeout=0`` returns the result of a job that is
        done and raises :class:`JobNotFound` for an unknown id.

        Does not poll: the step that ends a job publishes its id on the queue's
        ``finished`` channel, and one subscription per queue object wakes every waiter of
        the process (their reads coalesced: ten thousand concurrent waits cost a few
        round trips). A slow check every 5 s covers a lost message.
        """
        validate.job_id(job_id)
        (result,) = await wait_all(self, [job_id], timeout)
        return result
