"""How the app answers errors: always JSON ``{"detail": ...}``, a 503 when Redis fails and
a 422 for any input refused, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..exceptions import InvalidInput

# Named after the app module: one logger name for every line the app writes.
log = structlog.get_logger("leaseq.web._app")


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """An HTTP error as JSON; a 405 names every method the path allows."""
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; a path with a
        # GET and a POST route must allow both. The routes of included routers count
        # one by one, not as the router that holds them.
        allowed: set[str] = set()
        for route in iter_route_contexts(request.app.routes):
            match, _ = route.matches(request.scope)
            if match == Match.PARTIAL:
                allowed |= set(getattr(route, "methods", None) or ())
        if allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                        headers=headers)


def redis_problem(exc: BaseException) -> str:
    """Why a Redis call failed, in one line (``Redis error: ...``)."""
    said = " ".join(str(exc).split()) or type(exc).__name__
    return f"Redis error: {said}"


async def redis_down(request: Request, exc: RedisError) -> JSONResponse:
    """A Redis failure as a 503."""
    log.warning("web_redis_error", path=request.url.path, error=repr(exc))
    return JSONResponse({"detail": redis_problem(exc)}, status_code=503)


async def bad_request(request: Request, exc: RequestValidationError) -> Response:
    """Input the schema refuses as a 422 listing what is wrong."""
    # FastAPI's own handler echoes the input with ensure_ascii=False, which fails
    # (a 500) when the input holds a lone surrogate; json.dumps escapes it.
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, default=repr)
    return Response(body, status_code=422, media_type="application/json")


async def invalid(request: Request, exc: InvalidInput) -> JSONResponse:
    """Input the queue refuses as a 422."""
    return JSONResponse({"detail": str(exc)}, status_code=422)


HANDLERS: dict[int | type[Exception],
               Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    StarletteHTTPException: http_error,
    RedisError: redis_down,
    RequestValidationError: bad_request,
    # Input the schema cannot express (lone surrogates, payloads the serializer refuses)
    # is caught by the queue's own checks: still a 422, never a 500.
    InvalidInput: invalid,  # SerializationError included
}
"""The app's ``exception_handlers``."""
