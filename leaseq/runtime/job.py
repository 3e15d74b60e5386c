"""One job inside a worker: its handler, and how it ends.

The handler runs in a cancel scope the job holds while it runs (its runner's, see
:class:`RunnerScope`), so a renewal that finds the lease lost, or a cancel, stops the
handler, and the handler's result is never acked. If the worker cancels the job from
outside (shutdown past the grace period), the lease is released in a shielded scope so
the job goes back to ``todos`` at once instead of after the lease timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, ExitStack
from typing import Any, Protocol

import anyio
import structlog

from ..exceptions import LeaseLost, LeaseqError, SerializationError
from ..models import JobState, Lease
from ..protocol import crash
from ..protocol.validate import storable
from ..protocol.wire import error_text, redis_failure, retryable
from .heartbeat import Heartbeat, Renewable
from .outage import Outage
from .served import Served
from .task import Backoff, JobContext, Middleware, Task

_MAX_ERROR_CHARS = 4000
RELEASE_TIMEOUT = 5.0
"""How long a stopping worker waits for Redis to take back a lease (or confirm an ack)
before it leaves the lease to expire: a stop must end even while Redis does not answer."""


class RunTracer(Protocol):
    """What the job runner asks of a tracer (:class:`leaseq.otel.Tracing` is one)."""

    def running(self, ctx: JobContext, trace: str | None) -> AbstractContextManager[Any]:
        """Entered around the handler; ``trace`` is what the producer stored. What it
        yields is handed to :meth:`settled`."""

    def settled(self, ctx: JobContext, run: Any, outcome: str, start_ns: int) -> None:
        """The job was settled (``acked``, ``failed``, ``dead``, ``lease_lost``), from
        ``start_ns`` (Unix ns) until now; ``run`` is what :meth:`running` yielded."""


class JobHost(Protocol):
    """What running a job needs of the worker that claimed it (a
    :class:`~leaseq.Worker`): the job runner never imports the worker."""

    heartbeat: Heartbeat
    redis_slots: anyio.CapacityLimiter
    backoff: Backoff
    job_timeout: float | None
    state: Any
    """What the worker's lifespan yielded (``ctx.state``)."""
    tracer: RunTracer | None
    """Traces each run and settlement, when set."""
    sync_limiter: anyio.CapacityLimiter
    """Bounds the threads running plain ``def`` handlers."""
    job_log: Any
    """The logger of the job runner's lines (:func:`job_logger`, resolved per run)."""

    @property
    def middleware(self) -> Sequence[Middleware]:
        """What wraps each handler, outermost first."""

    @property
    def outages(self) -> Mapping[str, Outage]:
        """The worker's outage reporters by component (``release``, ``settle``, ...)."""

    @property
    def cleanup_by(self) -> float:
        """When (anyio's clock) a stopping worker's clean-up must be over."""

    def count(self, event: str, queue: str, task: str | None = None) -> None:
        """Count one ``event`` (acked, failed, ...) of ``queue`` (and ``task``)."""

    def observe(self, task: str, seconds: float, queue: str) -> None:
        """Record a handler's run time."""


class RunningJob(Renewable):
    """Mutable state of one job while it runs (the heartbeat renews ``lease``)."""

    __slots__ = ("acks", "settled")

    def __init__(self, served: Served, lease: Lease) -> None:
        super().__init__(served.queue, lease)
        self.acks = served.acks
        self.settled = False


_log = structlog.get_logger("leaseq.worker")


def job_logger() -> Any:
    """The logger the job runner writes to (``leaseq.worker``), resolved now.

    A worker resolves it once per run (:attr:`JobHost.job_log`): structlog's lazy proxy
    rebuilds its logger on every call unless ``cache_logger_on_first_use`` is set, which
    costs a no-op job a twentieth of its time for the one line it logs. Logging
    configured while a worker runs applies from its next run."""
    return _log.bind()


def describe_error(exc: BaseException) -> str:
    """``Type: message`` plus the innermost frames of the traceback, bounded in size and
    always storable: a message that cannot be made (``__str__`` raises) is described as
    such, and what UTF-8 cannot encode (lone surrogates) is escaped."""
    try:
        message = str(exc)
    except Exception as inner:
        message = f"<message unavailable: __str__ raised {type(inner).__name__}>"
    try:
        frames = traceback.format_tb(exc.__traceback__)[-3:]
    except Exception:
        frames = []
    text = f"{type(exc).__name__}: {message}" + (
        "\n" + "".join(frames).rstrip() if frames else "")
    return storable(text[:_MAX_ERROR_CHARS])


def _being_cancelled() -> bool:
    """Whether someone cancelled this task (the job's scope, the worker's drain, a
    timeout), as opposed to a ``CancelledError`` that merely came out of the handler
    (it awaited a helper task that was cancelled)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Stopped:
    """A job whose handler its own cancel stopped (lease lost, :meth:`Queue.cancel`),
    for its runner to settle once out of the scope the cancel was delivered in."""

    __slots__ = ("fields", "freed", "job", "slot", "started", "task")

    def __init__(self, job: RunningJob, task: Task, fields: dict[str, Any],
                 started: float) -> None:
        self.job = job
        self.task = task
        self.fields = fields
        self.started = started
        self.slot: object = None
        """The worker's concurrency slot, given back once the job is settled..."""
        self.freed = False
        """... unless it was given back already, as the handler's result went out."""


class RunnerScope:
    """The cancel scope one runner task runs its jobs' handlers in, from job to job.

    Entering and leaving an anyio scope costs a no-op job an eighth of its time (5 us of
    40, measured against no scope at all), so a runner keeps one until a job's cancel is
    delivered in it. Only the job whose handler is running holds the scope
    (``job.scope``; ``None`` before and after), so a late cancel stops nothing else. A
    cancel delivered leaves the job in :attr:`stopped`; the runner leaves the scope,
    settles that job with :func:`finish_stopped` and takes a new scope."""

    __slots__ = ("scope", "stopped")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.stopped: Stopped | None = None


async def run_job(worker: JobHost, served: Served, lease: Lease, runner: RunnerScope,
                  handler_done: Callable[[], None] = lambda: None) -> None:
    """Run one claimed job to its end: acked, failed, dead, lost or released, with its
    handler in ``runner``'s scope (which the caller has entered). A job its own cancel
    stopped is left in ``runner.stopped`` and the cancellation raised: the caller leaves
    the scope and calls :func:`finish_stopped`. ``handler_done()`` is called once its
    handler has returned a result, as the ack goes out (not for a failure: that may put
    the job back in todos)."""
    log = worker.job_log
    queue = served.queue
    job = RunningJob(served, lease)
    # Log context as plain keyword arguments: binding a logger per job costs more than
    # the job itself when logging is filtered.
    fields = {"queue": queue.name, "job_id": lease.job_id, "attempt": lease.attempt,
              "token": lease.token, "task": lease.task}
    started = time.perf_counter()
    worker.count("claimed", queue.name)
    task = served.tasks.get(lease.task)
    stopped = False
    try:
        if task is None:
            reason = (f"unknown task {lease.task!r}; this worker handles "
                      f"{sorted(served.tasks)}")
            await _settle(worker, job, fields, lambda: queue.bury(job.lease, reason))
            worker.count("dead", queue.name, lease.task)
            log.error("job_dead", reason=reason, **fields)
            return
        # The heartbeat renews the lease until the job is settled, not only while the
        # handler runs: an ack or fail that Redis refuses for a while (at maxmemory, say)
        # is retried with the lease still held, instead of the job being redone. A
        # renewal that races with the ack only finds the lease gone; the job no longer
        # holds the scope by then, so it cancels nothing.
        worker.heartbeat.add(job)
        ctx = JobContext(queue, job.current, fields, worker.state)
        run = None
        try:
            scope = job.scope = runner.scope
            try:
                if job.cancel_requested:  # it came before the handler started
                    scope.cancel()
                if task.lease_timeout is not None and task.lease_timeout != lease.lease_timeout:
                    await _renew(worker, job, task.lease_timeout)
                if worker.tracer is None:
                    ok, value = await _execute(worker, task, ctx, lease.payload)
                else:
                    stored = await _trace_of(worker, job)
                    with ExitStack() as traced:
                        run = _start_tracing(traced, worker.tracer, ctx, stored, fields, log)
                        ok, value = await _execute(worker, task, ctx, lease.payload)
            finally:
                job.scope = None
            worker.observe(lease.task, time.perf_counter() - started, queue.name)
            settling = time.time_ns()
            if ok:
                crash.point("before_ack")
                handler_done()
                outcome = await _ack(worker, job, fields, value, started, task)
            else:
                outcome = await _fail(worker, job, fields, value, task)
            if worker.tracer is not None:
                try:
                    worker.tracer.settled(ctx, run, outcome, settling)
                except Exception as exc:  # tracing is advice: it never fails a job
                    log.warning("tracing_failed", stage="settle", error=error_text(exc),
                                **fields)
        except anyio.get_cancelled_exc_class():
            # This job's own cancel (only this job has held the runner's scope since the
            # runner took it), in its handler or, when the handler caught it and
            # returned, in what came after: the runner settles the job out of the scope.
            if scope.cancel_called and not job.settled:
                runner.stopped = Stopped(job, task, fields, started)
                stopped = True
            raise
        finally:
            if not stopped:
                worker.heartbeat.discard(job)
    except anyio.get_cancelled_exc_class():
        if not stopped:
            await _release_cancelled(worker, job, task, fields)
        raise


async def finish_stopped(worker: JobHost, stopped: Stopped) -> None:
    """Settle a job its own cancel stopped (see :class:`RunnerScope`), outside the scope
    the cancel was delivered in: cancelled (:meth:`Queue.cancel`) or lost."""
    job, fields = stopped.job, stopped.fields
    try:
        try:
            if job.cancel_requested:
                await _cancelled(worker, job, fields)
            else:
                worker.count("lease_lost", job.queue.name)
                worker.job_log.warning(
                    "lease_lost", stage="running",
                    duration=round(time.perf_counter() - stopped.started, 6),
                    detail="lease expired or re-claimed; handler cancelled, result dropped",
                    **fields)
        finally:
            worker.heartbeat.discard(job)
    except anyio.get_cancelled_exc_class():
        await _release_cancelled(worker, job, stopped.task, fields)
        raise


async def _release_cancelled(
    worker: JobHost, job: RunningJob, task: Task | None, fields: dict[str, Any],
) -> None:
    """The worker cancelled an unsettled job (shutdown past the grace period): give its
    lease back at once, within the stop's deadline."""
    # A def handler's thread may still be running: releasing its lease would hand the job
    # to another worker at once, to run beside it. Its lease expires instead and the
    # reaper requeues it (by then the thread has most likely finished).
    if not job.settled and not job.lost and not (task is not None and task.sync):
        with anyio.CancelScope(shield=True, deadline=min(
                anyio.current_time() + RELEASE_TIMEOUT, worker.cleanup_by)):
            await _release(worker, job, fields)


def _start_tracing(
    stack: ExitStack, tracer: RunTracer, ctx: JobContext, stored: str | None,
    fields: dict[str, Any], log: Any,
) -> Any:
    """Enter the tracer's run span on ``stack``; a tracer that fails runs the job
    untraced rather than failing it."""
    try:
        return stack.enter_context(tracer.running(ctx, stored))
    except Exception as exc:
        log.warning("tracing_failed", stage="run", error=error_text(exc), **fields)
        return None


async def _trace_of(worker: JobHost, job: RunningJob) -> str | None:
    """The trace context the producer stored with the job (one read, only with a
    tracer); ``None`` when it stored none or Redis did not answer."""
    try:
        async with worker.redis_slots:
            raw = await job.queue.redis.hget(job.queue.keys.job(job.lease.job_id), "trace")
    except Exception as exc:
        if not redis_failure(exc):
            raise
        return None  # tracing is advice: the job runs untraced rather than not at all
    return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


async def _execute(
    worker: JobHost, task: Task, ctx: JobContext, payload: Any
) -> tuple[bool, Any]:
    """Run the handler; (True, result) or (False, error text). Never raises but on
    cancellation: a handler's exception, timeout or ``sys.exit`` is the job's failure,
    never the worker's."""
    if task.sync:
        # A thread slot first: the wait for one is not the handler's time.
        async with worker.sync_limiter:
            return await _timed(worker, task, ctx, payload)
    return await _timed(worker, task, ctx, payload)


async def _timed(
    worker: JobHost, task: Task, ctx: JobContext, payload: Any
) -> tuple[bool, Any]:
    timeout = task.timeout if task.timeout is not None else worker.job_timeout
    if timeout is None:
        return await _call(worker, task, ctx, payload)
    with anyio.move_on_after(timeout):
        return await _call(worker, task, ctx, payload)
    return False, f"TimeoutError: handler timed out after {timeout} s"


async def _call(worker: JobHost, task: Task, ctx: JobContext, payload: Any) -> tuple[bool, Any]:
    try:
        if not worker.middleware:
            return True, await _invoke(worker, task, ctx, payload)
        result = None  # a middleware that suppresses the handler's exception: no result
        if len(worker.middleware) == 1:
            # The common case without the exit stack, which cost a no-op middleware's
            # drain a third of its extra Python instructions per job.
            async with worker.middleware[0](ctx):
                result = await _invoke(worker, task, ctx, payload)
            return True, result
        async with AsyncExitStack() as stack:
            for middleware in worker.middleware:
                await stack.enter_async_context(middleware(ctx))
            result = await _invoke(worker, task, ctx, payload)
        return True, result
    except BaseException as exc:
        # Whatever the handler raises is the job's failure, never the worker's: any
        # exception, SystemExit, KeyboardInterrupt or another BaseException, and a
        # CancelledError nobody sent to this job. Only a real cancellation of this job
        # (lease lost, timeout, shutdown) goes on up.
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            if _being_cancelled():
                raise
            return False, ("the handler raised CancelledError although the job was not "
                           "cancelled (did it await a cancelled task?)\n"
                           + describe_error(exc))
        return False, describe_error(exc)


async def _invoke(worker: JobHost, task: Task, ctx: JobContext, payload: Any) -> Any:
    if not task.sync:
        return await task.handler(ctx, payload)
    # A thread cannot be cancelled: on a lost lease, a timeout or a shutdown the job's
    # scope stops waiting for it (its result is dropped, fenced out like any stale
    # result) and the thread finishes on its own, outside the sync_concurrency bound
    # (the caller holds the slot; the limiter here only hands out this one thread).
    result = await anyio.to_thread.run_sync(task.handler, ctx, payload,
                                            limiter=anyio.CapacityLimiter(1),
                                            abandon_on_cancel=True)
    if inspect.isawaitable(result):  # a plain function that returns an awaitable
        result = await result
    return result


async def _ack(
    worker: JobHost, job: RunningJob, fields: dict[str, Any], result: Any, started: float,
    task: Task,
) -> str:
    """Ack the result; return the outcome (``acked``, or what :func:`_fail` returns for a
    result that cannot be encoded, or ``lease_lost``)."""
    log = worker.job_log
    try:
        acked = await job.acks.ack(job.queue, job.current, result)
    except SerializationError as exc:
        return await _fail(worker, job, fields, storable(f"SerializationError: {exc}"), task)
    except Exception as exc:
        if not (isinstance(exc, LeaseqError) or redis_failure(exc)):
            raise
        # Redis stayed unreachable (or refusing) until the lease ran out, the worker
        # stopped first (AckNotConfirmed), the lease keys kept changing, or the server
        # answered with an error retrying cannot fix: the lease expires and the job will
        # be redone.
        job.settled = True
        worker.count("lease_lost", job.queue.name)
        log.warning("lease_lost", stage="ack", error=error_text(exc),
                    **fields)
        return "lease_lost"
    job.settled = True
    duration = round(time.perf_counter() - started, 6)
    if acked:
        worker.count("acked", job.queue.name, job.lease.task)
        log.info("job_acked", duration=duration, **fields)
        return "acked"
    # A cancel that came while the result was on its way leaves the lease to us, marked:
    # the job ends cancelled, not acked (the settle is refused if the lease is gone).
    try:
        async with worker.redis_slots:
            await job.queue.settle_cancelled(job.current())
    except Exception as exc:
        if not (isinstance(exc, LeaseqError) or redis_failure(exc)):
            raise
    else:
        worker.count("cancelled", job.queue.name, job.lease.task)
        log.info("job_cancelled", stage="ack", duration=duration, **fields)
        return "cancelled"
    worker.count("lease_lost", job.queue.name)
    log.warning("lease_lost", stage="ack", duration=duration,
                detail="ack rejected: the lease expired or was re-claimed", **fields)
    return "lease_lost"


async def _cancelled(worker: JobHost, job: RunningJob, fields: dict[str, Any]) -> None:
    """The handler was stopped by a cancel (:meth:`Queue.cancel`): settle the job
    cancelled (fenced by the lease, which the cancel marked)."""
    log = worker.job_log

    async def settle() -> bool:
        await job.queue.settle_cancelled(job.current())
        return True

    if await _settle(worker, job, fields, settle):
        worker.count("cancelled", job.queue.name, job.lease.task)
        log.info("job_cancelled", stage="running", **fields)


async def _fail(
    worker: JobHost, job: RunningJob, fields: dict[str, Any], error: str, task: Task
) -> str:
    """Record the failed attempt; return the outcome (``failed``, ``dead`` or
    ``lease_lost``)."""
    log = worker.job_log
    backoff = task.backoff or worker.backoff
    retry_in = backoff.delay(job.lease.attempt)
    state: JobState | None = await _settle(
        worker, job, fields,
        lambda: job.queue.fail(job.lease, error, retry_in=retry_in,
                               max_attempts=task.max_attempts))
    if state is None:
        return "lease_lost"
    if state == "cancelled":  # a cancel came while it failed
        worker.count("cancelled", job.queue.name, job.lease.task)
        log.info("job_cancelled", stage="fail", **fields)
        return "cancelled"
    if state == "dead":
        worker.count("dead", job.queue.name, job.lease.task)
        log.error("job_dead", error=error, **fields)
        return "dead"
    worker.count("failed", job.queue.name, job.lease.task)
    log.warning("job_failed", error=error, retry_in=round(retry_in, 3), state=state,
                **fields)
    return "failed"


async def _release(worker: JobHost, job: RunningJob, fields: dict[str, Any]) -> None:
    """Give the lease back (shutdown); connection errors and refusals are retried until
    the caller's deadline, after which the lease simply expires and the reaper requeues
    the job."""
    log = worker.job_log
    delay = 0.02
    outage = worker.outages["release"]
    while True:
        try:
            async with worker.redis_slots:
                await job.queue.release(job.lease)
        except LeaseLost:
            log.warning("lease_lost", stage="release", **fields)
        except Exception as exc:
            if not redis_failure(exc):
                raise
            if not retryable(exc):
                log.warning("release_failed", error=error_text(exc), **fields,
                            detail="the lease will expire and the reaper will requeue the job")
                job.settled = True
                return
            outage.failed(exc, retry_in=delay)
            try:
                await anyio.sleep(delay)
            except anyio.get_cancelled_exc_class():
                log.warning("release_failed", error=error_text(exc), **fields,
                            detail="the lease will expire and the reaper will requeue the job")
                raise
            delay = min(delay * 2, 0.5)
            continue
        else:
            outage.ok()
            worker.count("released", job.queue.name)
            log.info("job_released", **fields)
        job.settled = True
        return


async def _settle(
    worker: JobHost, job: RunningJob, fields: dict[str, Any],
    call: Callable[[], Awaitable[Any]],
) -> Any:
    """Run a fenced settle call, retrying connection errors and refusals while the lease
    lasts.

    Returns the call's value, or None when the lease was lost or the server answered
    with an error retrying cannot fix (logged; the lease expires and the job is redone
    or goes dead then)."""
    log = worker.job_log
    delay = 0.05
    outage = worker.outages["settle"]
    while True:
        try:
            async with worker.redis_slots:
                value = await call()
        except LeaseLost:
            job.settled = True
            worker.count("lease_lost", job.queue.name)
            log.warning("lease_lost", stage="settle", **fields)
            return None
        except Exception as exc:
            if not redis_failure(exc):
                raise
            gave_up = not retryable(exc) or job.lease.local_deadline <= time.monotonic()
            if gave_up:
                job.settled = True
                worker.count("lease_lost", job.queue.name)
                log.warning("lease_lost", stage="settle", error=error_text(exc),
                            **fields)
                return None
            outage.failed(exc, retry_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        outage.ok()
        job.settled = True
        return value


async def _renew(worker: JobHost, job: RunningJob, lease_timeout: float) -> None:
    """Extend the lease to the task's own length right after the claim; a lost lease
    cancels the job (its scope), a connection error leaves it to the heartbeat."""
    try:
        async with worker.redis_slots:
            job.lease = await job.queue.extend(job.lease, lease_timeout)
    except LeaseLost:
        job.lost = True
        if job.scope is not None:
            job.scope.cancel()
    except Exception as exc:
        if not redis_failure(exc):
            raise
        worker.heartbeat.outage.failed(exc, queue=job.queue.name, job_id=job.lease.job_id)
