"""The API's reads: liveness, queues, their leases, dead jobs, events, tasks and workers,
and jobs by id. None of them changes anything."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from ..exceptions import JobCancelled, JobDead, JobNotFound, WaitTimeout
from ..protocol.admin import health, server_ms
from ..protocol.taskstats import json_ready
from . import _reads as reads
from ._context import Ctx
from ._params import ERRORS, JobIdPath, Limit, QueueName
from ._schemas import (
    PRINTABLE_PATTERN,
    QUEUE_NAME_PATTERN,
    JobPage,
    JobView,
    LeaseEvent,
    LeaseView,
    Overview,
    Problem,
    QueueDetail,
    ScheduleView,
    State,
    WorkerView,
)
from ._snapshots import detail, overview

router = APIRouter()
"""The read-only routes (``GET``)."""


@router.get("/healthz", responses={503: ERRORS[503]}, openapi_extra={"security": []})
async def healthz(ctx: Ctx) -> dict[str, str]:
    """Liveness and Redis reachability (open even when a token is set)."""
    await ctx.redis.ping()
    return {"status": "ok"}


@router.get("/queues", response_model=Overview, responses={503: ERRORS[503]})
async def list_queues(ctx: Ctx) -> dict[str, Any]:
    """Every queue's counts per state and recent throughput."""
    return await overview(ctx)


@router.get("/queues/{name}", response_model=QueueDetail, responses=ERRORS)
async def get_queue(
    ctx: Ctx, name: QueueName, leases: Limit = 50, dead: Limit = 50,
    minutes: Annotated[int, Query(ge=1, le=120)] = 15,
    events: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """One queue as the dashboard shows it: counts, acks per minute, in-flight leases,
    dead jobs and recent lease expiries."""
    return await detail(ctx, await ctx.known(name), leases, dead, minutes, events)


@router.get("/queues/{name}/leases", response_model=list[LeaseView], responses=ERRORS)
async def get_leases(ctx: Ctx, name: QueueName, limit: Limit = 50) -> list[dict[str, Any]]:
    """Jobs in progress with their lease: owner, attempt, age and time left."""
    q = await ctx.known(name)
    return await reads.leases(q, limit, await server_ms(ctx.redis))


@router.get("/queues/{name}/dead", response_model=list[JobView], responses=ERRORS)
async def get_dead(ctx: Ctx, name: QueueName, limit: Limit = 50) -> list[dict[str, Any]]:
    """Dead jobs with their reasons."""
    return await reads.dead(await ctx.known(name), limit)


@router.get("/queues/{name}/events", response_model=list[LeaseEvent], responses=ERRORS)
async def get_events(
    ctx: Ctx, name: QueueName, limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[dict[str, Any]]:
    """The newest lease expiries the reaper handled, newest first."""
    return await reads.events(await ctx.known(name), limit)


@router.get("/queues/{name}/jobs", response_model=JobPage, responses=ERRORS)
async def list_jobs(
    ctx: Ctx, name: QueueName, state: State = "todo",
    task: Annotated[str | None, Query(min_length=1, max_length=256,
                                      pattern=PRINTABLE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(
        pattern=r"^c:[0-9]{1,19}:[0-9]{1,19}$",
        description="The next_cursor of the previous page.")] = None,
) -> dict[str, Any]:
    """One page of the queue's jobs in ``state`` (bounded cost per page on a queue
    of millions); ``task`` keeps one task's jobs; ``next_cursor`` pages on."""
    q = await ctx.known(name)
    infos, following = await q.list_jobs(state, task=task, limit=limit, cursor=cursor)
    return {"jobs": [reads.job_view(q, info) for info in infos], "next_cursor": following}


@router.get("/queues/{name}/check", responses=ERRORS)
async def check_queue(ctx: Ctx, name: QueueName) -> dict[str, Any]:
    """Whether the queue is served (as ``leaseq check``): Redis answers, the queue is
    known, a reaper swept it in the last minute, a worker is alive; ``ok`` is all of
    them."""
    checks = await health(await ctx.known(name))
    return {"queue": name, "ok": all(ok for ok, _ in checks.values()),
            "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in checks.items()}}


# Before the job's own route: its path would take ``/result`` as part of the job id.
@router.get("/queues/{name}/jobs/{job_id:path}/result", responses={
    **ERRORS, 409: {"model": Problem, "description": "The job ended dead or cancelled"}})
async def job_result(
    ctx: Ctx, name: QueueName, job_id: JobIdPath,
    timeout: Annotated[float, Query(ge=0, le=5)] = 0.0,
) -> dict[str, Any]:
    """The job's result once it is done, waiting up to ``timeout`` seconds for it (a
    long poll, as ``leaseq enqueue --wait``): ``finished`` is false when it is not
    done by then. 409 when it ended dead or cancelled."""
    q = await ctx.known(name)
    try:
        result = await q.wait(job_id, timeout=timeout or 0.001)
    except JobNotFound:
        raise HTTPException(404, f"queue {name!r} has no job {job_id!r}") from None
    except (JobDead, JobCancelled) as exc:
        raise HTTPException(409, str(exc)) from None
    except WaitTimeout:
        return {"queue": name, "job_id": job_id, "finished": False, "result": None}
    return {"queue": name, "job_id": job_id, "finished": True,
            "result": reads.jsonable(result)}


@router.get("/queues/{name}/tasks", responses=ERRORS)
async def get_task_stats(
    ctx: Ctx, name: QueueName, minutes: Annotated[int, Query(ge=1, le=120)] = 15,
) -> dict[str, Any]:
    """Per task: jobs by state (counted on up to 10,000 per state: see ``sampled``),
    acked/failed/dead per minute (oldest first) and handler p50/p95 run time in
    seconds (histogram bucket bounds)."""
    return json_ready(await (await ctx.known(name)).task_stats(minutes=minutes))


@router.get("/queues/{name}/workers", response_model=list[WorkerView], responses=ERRORS)
async def get_workers(ctx: Ctx, name: QueueName) -> list[dict[str, Any]]:
    """The live workers of the queue (one that died drops out within its presence
    time to live)."""
    q = await ctx.known(name)
    return [dataclasses.asdict(w) for w in await q.workers()]


@router.get("/queues/{name}/schedules", response_model=list[ScheduleView], responses=ERRORS)
async def get_schedules(ctx: Ctx, name: QueueName) -> list[dict[str, Any]]:
    """The periodic schedules declared for the queue: timing, next tick, last job and
    its state, ticks skipped (overlap, missed), and whether any scheduler still runs it."""
    q = await ctx.known(name)
    return [dataclasses.asdict(s) for s in await q.schedules()]


@router.get("/queues/{name}/jobs/{job_id:path}", response_model=JobView, responses=ERRORS)
async def get_queue_job(ctx: Ctx, name: QueueName, job_id: JobIdPath) -> dict[str, Any]:
    """One job of one queue: state, attempts, result or error."""
    q = await ctx.known(name)
    info = await q.job(job_id)
    if info is None:
        raise HTTPException(404, f"queue {name!r} has no job {job_id!r}")
    return reads.job_view(q, info)


@router.get("/jobs/{job_id:path}", response_model=JobView, responses={
    **ERRORS, 409: {"model": Problem, "description": "Several queues know the id"}})
async def get_job(
    ctx: Ctx, job_id: JobIdPath,
    queue: Annotated[str | None, Query(pattern=QUEUE_NAME_PATTERN)] = None,
) -> dict[str, Any]:
    """A job by id, looked up in every queue (or only ``queue``)."""
    queues = [await ctx.known(queue)] if queue is not None else [
        ctx.queue_of(n) for n in await ctx.names()]
    found = await reads.find_job(queues, job_id)
    if not found:
        raise HTTPException(404, f"no queue has job {job_id!r}")
    if len(found) > 1:
        raise HTTPException(409, f"queues {[j['queue'] for j in found]} all have job "
                                 f"{job_id!r}; pass ?queue=NAME")
    return found[0]
