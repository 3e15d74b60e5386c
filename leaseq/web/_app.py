"""The FastAPI application: the dashboard page, its live stream and the JSON API."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import anyio
import structlog
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .._version import VERSION
from ..exceptions import InvalidInput, JobDead, JobNotFound, WaitTimeout
from ..protocol.admin import health, server_ms
from ..protocol.codec import Serializer
from ..protocol.keys import QUEUES_KEY, validate_queue_name
from ..protocol.queue import Queue
from ..protocol.taskstats import json_ready
from ..protocol.wire import RETRYABLE, AnyRedis
from . import _reads as reads
from ._guard import TokenGuard
from ._page import STATIC, dashboard_page
from ._schemas import (
    PRINTABLE_PATTERN,
    QUEUE_NAME_PATTERN,
    Enqueued,
    EnqueueRequest,
    JobIds,
    JobPage,
    JobView,
    LeaseEvent,
    LeaseView,
    Moved,
    Overview,
    Problem,
    PurgeWaiting,
    QueueDetail,
    RequeueAll,
    State,
    WorkerView,
)

log = structlog.get_logger(__name__)

DEFAULT_MAX_BODY = 256 * 1024
"""Largest request body accepted, in bytes (larger ones get 413)."""

QueueName = Annotated[str, Path(pattern=QUEUE_NAME_PATTERN, description="Queue name.",
                                examples=["default"])]
JobIdPath = Annotated[str, Path(min_length=1, max_length=1024, pattern=PRINTABLE_PATTERN,
                                description="Job id.")]
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many rows.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown queue or job"},
    503: {"model": Problem, "description": "Redis is unreachable"},
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    400: {"model": Problem, "description": "The body is not JSON"},
    # Starlette's limit answers in plain text when the declared length is too large.
    413: {"model": Problem, "description": "The body is too large",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
}


def create_app(
    redis: AnyRedis,
    *,
    queues: Sequence[str] | None = None,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    serializer: Serializer | None = None,
) -> FastAPI:
    """The dashboard and HTTP API as an ASGI application (serve it with any ASGI server;
    ``leaseq web`` uses uvicorn).

    ``queues`` fixes the queues shown and accepted; by default every queue in the
    ``leaseq:queues`` registry (any queue that was ever used). With ``token``, every
    route but ``/healthz`` needs ``Authorization: Bearer <token>`` (or the cookie the
    page's login form sets). ``redis`` stays the caller's to close.
    """
    fixed = None if queues is None else [validate_queue_name(q) for q in queues]
    if token is not None and not token:
        raise InvalidInput("token must not be empty")
    cache: dict[str, Queue] = {}

    def queue_of(name: str) -> Queue:
        q = cache.get(name)
        if q is None:
            q = cache[name] = Queue(redis, name, serializer=serializer)
        return q

    async def names() -> list[str]:
        return list(fixed) if fixed is not None else await reads.registered_queues(redis)

    async def known(name: str) -> Queue:
        if not (name in fixed if fixed is not None
                else await redis.sismember(QUEUES_KEY, name)):
            raise HTTPException(404, f"unknown queue {name!r}")
        return queue_of(name)

    async def overview() -> dict[str, Any]:
        now = await server_ms(redis)
        return {"server_time_ms": now,
                "queues": [await reads.summary(queue_of(n)) for n in await names()]}

    async def detail(q: Queue, leases: int = 50, dead: int = 50, minutes: int = 15,
                     events: int = 20, *, seen: dict[str, Any] | None = None,
                     ) -> dict[str, Any]:
        # ``seen``: an overview just read; its clock and its summary of ``q`` serve here
        # rather than being read again.
        now = await server_ms(redis) if seen is None else seen["server_time_ms"]
        known_summaries = [] if seen is None else seen["queues"]
        summary = next((s for s in known_summaries if s["name"] == q.name), None)
        return {
            "summary": summary or await reads.summary(q), "server_time_ms": now,
            "throughput": await reads.throughput(q, minutes, now),
            "leases": await reads.leases(q, leases, now),
            "dead": await reads.dead(q, dead),
            "events": await reads.events(q, events),
        }

    app = FastAPI(
        title="leaseq", version=VERSION, docs_url=None, redoc_url=None,
        description="Queues, leases and dead jobs of leaseq, an at-least-once work queue "
                    "on Redis with fenced lease timeouts.",
        responses={422: {"model": Problem, "description": "Invalid input"}},
        max_body_size=max_body,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path with a
            # GET and a POST route must allow both.
            allowed: set[str] = set()
            for route in app.router.routes:
                match, _ = route.matches(request.scope)
                if match == Match.PARTIAL:
                    allowed |= set(getattr(route, "methods", None) or ())
            if allowed:
                headers["Allow"] = ", ".join(sorted(allowed))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> JSONResponse:
        log.warning("web_redis_error", path=request.url.path, error=repr(exc))
        return JSONResponse({"detail": f"Redis error: {exc}"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own handler echoes the input with ensure_ascii=False, which fails
        # (a 500) when the input holds a lone surrogate; json.dumps escapes it.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, default=repr)
        return Response(body, status_code=422, media_type="application/json")

    # Input the schema cannot express (lone surrogates, payloads the serializer refuses)
    # is caught by the queue's own checks: still a 422, never a 500.
    @app.exception_handler(InvalidInput)  # SerializationError included
    async def invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return dashboard_page()

    @app.get("/healthz", responses={503: _ERRORS[503]}, openapi_extra={"security": []})
    async def healthz() -> dict[str, str]:
        """Liveness and Redis reachability (open even when a token is set)."""
        await redis.ping()
        return {"status": "ok"}

    @app.get("/queues", response_model=Overview, responses={503: _ERRORS[503]})
    async def list_queues() -> dict[str, Any]:
        """Every queue's counts per state and recent throughput."""
        return await overview()

    @app.get("/queues/{name}", response_model=QueueDetail, responses=_ERRORS)
    async def get_queue(
        name: QueueName, leases: Limit = 50, dead: Limit = 50,
        minutes: Annotated[int, Query(ge=1, le=120)] = 15,
        events: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> dict[str, Any]:
        """One queue as the dashboard shows it: counts, acks per minute, in-flight leases,
        dead jobs and recent lease expiries."""
        return await detail(await known(name), leases, dead, minutes, events)

    @app.get("/queues/{name}/leases", response_model=list[LeaseView], responses=_ERRORS)
    async def get_leases(name: QueueName, limit: Limit = 50) -> list[dict[str, Any]]:
        """Jobs in progress with their lease: owner, attempt, age and time left."""
        q = await known(name)
        return await reads.leases(q, limit, await server_ms(redis))

    @app.get("/queues/{name}/dead", response_model=list[JobView], responses=_ERRORS)
    async def get_dead(name: QueueName, limit: Limit = 50) -> list[dict[str, Any]]:
        """Dead jobs with their reasons."""
        return await reads.dead(await known(name), limit)

    @app.get("/queues/{name}/events", response_model=list[LeaseEvent], responses=_ERRORS)
    async def get_events(
        name: QueueName, limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> list[dict[str, Any]]:
        """The newest lease expiries the reaper handled, newest first."""
        return await reads.events(await known(name), limit)

    @app.post("/queues/{name}/jobs", response_model=Enqueued, status_code=201,
              responses=_BODY_ERRORS)
    async def enqueue(name: QueueName, job: EnqueueRequest) -> dict[str, str]:
        """Enqueue a job. With ``job_id``, enqueueing a known id again changes nothing."""
        q = await known(name)
        job_id = await q.enqueue(
            job.task, job.payload, job_id=job.job_id, delay=job.delay,
            max_attempts=job.max_attempts, lease_timeout=job.lease_timeout)
        log.info("web_enqueued", queue=name, job_id=job_id, task=job.task)
        return {"queue": name, "job_id": job_id}

    @app.get("/queues/{name}/jobs", response_model=JobPage, responses=_ERRORS)
    async def list_jobs(
        name: QueueName, state: State = "todo",
        task: Annotated[str | None, Query(min_length=1, max_length=256,
                                          pattern=PRINTABLE_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(
            pattern=r"^c:[0-9]{1,19}:[0-9]{1,19}$",
            description="The next_cursor of the previous page.")] = None,
    ) -> dict[str, Any]:
        """One page of the queue's jobs in ``state`` (bounded cost per page on a queue
        of millions); ``task`` keeps one task's jobs; ``next_cursor`` pages on."""
        q = await known(name)
        infos, following = await q.list_jobs(state, task=task, limit=limit, cursor=cursor)
        return {"jobs": [reads.job_view(q, info) for info in infos],
                "next_cursor": following}

    @app.get("/queues/{name}/check", responses=_ERRORS)
    async def check_queue(name: QueueName) -> dict[str, Any]:
        """Whether the queue is served (as ``leaseq check``): Redis answers, the queue is
        known, a reaper swept it in the last minute, a worker is alive; ``ok`` is all of
        them."""
        checks = await health(await known(name))
        return {"queue": name, "ok": all(ok for ok, _ in checks.values()),
                "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in checks.items()}}

    @app.get("/queues/{name}/jobs/{job_id:path}/result", responses={
        **_ERRORS, 409: {"model": Problem, "description": "The job ended dead"}})
    async def job_result(
        name: QueueName, job_id: JobIdPath,
        timeout: Annotated[float, Query(ge=0, le=5)] = 0.0,
    ) -> dict[str, Any]:
        """The job's result once it is done, waiting up to ``timeout`` seconds for it (a
        long poll, as ``leaseq enqueue --wait``): ``finished`` is false when it is not
        done by then. 409 when it ended dead."""
        q = await known(name)
        try:
            result = await q.wait(job_id, timeout=timeout or 0.001)
        except JobNotFound:
            raise HTTPException(404, f"queue {name!r} has no job {job_id!r}") from None
        except JobDead as exc:
            raise HTTPException(409, str(exc)) from None
        except WaitTimeout:
            return {"queue": name, "job_id": job_id, "finished": False, "result": None}
        return {"queue": name, "job_id": job_id, "finished": True,
                "result": reads.jsonable(result)}

    @app.get("/queues/{name}/tasks", responses=_ERRORS)
    async def get_task_stats(
        name: QueueName, minutes: Annotated[int, Query(ge=1, le=120)] = 15,
    ) -> dict[str, Any]:
        """Per task: jobs by state (counted on up to 10,000 per state: see ``sampled``),
        acked/failed/dead per minute (oldest first) and handler p50/p95 run time in
        seconds (histogram bucket bounds)."""
        return json_ready(await (await known(name)).task_stats(minutes=minutes))

    @app.get("/queues/{name}/workers", response_model=list[WorkerView], responses=_ERRORS)
    async def get_workers(name: QueueName) -> list[dict[str, Any]]:
        """The live workers of the queue (one that died drops out within its presence
        time to live)."""
        q = await known(name)
        return [dataclasses.asdict(w) for w in await q.workers()]

    @app.post("/queues/{name}/purge", response_model=Moved, responses=_BODY_ERRORS)
    async def purge_waiting(name: QueueName, body: PurgeWaiting) -> dict[str, Any]:
        """Delete every waiting and delayed job of the queue (the body must say
        ``{"confirm": true}``). Running, done and dead jobs are untouched."""
        q = await known(name)
        count = await q.purge_waiting()
        log.info("web_purged_waiting", queue=name, count=count)
        return {"queue": name, "count": count}

    @app.get("/queues/{name}/jobs/{job_id:path}", response_model=JobView, responses=_ERRORS)
    async def get_queue_job(name: QueueName, job_id: JobIdPath) -> dict[str, Any]:
        """One job of one queue: state, attempts, result or error."""
        q = await known(name)
        info = await q.job(job_id)
        if info is None:
            raise HTTPException(404, f"queue {name!r} has no job {job_id!r}")
        return reads.job_view(q, info)

    @app.get("/jobs/{job_id:path}", response_model=JobView, responses={
        **_ERRORS, 409: {"model": Problem, "description": "Several queues know the id"}})
    async def get_job(
        job_id: JobIdPath,
        queue: Annotated[str | None, Query(pattern=QUEUE_NAME_PATTERN)] = None,
    ) -> dict[str, Any]:
        """A job by id, looked up in every queue (or only ``queue``)."""
        queues = [await known(queue)] if queue is not None else [
            queue_of(n) for n in await names()]
        found = await reads.find_job(queues, job_id)
        if not found:
            raise HTTPException(404, f"no queue has job {job_id!r}")
        if len(found) > 1:
            raise HTTPException(409, f"queues {[j['queue'] for j in found]} all have job "
                                     f"{job_id!r}; pass ?queue=NAME")
        return found[0]

    @app.post("/queues/{name}/dead/requeue", response_model=Moved, responses=_BODY_ERRORS)
    async def requeue_dead(name: QueueName, body: JobIds | RequeueAll) -> dict[str, Any]:
        """Give dead jobs (``{"job_ids": [...]}``, or all with ``{"all": true}``) fresh
        attempts and put them back in todos."""
        q = await known(name)
        ids = body.job_ids if isinstance(body, JobIds) else None
        count = await q.requeue_dead(ids)
        log.info("web_requeued_dead", queue=name, count=count, job_ids=ids or "all")
        return {"queue": name, "count": count}

    @app.post("/queues/{name}/dead/purge", response_model=Moved, responses=_BODY_ERRORS)
    async def purge_dead(name: QueueName, body: JobIds) -> dict[str, Any]:
        """Delete the given dead jobs for good (only by id: there is no purge-all here)."""
        q = await known(name)
        count = await q.purge_dead(body.job_ids)
        log.info("web_purged_dead", queue=name, count=count, job_ids=body.job_ids)
        return {"queue": name, "count": count}

    @app.get("/live", include_in_schema=False)
    async def live(
        queue: Annotated[str | None, Query(pattern=QUEUE_NAME_PATTERN)] = None,
        interval: Annotated[float, Query(ge=0.2, le=60)] = 1.0,
    ) -> EventSourceResponse:
        """Server-sent events: a ``snapshot`` (the overview and, with ``queue``, that
        queue's detail) every ``interval`` seconds."""
        q = None if queue is None else await known(queue)
        return EventSourceResponse(_stream(q, interval), ping=15)

    async def _stream(q: Queue | None, interval: float) -> AsyncIterator[dict[str, str]]:
        while True:
            try:
                data: dict[str, Any] = {"overview": await overview()}
                if q is not None:
                    data["detail"] = await detail(q, seen=data["overview"])
                yield {"event": "snapshot", "data": json.dumps(data)}
            except (RedisError, *RETRYABLE) as exc:
                yield {"event": "problem", "data": json.dumps({"detail": repr(exc)})}
            await anyio.sleep(interval)

    if token is not None:
        _document_bearer(app)
        app.add_middleware(TokenGuard, token=token)
    return app


def _document_bearer(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if operation.get("security") != []:
                        operation["responses"]["401"] = {
                            "description": "Missing or wrong bearer token",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/Problem"}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
