"""The HTTP API's request bodies: strict (an unknown field or a wrong type is a 422, never
a guess), each a JSON object, so that no form of another site can post one without a
preflight."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._schemas import Attempts, JobId, TaskName


class _Strict(BaseModel):
    # strict: ``false`` is not a delay and ``0`` is not ``false``; a wrong type is a 422.
    model_config = ConfigDict(extra="forbid", strict=True)


class EnqueueRequest(_Strict):
    """A job to enqueue."""

    task: TaskName
    payload: Any = None
    job_id: JobId | None = Field(
        default=None, description="Dedupe key: enqueueing a known id again is a no-op.")
    delay: float | None = Field(default=None, ge=0, le=365 * 86400,
                                description="Seconds before the job may run.")
    max_attempts: Attempts | None = None
    lease_timeout: float | None = Field(default=None, gt=0, le=86400)


class JobIds(_Strict):
    """Dead jobs to act on."""

    job_ids: list[JobId] = Field(min_length=1, max_length=1000)


class RequeueAll(_Strict):
    """Every dead job of the queue."""

    all: Literal[True] = Field(description="Requeue every dead job of the queue.")


class PurgeWaiting(_Strict):
    """Confirms a purge of every waiting and delayed job."""

    confirm: Literal[True] = Field(
        description="Delete every waiting and delayed job of the queue.")


class PauseRequest(_Strict):
    """Confirms a pause (a JSON body also keeps a cross-site form from posting it)."""

    confirm: Literal[True] = Field(
        description="Stop every worker claiming from the queue until it is resumed.")


class ResumeRequest(_Strict):
    """An empty object: a route that takes a JSON body cannot be posted by a form of
    another site (a browser sends such a form without a preflight)."""


class CancelRequest(_Strict):
    """A cancel (a JSON body also keeps a cross-site form from posting it)."""

    job_id: JobId = Field(description="The job to cancel.")
    reason: str = Field(default="cancelled", max_length=4096,
                        description="Stored with the job; wait() raises it.")
