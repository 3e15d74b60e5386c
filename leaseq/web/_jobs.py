"""The API's routes that find one job and tell its story: a search by id prefix, and the
job view with its attempts. Both read only, at a bounded cost."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from ..protocol.admin import server_ms
from ..protocol.validate import MAX_JOB_ID_LEN
from . import _history as history
from . import _search as search
from ._context import Ctx
from ._params import ERRORS, QueueName
from ._schemas import PRINTABLE_PATTERN, JobDetail, SearchPage, State

router = APIRouter()
"""The job search and the job view (``GET``)."""

MAX_MATCHES = 100
"""The most matches a search page asks for."""


@router.get("/queues/{name}/search", response_model=SearchPage, responses=ERRORS)
async def search_jobs(
    ctx: Ctx, name: QueueName,
    prefix: Annotated[str, Query(min_length=1, max_length=MAX_JOB_ID_LEN,
                                 pattern=PRINTABLE_PATTERN,
                                 description="The start of the ids to find.")],
    state: Annotated[State | None, Query(description="Search this state only.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_MATCHES,
                                description="Stop once this many are found.")] = 20,
    cursor: Annotated[str | None, Query(
        pattern=search.CURSOR_PATTERN,
        description="The next_cursor of the previous page.")] = None,
) -> dict[str, Any]:
    """The queue's jobs whose id starts with ``prefix``, in any state (or ``state``).

    Bounded per request: at most 20 ``SSCAN``/``ZSCAN`` calls of ``COUNT 250`` over the
    queue's state sets (about 5,000 ids looked at), stopping once ``limit`` are found;
    ``next_cursor`` goes on from there (null once every state was searched). A page
    may hold up to one scan step's matches more than ``limit``, and none while more
    follow. An exact id is found faster by ``GET /jobs/{job_id}``."""
    q = await ctx.known(name)
    found = await search.find(q, prefix, limit, cursor, state)
    return {"queue": name, "prefix": prefix, "jobs": await search.rows(q, found.ids),
            "scan_steps": found.steps, "next_cursor": found.cursor}


@router.get("/queues/{name}/inspect", response_model=JobDetail, responses=ERRORS)
async def inspect_job(
    ctx: Ctx, name: QueueName,
    job_id: Annotated[str, Query(min_length=1, max_length=MAX_JOB_ID_LEN,
                                 pattern=PRINTABLE_PATTERN, description="Job id.")],
) -> dict[str, Any]:
    """One job as the dashboard's job view shows it: everything ``leaseq inspect`` shows
    (payload and result as previews of at most 16,384 characters) and its attempts, put
    together from the job hash (the latest claim and the last 8 settlements), the
    reaper's last 200 lease expiries and, when the queue keeps one, the newest 500
    events of its lifecycle stream. The id is a query parameter: ids may hold ``/``."""
    q = await ctx.known(name)
    info = await q.job(job_id)
    if info is None:
        raise HTTPException(404, f"queue {name!r} has no job {job_id!r}")
    return await history.detail(q, info, await server_ms(ctx.redis))
