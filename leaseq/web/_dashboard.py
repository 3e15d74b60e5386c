"""The dashboard: its page and the live stream of server-sent events its script reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse

from ..protocol.queue import Queue
from ..protocol.wire import RETRYABLE
from ._context import Context, Ctx
from ._errors import redis_problem
from ._page import dashboard_page
from ._schemas import QUEUE_NAME_PATTERN
from ._snapshots import detail, overview

_MIN_GAP = 0.25
"""Seconds between two snapshots at least, however many events arrive."""
_MAX_BLOCK = 5.0
"""Longest stream read (below any socket timeout a client may set); the rest of a
longer interval is slept."""

router = APIRouter()
"""The page at ``/`` and the stream at ``/live``, both left out of the OpenAPI document."""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> str:
    """The dashboard's page."""
    return dashboard_page()


@router.get("/live", include_in_schema=False)
async def live(
    ctx: Ctx,
    queue: Annotated[str | None, Query(pattern=QUEUE_NAME_PATTERN)] = None,
    interval: Annotated[float, Query(ge=0.2, le=60)] = 1.0,
) -> EventSourceResponse:
    """Server-sent events: a ``snapshot`` (the overview and, with ``queue``, that
    queue's detail) every ``interval`` seconds, and sooner when the queue keeps a
    lifecycle stream (``Queue(events=N)``) and an event arrives on it; a ``problem``
    (``{"detail"}``, why Redis failed) instead while Redis does not answer."""
    q = None if queue is None else await ctx.known(queue)
    return EventSourceResponse(_stream(ctx, q, interval), ping=15)


async def _stream(ctx: Context, q: Queue | None,
                  interval: float) -> AsyncIterator[dict[str, str]]:
    while True:
        try:
            data: dict[str, Any] = {"overview": await overview(ctx)}
            if q is not None:
                data["detail"] = await detail(ctx, q, seen=data["overview"])
            yield {"event": "snapshot", "data": json.dumps(data)}
        except (RedisError, *RETRYABLE) as exc:
            # The same words as the API's 503 (errors.redis_down), so the page says one
            # thing whichever of the two told it.
            yield {"event": "problem", "data": json.dumps({"detail": redis_problem(exc)})}
        await _until_next(q, interval)


async def _until_next(q: Queue | None, interval: float) -> None:
    """Wait for the next snapshot: ``interval`` seconds, or less when an event arrives
    on the queue's lifecycle stream. The wait is the stream read itself (``XREAD BLOCK``
    for the interval): a queue that keeps no stream, or one with nothing happening, is
    read every ``interval``; a busy one at most every :data:`_MIN_GAP` seconds."""
    if q is None:
        await anyio.sleep(interval)
        return
    started = anyio.current_time()
    try:
        block = min(interval, _MAX_BLOCK)
        heard = await q.redis.xread({q.keys.stream: "$"}, count=1,
                                    block=max(1, int(block * 1000)))
    except (RedisError, *RETRYABLE):
        heard = None  # the next snapshot says what is wrong
    until = started + (_MIN_GAP if heard else interval)
    await anyio.sleep(max(0.0, until - anyio.current_time()))
