"""What the API's routes have in common: their path and query parameters and the error
responses they document."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from ._schemas import PRINTABLE_PATTERN, QUEUE_NAME_PATTERN, Problem

QueueName = Annotated[str, Path(pattern=QUEUE_NAME_PATTERN, description="Queue name.",
                                examples=["default"])]
"""The ``{name}`` of a queue's routes."""

JobIdPath = Annotated[str, Path(min_length=1, max_length=1024, pattern=PRINTABLE_PATTERN,
                                description="Job id.")]
"""The ``{job_id}`` of a job's routes."""

Limit = Annotated[int, Query(ge=1, le=500, description="At most this many rows.")]
"""How many rows a listing returns."""

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown queue or job"},
    503: {"model": Problem, "description": "Redis is unreachable"},
}
"""The errors any route of a queue or job may answer."""

BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": Problem, "description": "The body is not JSON"},
    # Starlette's limit answers in plain text when the declared length is too large.
    413: {"model": Problem, "description": "The body is too large",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
}
"""The errors any route that takes a body may answer."""
