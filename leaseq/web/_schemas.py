"""The HTTP API's request and response bodies; FastAPI turns them into the OpenAPI
description and validates requests against them (a bad body is a 422, never a 500)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from ..protocol.validate import MAX_JOB_ID_LEN, MAX_TASK_LEN, PRINTABLE

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
"""The same rule as :func:`leaseq.protocol.keys.validate_queue_name`, for the OpenAPI schema."""

# No control characters, as leaseq.protocol.validate checks (anchored: a JSON Schema pattern may
# match anywhere in the string).
PRINTABLE_PATTERN = f"^{PRINTABLE}$"
JobId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_JOB_ID_LEN,
                                         pattern=PRINTABLE_PATTERN)]
TaskName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TASK_LEN,
                                            pattern=PRINTABLE_PATTERN)]


def _whole(value: Any) -> Any:
    # JSON Schema counts 1.0 as an integer; strict pydantic would not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Attempts = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(_whole)]
State = Literal["todo", "in_progress", "done", "dead", "delayed", "cancelled", "blocked"]


class _Strict(BaseModel):
    # strict: ``false`` is not a delay and ``0`` is not ``false``; a wrong type is a 422.
    model_config = ConfigDict(extra="forbid", strict=True)


class QueueSummary(BaseModel):
    """Counts of one queue (SCARD/ZCARD: cheap at any size)."""

    name: str
    todos: int
    in_progress: int
    delayed: int
    done: int
    dead: int
    done_last_minute: int = Field(description="Jobs acked in the last 60 s (retained ones).")
    reaper_seen_ms: int | None = Field(
        description="Redis time (ms) of the last reaper sweep; null if none ever ran.")
    paused: bool = Field(description="No worker claims from the queue while it is paused.")
    ordering: Literal["set", "fifo"] = Field(
        description="set: any waiting job may run next; fifo: priority, then enqueue "
                    "order, keys taking turns.")
    holding: int = Field(description="Leases holding a concurrency slot now.")
    waiting_on_limits: int = Field(
        description="Waiting jobs no worker may start now because of a limit or the "
                    "pause.")
    keys_waiting: int = Field(description="Keys with jobs that may start now (fifo).")
    keys_parked: int = Field(description="Keys held back by a per-key limit (fifo).")
    expired: int = Field(description="Jobs that ended dead because their start deadline "
                                     "passed (also counted in dead).")
    cancelled: int = Field(description="Jobs cancelled (Queue.cancel), kept until purged.")
    blocked: int = Field(description="Jobs waiting for the jobs they were enqueued after.")
    max_in_flight: int | None = Field(
        description="Jobs running at once across every worker; null: no limit.")
    key_concurrency: int | None = Field(
        description="Jobs of one key running at once; null: no limit.")
    rate_limit: str | None = Field(
        description="Job starts per period, e.g. ``50/1s`` or ``600/60s, burst 10``; "
                    "null: no limit.")
    key_rate: str | None = Field(description="The same per key; null: no limit.")


class LeaseView(BaseModel):
    """A job in progress and the lease its claimer holds."""

    job_id: str
    task: str | None
    attempt: int
    max_attempts: int | None
    owner: str | None = Field(description="The claimer (host:pid by default).")
    token: str | None = Field(description="The lease's fencing token.")
    age: float | None = Field(description="Seconds since the claim (Redis clock).")
    time_left: float | None = Field(
        description="Seconds until the lease expires; null when it already expired and "
                    "the reaper has not requeued the job yet.")
    lease_expiries: int = Field(description="Earlier leases of this job that expired.")
    cancel_pending: bool = Field(
        description="A cancel is bound to this lease: its worker stops the job, which "
                    "ends cancelled.")
    progress: dict[str, Any] | None = Field(
        description="The last progress its handler reported: fraction (0 to 1), message, "
                    "data, at (Redis ms).")


class LeaseEvent(BaseModel):
    """A lease that expired (its claimer died or hung) and what the reaper did."""

    at: int = Field(description="Redis time (ms) of the reap.")
    event: str
    job_id: str
    task: str | None = None
    attempt: int
    owner: str | None = None
    token: str | None = None
    claimed_at: int | None = None
    expiries: int
    outcome: Literal["requeued", "dead"]
    reason: str | None = None


class JobView(BaseModel):
    """Everything recorded about one job."""

    queue: str
    job_id: str
    state: State | None
    task: str | None
    payload: Any
    attempts: int
    max_attempts: int | None
    failures: int
    lease_expiries: int
    result: Any
    error: str | None
    dead_reason: str | None
    enqueued_at: float | None
    finished_at: float | None
    lease_ttl: float | None
    owner: str | None
    priority: int = Field(description="Fifo queues: higher runs first (0 by default).")
    key: str | None = Field(description="The job's fair-queueing key, if any.")
    expires_at: float | None = Field(
        description="Unix seconds (Redis's clock) by which the job must start, else it "
                    "ends dead.")
    cancel_reason: str | None = Field(
        description="Why the job was cancelled (also while its running worker stops it).")
    progress: dict[str, Any] | None = Field(
        description="The last progress its handler reported: fraction (0 to 1), message, "
                    "data, at (Redis ms).")
    after: list[str] = Field(description="The ids of the jobs it was enqueued after.")
    waiting_for: int = Field(
        description="While it is blocked: how many of those are not done yet.")


class ScheduleView(BaseModel):
    """A periodic schedule of the queue and how its ticks went."""

    name: str
    task: str
    spec: str = Field(description="``cron <expression> <zone>`` or ``every <seconds>s``.")
    overlap: str
    catch_up: int
    declared_at: float | None = Field(description="Unix seconds (Redis's clock).")
    stale: bool = Field(description="No scheduler declared it for a minute.")
    next_tick: float | None = Field(description="Unix seconds.")
    last_tick: float | None = Field(description="Unix seconds.")
    last_job: str | None
    last_job_state: str | None
    enqueued: int
    skipped_overlap: int
    skipped_missed: int


class QueueDetail(BaseModel):
    """One queue as the dashboard shows it."""

    summary: QueueSummary
    server_time_ms: int
    throughput: list[int] = Field(description="Acks per minute, oldest minute first.")
    leases: list[LeaseView]
    dead: list[JobView]
    events: list[LeaseEvent]
    schedules: list[ScheduleView]


class Overview(BaseModel):
    """Every queue's counts, and the server's clock."""

    server_time_ms: int
    queues: list[QueueSummary]


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


class Enqueued(BaseModel):
    """The id of the enqueued job."""

    queue: str
    job_id: str


class JobIds(_Strict):
    """Dead jobs to act on."""

    job_ids: list[JobId] = Field(min_length=1, max_length=1000)


class RequeueAll(_Strict):
    """Every dead job of the queue."""

    all: Literal[True] = Field(description="Requeue every dead job of the queue.")


class JobPage(BaseModel):
    """One page of a queue's jobs in one state."""

    jobs: list[JobView]
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` for the next page; null after the last.")


class WorkerView(BaseModel):
    """A live worker, as it last described itself."""

    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    in_flight: int
    started_at: float = Field(description="Unix seconds (the worker's clock).")
    last_seen: float = Field(description="Unix seconds (Redis's clock).")
    version: str
    counters: dict[str, int]


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


class Cancelled(BaseModel):
    """What a cancel did."""

    queue: str
    job_id: str
    outcome: Literal["cancelled", "delivered", "finished", "unknown"] = Field(
        description="cancelled: it had not started; delivered: its running worker stops "
                    "it and it ends cancelled; finished: done, dead or cancelled already; "
                    "unknown: no such job.")


class Paused(BaseModel):
    """Whether the queue is paused now."""

    queue: str
    paused: bool


class Moved(BaseModel):
    """How many jobs an action moved or deleted."""

    queue: str
    count: int


class Problem(BaseModel):
    """An error."""

    detail: Any
