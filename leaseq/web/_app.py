"""The FastAPI application: the dashboard page, its live stream and the JSON API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from .._version import VERSION
from ..exceptions import InvalidInput
from ..protocol.codec import Serializer
from ..protocol.keys import validate_queue_name
from ..protocol.wire import AnyRedis
from . import _actions, _dashboard, _jobs, _queries
from ._context import Context, attach
from ._errors import HANDLERS
from ._guard import TokenGuard
from ._page import STATIC
from ._schemas import Problem

DEFAULT_MAX_BODY = 256 * 1024
"""Largest request body accepted, in bytes (larger ones get 413)."""


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
    app = FastAPI(
        title="leaseq", version=VERSION, docs_url=None, redoc_url=None,
        description="Queues, leases and dead jobs of leaseq, an at-least-once work queue "
                    "on Redis with fenced lease timeouts.",
        responses={422: {"model": Problem, "description": "Invalid input"}},
        exception_handlers=HANDLERS, max_body_size=max_body,
    )
    attach(app, Context(redis, fixed, serializer))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for part in (_dashboard, _queries, _jobs, _actions):
        app.include_router(part.router)
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
