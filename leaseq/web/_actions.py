"""The API's actions, each logged: enqueue a job, purge the waiting jobs, requeue or
purge dead ones, pause and resume the queue."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter

from ._bodies import (
    CancelRequest,
    EnqueueRequest,
    JobIds,
    PauseRequest,
    PurgeWaiting,
    RequeueAll,
    ResumeRequest,
)
from ._context import Ctx
from ._params import BODY_ERRORS, QueueName
from ._schemas import Cancelled, Enqueued, Moved, Paused

# Named after the app module: one logger name for every line the app writes.
log = structlog.get_logger("leaseq.web._app")

router = APIRouter()
"""The routes that change a queue (``POST``)."""


@router.post("/queues/{name}/jobs", response_model=Enqueued, status_code=201,
             responses=BODY_ERRORS)
async def enqueue(ctx: Ctx, name: QueueName, job: EnqueueRequest) -> dict[str, str]:
    """Enqueue a job. With ``job_id``, enqueueing a known id again changes nothing."""
    q = await ctx.known(name)
    job_id = await q.enqueue(
        job.task, job.payload, job_id=job.job_id, delay=job.delay,
        max_attempts=job.max_attempts, lease_timeout=job.lease_timeout)
    log.info("web_enqueued", queue=name, job_id=job_id, task=job.task)
    return {"queue": name, "job_id": job_id}


@router.post("/queues/{name}/purge", response_model=Moved, responses=BODY_ERRORS)
async def purge_waiting(ctx: Ctx, name: QueueName, body: PurgeWaiting) -> dict[str, Any]:
    """Delete every waiting and delayed job of the queue (the body must say
    ``{"confirm": true}``). Running, done and dead jobs are untouched."""
    q = await ctx.known(name)
    count = await q.purge_waiting()
    log.info("web_purged_waiting", queue=name, count=count)
    return {"queue": name, "count": count}


@router.post("/queues/{name}/dead/requeue", response_model=Moved, responses=BODY_ERRORS)
async def requeue_dead(ctx: Ctx, name: QueueName,
                       body: JobIds | RequeueAll) -> dict[str, Any]:
    """Give dead jobs (``{"job_ids": [...]}``, or all with ``{"all": true}``) fresh
    attempts and put them back in todos."""
    q = await ctx.known(name)
    ids = body.job_ids if isinstance(body, JobIds) else None
    count = await q.requeue_dead(ids)
    log.info("web_requeued_dead", queue=name, count=count, job_ids=ids or "all")
    return {"queue": name, "count": count}


@router.post("/queues/{name}/dead/purge", response_model=Moved, responses=BODY_ERRORS)
async def purge_dead(ctx: Ctx, name: QueueName, body: JobIds) -> dict[str, Any]:
    """Delete the given dead jobs for good (only by id: there is no purge-all here)."""
    q = await ctx.known(name)
    count = await q.purge_dead(body.job_ids)
    log.info("web_purged_dead", queue=name, count=count, job_ids=body.job_ids)
    return {"queue": name, "count": count}


@router.post("/queues/{name}/cancel", response_model=Cancelled, responses=BODY_ERRORS)
async def cancel(ctx: Ctx, name: QueueName, body: CancelRequest) -> dict[str, Any]:
    """Cancel a job: a waiting or delayed one at once, a running one through its worker
    (it stops the handler and the job ends cancelled). The id goes in the body: ids may
    hold any character, a ``/`` too."""
    q = await ctx.known(name)
    outcome = await q.cancel(body.job_id, reason=body.reason)
    log.info("web_cancelled", queue=name, job_id=body.job_id, outcome=outcome)
    return {"queue": name, "job_id": body.job_id, "outcome": outcome}


@router.post("/queues/{name}/pause", response_model=Paused, responses=BODY_ERRORS)
async def pause(ctx: Ctx, name: QueueName, body: PauseRequest) -> dict[str, Any]:
    """Pause the queue (the body must say ``{"confirm": true}``): no worker claims from
    it until it is resumed. Enqueues go on; running jobs finish and are acked."""
    q = await ctx.known(name)
    await q.pause()
    log.info("web_paused", queue=name)
    return {"queue": name, "paused": await q.is_paused()}


@router.post("/queues/{name}/resume", response_model=Paused, responses=BODY_ERRORS)
async def resume(ctx: Ctx, name: QueueName, body: ResumeRequest) -> dict[str, Any]:
    """Let workers claim from the queue again (the body is ``{}``); idle ones are woken."""
    q = await ctx.known(name)
    await q.resume()
    log.info("web_resumed", queue=name)
    return {"queue": name, "paused": await q.is_paused()}
