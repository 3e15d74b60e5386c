"""The worker: claims jobs into free slots, runs their handlers, shuts down gracefully."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from .._version import VERSION
from ..exceptions import InvalidInput, LeaseLost, LeaseqError
from ..models import Lease
from ..protocol import crash, validate
from ..protocol.queue import Queue
from ..protocol.schedule import Schedule
from ..protocol.wire import error_text, redis_failure
from .acks import AckBatcher, ack_batchers
from .cancels import listen_for_cancels
from .claims import Claims
from .handoff import Handoff
from .heartbeat import Heartbeat
from .job import RELEASE_TIMEOUT, RunnerScope, RunTracer, finish_stopped, job_logger, run_job
from .metrics import Metrics
from .outage import Outage
from .policy import Policy, Priority
from .presence import Presence
from .reaper import Reaper
from .scheduler import Scheduler
from .served import (
    DEFAULT_CONCURRENCY,
    REDIS_SLOTS,
    Served,
    check_pool,
    default_concurrency,
    routes_of,
)
from .task import Backoff, Lifespan, Middleware
from .taskstats import TaskStats
from .typed import HandlerSpec
from .wake import wait_for_work

__all__ = ["DEFAULT_CONCURRENCY", "Worker"]

log = structlog.get_logger(__name__)

_MAX_CLAIM_BATCH = 100
# A claim takes at most two fifths of the slots (at least _MIN_CLAIM_BATCH): with every
# slot in one claim, the worker runs that claim's handlers and then waits for the next
# claim's reply with nothing to do. Smaller claims keep one on its way while the jobs of
# the last ones run (no-op drain, one worker: about +20 % at concurrency 50 and 100, +10 %
# at 200; a third did as well at 200, less at 50 and 100); below 16 per claim its fixed
# cost outweighs the overlap.
_MIN_CLAIM_BATCH = 16
# Waits shorter than this for a rate limit's next start are slept locally: Redis resolves a
# blocking timeout only at its hz tick (100 ms at the default hz 10).
_SHORT_WAIT = 0.25


class Worker:
    """Runs the handlers of one queue — or of several — with at most ``concurrency``
    jobs at once (default :data:`DEFAULT_CONCURRENCY`, 100, or fewer to fit a client's
    connection pool: 79 on redis-py's default pool, see
    :func:`~leaseq.runtime.served.default_concurrency`; or ``sync_concurrency`` when
    every handler is a plain ``def``: a job claimed to wait for a thread would only hold
    its lease from other workers).

    ``Worker(queue, handlers)`` serves one queue; ``handlers`` maps task names to
    ``async def handler(ctx, payload)`` functions or to :class:`~leaseq.Task` values with
    options of their own. ``Worker({high: handlers, low: handlers}, policy=...)`` serves
    several, each with its own handlers (and its own lease length and attempts, from its
    :class:`~leaseq.Queue`); ``policy`` shares the slots between them:
    :class:`~leaseq.Priority` (the default: in the given order) or
    :class:`~leaseq.Weighted`.

    ``reaper=True`` runs a :class:`~leaseq.Reaper` for the served queues inside the
    worker (safe with many workers). ``job_timeout`` bounds every run (``None``: no
    limit); ``backoff`` spaces retries of failed jobs; ``grace_period`` is how long a
    graceful stop lets running handlers finish before it cancels them and releases their
    leases. ``poll_interval`` bounds how long an idle worker blocks on the wake-up lists
    before it looks again (delayed jobs, lost wake-ups). ``metrics`` (a
    :class:`~leaseq.runtime.metrics.Metrics`) receives the worker's counters. Every
    ``presence_interval`` seconds the worker renews its entry in each queue's list of
    live workers (:meth:`~leaseq.Queue.workers`, ``leaseq workers``); the entry expires
    after five intervals, so a worker that died disappears from the list by then.
    ``schedules`` (:class:`~leaseq.Cron`, :class:`~leaseq.Every`) are fired into the
    (first) served queue by a :class:`~leaseq.Scheduler` inside the worker; any number
    of workers may run the same schedules, each tick is enqueued once.

    ``lifespan(worker)`` returns an async context manager entered before the first claim
    and exited after the drain; what it yields is every handler's ``ctx.state``. If it
    fails to start, :meth:`run` raises :class:`~leaseq.LeaseqError` and no job is
    claimed. ``middleware`` wraps each job's handler (see :data:`~leaseq.Middleware`).
    Plain ``def`` handlers run in threads, ``sync_concurrency`` at once (one abandoned
    after a timeout or a lost lease runs on outside that bound until it returns).
    ``tracer`` (a :class:`leaseq.otel.Tracing`) traces each run and settlement.
    """

    def __init__(
        self,
        queue: Queue | Mapping[Queue, Mapping[str, HandlerSpec]],
        handlers: Mapping[str, HandlerSpec] | None = None,
        *,
        policy: Policy | None = None,
        concurrency: int | None = None,
        reaper: bool = True,
        reaper_interval: float = 1.0,
        job_timeout: float | None = None,
        backoff: Backoff | None = None,
        grace_period: float = 30.0,
        poll_interval: float = 1.0,
        heartbeat_fraction: float = 1 / 3,
        metrics: Metrics | None = None,
        presence_interval: float = 2.0,
        schedules: Sequence[Schedule] = (),
        lifespan: Lifespan | None = None,
        middleware: Sequence[Middleware] = (),
        sync_concurrency: int = 10,
        tracer: RunTracer | None = None,
    ) -> None:
        routes = routes_of(queue, handlers)
        acks = ack_batchers(list(routes))
        self.served = {q.name: Served(q, h, acks[q.name]) for q, h in routes.items()}
        self.queues = [s.queue for s in self.served.values()]
        self.queue = self.queues[0]
        """The (first) served queue."""
        self.tasks = self.served[self.queue.name].tasks
        """The handlers of the (first) served queue."""
        self.policy: Policy = policy if policy is not None else Priority()
        self._names = list(self.served)
        if concurrency is None:
            every_sync = all(t.sync for served in self.served.values()
                             for t in served.tasks.values())
            concurrency = (sync_concurrency if every_sync
                           else default_concurrency(self.queues))
        self.concurrency = validate.positive_int(concurrency, "concurrency")
        self._claim_batch = min(_MAX_CLAIM_BATCH,
                                max(_MIN_CLAIM_BATCH, 2 * self.concurrency // 5))
        self.metrics = metrics
        self.reaper = (Reaper(*self.queues, interval=reaper_interval, metrics=metrics)
                       if reaper else None)
        self.job_timeout = (None if job_timeout is None
                            else validate.seconds(job_timeout, "job_timeout", allow_zero=False))
        self.backoff = backoff if backoff is not None else Backoff()
        self.grace_period = validate.seconds(grace_period, "grace_period", allow_zero=True)
        self.poll_interval = validate.seconds(poll_interval, "poll_interval", allow_zero=False)
        if not 0 < heartbeat_fraction < 1:
            raise InvalidInput(f"heartbeat_fraction must be in (0, 1), got {heartbeat_fraction}")
        self.heartbeat_fraction = heartbeat_fraction
        self._counts: Counter[str] = Counter()
        self._limiter = anyio.CapacityLimiter(self.concurrency)
        self._acking = 0  # jobs whose handler returned and whose slot went to the next claim
        # The worker's own per-job Redis calls (heartbeats, fails, releases) share a few
        # connections, so a thousand running jobs do not need a thousand connections.
        self.redis_slots = anyio.CapacityLimiter(REDIS_SLOTS)
        for q in self.queues:
            check_pool(q, self.concurrency)
        self._running = False
        self._stop_requested = False
        self._claim_scope: anyio.CancelScope | None = None
        self._claim_shield: anyio.CancelScope | None = None
        # Set by stop(): ends a claim's wait for work (made per run, in the event loop).
        self._interrupt: anyio.Event | None = None
        self._stop_at: float | None = None
        self._cleanup_by = math.inf
        self.outages = {name: Outage(name, queue=",".join(self._names))
                        for name in ("claim", "settle", "release", "wait")}
        """One :class:`~leaseq.runtime.outage.Outage` per part of the worker that calls Redis (the
        ack batchers and the heartbeat have their own): failures are logged once per
        episode."""
        self._drain_scope: anyio.CancelScope | None = None
        self._job_finished: anyio.Event | None = None
        self._finished = 0
        self._in_flight = 0
        self._claims = Claims(self.served, self.policy)
        self.heartbeat = Heartbeat(heartbeat_fraction)
        if lifespan is not None and not callable(lifespan):
            raise InvalidInput(f"lifespan must be a callable that takes the worker and "
                               f"returns an async context manager, got {lifespan!r}")
        self.lifespan = lifespan
        self.state: Any = None
        """What the lifespan yielded, while the worker runs (``ctx.state``)."""
        self.middleware = list(middleware)
        for m in self.middleware:
            if not callable(m):
                raise InvalidInput(f"middleware must be callables that take the job's "
                                   f"context, got {m!r}")
        self.tracer = tracer
        """Traces each run and settlement (see :class:`leaseq.otel.Tracing`)."""
        self.sync_limiter = anyio.CapacityLimiter(
            validate.positive_int(sync_concurrency, "sync_concurrency"))
        self.job_log: Any = job_logger()
        """The logger of each job's lines, resolved again at every :meth:`run`."""
        self.scheduler = Scheduler(self.queue, schedules) if schedules else None
        """The worker's :class:`~leaseq.Scheduler`, when it was given schedules."""
        self.presence = Presence(
            self.queues, self._describe,
            validate.seconds(presence_interval, "presence_interval", allow_zero=False))
        """Keeps this worker in the queues' lists of live workers (:meth:`Queue.workers`)."""
        self._started_at = time.time()
        self.taskstats = TaskStats(self.queues)
        self.presence.leave_by = self.taskstats.flush_by = lambda: self._cleanup_by
        """Per-task outcomes and run times, flushed to Redis every few seconds
        (:meth:`Queue.task_stats`, ``leaseq stats --by-task``)."""
        if metrics is not None:
            metrics.in_flight.labels(",".join(self._names)).set_function(
                lambda: self.in_flight)

    # -- public control -------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """Jobs this worker has claimed, acked, failed (and retried), sent to dead, lost
        (lease expired or re-claimed) and released, since it was created."""
        return {name: self._counts[name] for name in
                ("claimed", "acked", "failed", "dead", "lease_lost", "released",
                 "cancelled")}

    @property
    def in_flight(self) -> int:
        """Jobs running (or settling) right now; slots the claim loop holds for a claim in
        progress do not count. Up to twice ``concurrency`` for an instant: a job whose ack
        is on its way has handed its slot to the next claim."""
        return self._in_flight

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (the worker claims nothing more)."""
        return self._stop_requested

    def _stopping(self) -> bool:
        # A call, not an attribute read, so type checkers do not assume it cannot change
        # across an await.
        return self._stop_requested

    def _describe(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "queues": self._names,
                "concurrency": self.concurrency, "in_flight": self.in_flight,
                "started_at": self._started_at, "version": VERSION,
                "counters": self.counters}

    def count(self, event: str, queue: str, task: str | None = None) -> None:
        """Add one to a counter of ``queue`` (used by the job runner); with ``task``, an
        outcome (acked, failed, dead) also goes to the per-task statistics."""
        self._counts[event] += 1
        if self.metrics is not None:
            self.metrics.jobs.labels(queue, event).inc()
        if task is not None:
            self.taskstats.outcome(queue, task, event)

    def observe(self, task: str, seconds: float, queue: str) -> None:
        """Record a handler's run time on ``queue`` (used by the job runner)."""
        self.taskstats.duration(queue, task, seconds)
        if self.metrics is not None:
            self.metrics.duration.labels(queue, task).observe(seconds)

    def stop(self) -> None:
        """Stop gracefully: claim nothing more, let running handlers finish within the
        grace period, then cancel the rest and release their leases. Returns at once;
        :meth:`run` returns when the worker has stopped."""
        if not self._stop_requested:
            self._stop_requested = True
            log.info("worker_stopping", queue=self.queue.name, in_flight=self.in_flight,
                     grace_period=self.grace_period)
            if self._running:
                # The whole stop fits in grace period + RELEASE_TIMEOUT from now, whatever
                # Redis does: a claim in flight, releases, acks, the last presence and
                # statistics writes all end by then (leases left behind expire).
                self._stop_at = anyio.current_time()
                self._cleanup_by = min(self._cleanup_by,
                                       self._stop_at + self.grace_period + RELEASE_TIMEOUT)
        if self._claim_scope is not None:
            self._claim_scope.cancel()
        if self._interrupt is not None:
            self._interrupt.set()  # a claim waiting for work returns at once
        if self._claim_shield is not None:
            self._claim_shield.deadline = min(
                self._claim_shield.deadline, anyio.current_time() + RELEASE_TIMEOUT,
                self._cleanup_by)

    def on_signal(self, signum: int) -> None:
        """Act on SIGTERM or SIGINT as :meth:`run` does by itself: the first stops
        gracefully (:meth:`stop`), a second at once (:meth:`kill`). For an application
        that owns its signals (``run(handle_signals=False)``) and passes them on."""
        name = signal.Signals(signum).name
        if not self._stop_requested:
            log.info("signal_received", signal=name, action="graceful stop")
            self.stop()
        else:
            log.warning("signal_received", signal=name, action="immediate stop")
            self.kill()

    def kill(self) -> None:
        """Stop now: cancel running handlers at once (their leases are still released,
        each within a few seconds at most)."""
        self.stop()
        if self._running:
            self._cleanup_by = min(self._cleanup_by, anyio.current_time() + RELEASE_TIMEOUT)
        if self._drain_scope is not None:
            self._drain_scope.cancel()

    @property
    def cleanup_by(self) -> float:
        """When (anyio's clock) a stopping worker's clean-up must be over: releases and
        acks still waiting on Redis then are given up (``inf`` while not stopping)."""
        return self._cleanup_by

    # -- main loop ------------------------------------------------------------------------

    async def run(
        self,
        *,
        burst: bool = False,
        handle_signals: bool = True,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until stopped (:meth:`stop`, SIGTERM or SIGINT; a second signal kills).

        ``burst=True`` returns instead once no job is waiting and none is running (jobs
        delayed for later are left for another run). ``handle_signals=False`` leaves
        signals to the embedding application. Reports ready through ``task_status``.
        """
        if self._running:
            raise LeaseqError("this worker is already running")
        self._running = True
        self._stop_requested = False
        self._stop_at = None
        self._cleanup_by = math.inf
        self.job_log = job_logger()  # the logging configured by now
        self._interrupt = anyio.Event()
        # Claimed leases go to long-lived runner tasks: no task per job.
        handoff = Handoff[tuple[Lease, object]]()
        try:
            async with AsyncExitStack() as lived:
                if self.lifespan is not None:
                    self.state = await self._start_lifespan(lived)
                async with anyio.create_task_group() as root:
                    await self._start_services(root, handle_signals)
                    with anyio.CancelScope() as drain:
                        self._drain_scope = drain
                        async with anyio.create_task_group() as runners:
                            for _ in range(2 * self.concurrency):
                                runners.start_soon(self._runner, handoff)
                            log.info("worker_started", queue=",".join(self._names),
                                     concurrency=self.concurrency,
                                     event_loop=_loop_name(),
                                     tasks=sorted({t for s in self.served.values()
                                                   for t in s.tasks}))
                            task_status.started()
                            try:
                                await self._claim_loop(handoff, burst)
                            finally:
                                handoff.close()
                            # Running handlers get the grace period; then the scope cancels
                            # them and each releases its lease on the way out.
                            # (counted from the stop: a claim that met a frozen Redis used
                            # part of it already).
                            drain.deadline = (self._stop_at if self._stop_at is not None
                                              else anyio.current_time()) + self.grace_period
                    await self._clean_up(drain.deadline, handoff)
                    root.cancel_scope.cancel()
        finally:
            handoff.close()  # already closed unless the lifespan failed to start
            self._running = False
            self.state = None
            self._drain_scope = self._claim_scope = self._claim_shield = None
            self._interrupt = None
            log.info("worker_stopped", queue=",".join(self._names), **self.counters)

    async def _start_lifespan(self, lived: AsyncExitStack) -> Any:
        """Enter the lifespan (exited with ``lived``, after the drain); one that fails
        stops the worker before anything is claimed."""
        assert self.lifespan is not None
        try:
            return await lived.enter_async_context(self.lifespan(self))
        except Exception as exc:
            log.error("lifespan_failed", queue=",".join(self._names), error=error_text(exc))
            raise LeaseqError(f"the worker's lifespan failed to start: {error_text(exc)}"
                              ) from exc

    async def _start_services(self, root: anyio.abc.TaskGroup, handle_signals: bool) -> None:
        """Start what runs beside the claim loop: signals, the reaper, the ack batchers,
        heartbeats, the cancels subscription, presence, task statistics and metrics."""
        if handle_signals:
            await root.start(self._watch_signals)
        if self.reaper is not None:
            root.start_soon(self.reaper.run)
        for batcher in self._ack_batchers():
            root.start_soon(batcher.run)
        root.start_soon(self.heartbeat.run)
        root.start_soon(self._stop_when_cancelled)
        root.start_soon(listen_for_cancels, self.queues, lambda: list(self.heartbeat.jobs))
        root.start_soon(self.presence.run)
        root.start_soon(self.taskstats.run)
        if self.scheduler is not None:
            root.start_soon(self.scheduler.run)
        if self.metrics is not None:
            root.start_soon(self.metrics.watch, self.queues)

    async def _stop_when_cancelled(self) -> None:
        """A worker cancelled from outside (not stopped) while a claim runs shielded
        stops as :meth:`stop` would: a claim waiting for work ends now instead of at its
        timeout, and what it took is released."""
        try:
            await anyio.sleep_forever()
        finally:
            if self._claim_shield is not None:
                self.stop()

    async def _clean_up(
        self, drained_by: float, handoff: Handoff[tuple[Lease, object]],
    ) -> None:
        """After the grace period: bounded, since a stop must end even while Redis does
        not answer (leases that could not be released expire and the reaper requeues
        their jobs). One budget for all of it: the runners' releases (each bounded the
        same way), the unstarted leases and the acks."""
        end = min(min(anyio.current_time(), drained_by) + RELEASE_TIMEOUT, self._cleanup_by)
        self._cleanup_by = end
        for batcher in self._ack_batchers():
            batcher.limit(end - anyio.current_time())
        with anyio.CancelScope(shield=True, deadline=end):
            await self._release_unstarted(handoff)

    async def _runner(self, leases: Handoff[tuple[Lease, object]]) -> None:
        # One cancel scope for many jobs (see RunnerScope): a new one only after a job's
        # own cancel was delivered in it.
        while True:
            runner = RunnerScope()
            try:
                with runner.scope:
                    async for lease, slot in leases:
                        await self._run_one(lease, slot, runner)
            finally:
                if (stopped := runner.stopped) is not None:
                    try:
                        await finish_stopped(self, stopped)
                    finally:
                        self._job_done(stopped.slot, stopped.freed)
            if not runner.scope.cancelled_caught:
                return  # no more leases

    async def _run_one(self, lease: Lease, slot: object, runner: RunnerScope) -> None:
        self.taskstats.server_offset = lease.server_offset
        self._in_flight += 1
        freed = False

        def handler_done() -> None:
            nonlocal freed
            # The slot goes to the next claim while this ack is on its way, so the two
            # overlap instead of taking turns; at most `concurrency` acks wait that way
            # (runners: twice the slots).
            if self._acking < self.concurrency:
                self._acking += 1
                self._limiter.release_on_behalf_of(slot)
                freed = True

        try:
            await run_job(self, self.served[lease.queue], lease, runner, handler_done)
        finally:
            if runner.stopped is not None:  # busy until the runner has settled it
                runner.stopped.slot, runner.stopped.freed = slot, freed
            else:
                self._job_done(slot, freed)

    def _job_done(self, slot: object, freed: bool) -> None:
        self._in_flight -= 1
        if freed:
            self._acking -= 1
        else:
            self._limiter.release_on_behalf_of(slot)
        self._finished += 1
        if self._job_finished is not None:
            self._job_finished.set()

    async def _release_unstarted(
        self, leases: Handoff[tuple[Lease, object]]
    ) -> None:
        """Leases claimed but never picked up (the runners were cancelled first)."""
        unstarted = []
        while (item := leases.take_nowait()) is not None:
            lease, slot = item
            unstarted.append(lease)
            self._limiter.release_on_behalf_of(slot)
        await self._release_all(unstarted)

    async def _claim_loop(
        self, runners: Handoff[tuple[Lease, object]], burst: bool
    ) -> None:
        with anyio.CancelScope() as scope:
            self._claim_scope = scope
            backoff = 0.05
            # After a claim that found nothing to run, the next one waits for work itself:
            # BLPOP and claim in one round trip (one served queue; see Queue.claim_many).
            # It asks for one job: Redis runs it even if this process is frozen by then
            # (SIGSTOP, a handler blocking the loop), and the jobs it took would wait out
            # their leases; the claims after it take the rest of a burst.
            wait_first = False
            while not self._stopping():
                slots = await self._take_slots()
                finished_before = self._finished
                leases: list[Lease] = []
                try:
                    # A claim that reached Redis must be seen through: its leases are ours.
                    # Only a stop bounds it (stop() sets a deadline): Redis may not answer.
                    with anyio.CancelScope(shield=True) as shield:
                        self._claim_shield = shield
                        if self._stopping():
                            shield.deadline = min(anyio.current_time() + RELEASE_TIMEOUT,
                                                  self._cleanup_by)
                        if wait_first:
                            leases = await self._claims.claim(
                                1, wait=self.poll_interval, interrupt=self._interrupt)
                        else:
                            leases = await self._claims.claim(len(slots))
                        crash.point("after_claim")
                        if self._stopping():
                            await self._release_all(leases)
                            leases = []
                    self._claim_shield = None
                    backoff = 0.05
                    self.outages["claim"].ok()
                except Exception as exc:
                    if not redis_failure(exc):
                        raise
                    self._claim_shield = None
                    wait_first = False
                    self.outages["claim"].failed(exc, retry_in=backoff)
                    self._give_back(slots)
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                for lease, slot in zip(leases, slots, strict=False):
                    runners.put((lease, slot))
                self._give_back(slots[len(leases):])
                wait_first = False
                if leases:
                    # A claim that emptied todos: one sent now would find nothing (a
                    # round trip and a script run per job of a trickle), so the next one
                    # waits for work. A burst worker asks, to learn that it is done.
                    wait_first = not burst and self._claims.nothing_waiting()
                    continue
                held, wait = self._held_back()
                if "limited" in held and wait < _SHORT_WAIT:
                    await anyio.sleep(wait)
                    continue
                if burst and held - {"paused"}:
                    # A limit holds back work that becomes startable: not done yet (a
                    # paused queue is, for a burst worker, a queue with nothing to run).
                    await wait_for_work(self.queues, wait, self.outages["wait"])
                    continue
                if burst:
                    # Done only if nothing ran since the claim began: a job that finished
                    # meanwhile may have gone back to todos (a retry), or its ack may have
                    # released the jobs enqueued after it. Busy: jobs running, leases on
                    # their way to a runner, and acks on their way to Redis.
                    busy = self._limiter.borrowed_tokens + self._acking
                    if busy == 0 and self._finished == finished_before:
                        return
                    if busy == 0:
                        continue
                    self._job_finished = anyio.Event()
                    await self._job_finished.wait()
                    self._job_finished = None
                    continue
                if not held and self._claims.can_wait:
                    wait_first = True
                    continue
                await wait_for_work(self.queues, wait, self.outages["wait"])

    def _ack_batchers(self) -> list[AckBatcher]:
        """Each ack batcher once (the queues of one client share one)."""
        return list({id(s.acks): s.acks for s in self.served.values()}.values())

    def _held_back(self) -> tuple[set[str], float]:
        """Whether a limit or the pause held claims back, and how long to wait for work:
        the poll interval, or less when a rate limit lets a job start sooner (a limited
        worker sleeps until then rather than polling; a freed slot wakes it earlier)."""
        held = self._claims.held_back()
        wait = self.poll_interval
        now = time.monotonic()
        for name, (reason, until) in held.items():
            if self.metrics is not None:
                self.metrics.held_back.labels(name, reason).inc()
            if until is not None:
                wait = min(wait, max(0.005, until - now))
        return {reason for reason, _ in held.values()}, wait

    async def _take_slots(self) -> list[object]:
        """Block until a slot is free; take it and every other free one (up to a batch)."""
        first = object()
        await self._limiter.acquire_on_behalf_of(first)
        slots = [first]
        while len(slots) < self._claim_batch and self._limiter.available_tokens >= 1:
            slot = object()
            self._limiter.acquire_on_behalf_of_nowait(slot)
            slots.append(slot)
        return slots

    def _give_back(self, slots: list[object]) -> None:
        for slot in slots:
            self._limiter.release_on_behalf_of(slot)

    async def _release_all(self, leases: list[Lease]) -> None:
        for lease in leases:
            try:
                await self.served[lease.queue].queue.release(lease)
            except Exception as exc:
                if not (isinstance(exc, LeaseLost) or redis_failure(exc)):
                    raise
                log.warning("release_failed", queue=lease.queue, job_id=lease.job_id,
                            error=repr(exc))
            else:
                # Claimed but never started (the worker stopped first): counted and
                # logged as for a job whose handler was stopped.
                self.count("claimed", lease.queue)
                self.count("released", lease.queue)
                log.info("job_released", queue=lease.queue, job_id=lease.job_id,
                         attempt=lease.attempt, token=lease.token, task=lease.task,
                         stage="unstarted")

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        try:
            receiver = anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT)
            signals = receiver.__enter__()
        except (ValueError, RuntimeError, NotImplementedError) as exc:
            # Not the main thread, or a loop without signal support: the embedding
            # application owns signals then.
            log.info("signals_not_handled", reason=str(exc))
            task_status.started()
            return
        with receiver:
            task_status.started()
            async for signum in signals:
                self.on_signal(signum)


def _loop_name() -> str:
    """The running event loop's kind (``asyncio`` or ``uvloop``), for the start line."""
    loop = type(asyncio.get_running_loop())
    return loop.__module__.split(".")[0]
