"""The HTTP API's response bodies (the request bodies are in ``_bodies``); FastAPI turns
them into the OpenAPI description, and checks every answer against them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints

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
RedisMs = Annotated[int, Field(description="Redis time in milliseconds since the epoch.")]


class QueueSummary(BaseModel):
    """Counts of one queue (SCARD/ZCARD: cheap at any size)."""

    name: str
    todos: int = Field(description="Jobs waiting to be claimed.")
    in_progress: int = Field(description="Jobs claimed and not settled yet (expired "
                                         "leases the reaper has not seen included).")
    delayed: int = Field(description="Jobs waiting for their time (delays, retry backoff).")
    done: int = Field(description="Acked jobs the retention still keeps.")
    dead: int = Field(description="Jobs out of attempts or that could not run.")
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
    attempt: int = Field(description="1 for the first claim, 2 for the second, ...")
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

    at: RedisMs = Field(description="Redis time (ms) of the reap.")
    event: str = Field(description="Always ``lease_expired``.")
    job_id: str
    task: str | None = None
    attempt: int = Field(description="The attempt whose lease expired.")
    owner: str | None = Field(default=None, description="Who held the lease.")
    token: str | None = Field(default=None, description="The expired lease's token.")
    claimed_at: int | None = Field(default=None,
                                   description="Redis time (ms) of that claim.")
    expiries: int = Field(description="The job's lease expiries so far, this one included.")
    outcome: Literal["requeued", "dead", "cancelled"] = Field(
        description="requeued: back to todos; dead: out of attempts; cancelled: a cancel "
                    "was bound to the lease.")
    reason: str | None = Field(default=None, description="Why it ended dead or cancelled.")


class JobView(BaseModel):
    """Everything recorded about one job (what ``leaseq inspect`` shows)."""

    queue: str
    job_id: str
    state: State | None = Field(
        description="Which set holds the id; null when the hash exists but no set does.")
    task: str | None
    payload: Any = Field(description="The decoded payload (its repr when JSON cannot "
                                     "carry it).")
    attempts: int = Field(description="Claims so far (releases not counted).")
    max_attempts: int | None = Field(description="Claims allowed before dead.")
    failures: int = Field(description="Handler failures recorded.")
    lease_expiries: int = Field(description="Leases that expired and were reaped.")
    result: Any = Field(description="The result of a done job, else null.")
    error: str | None = Field(
        description="The last error recorded: ``Type: message`` and the innermost frames "
                    "of its traceback.")
    dead_reason: str | None = Field(description="Why the job is dead, when it is.")
    enqueued_at: float | None = Field(description="Unix seconds (Redis's clock).")
    finished_at: float | None = Field(
        description="Unix seconds (Redis's clock) of the ack or the move to dead or "
                    "cancelled.")
    lease_token: str | None = Field(
        default=None, description="The token of the live lease, when one exists.")
    lease_ttl: float | None = Field(description="Seconds left on the live lease.")
    owner: str | None = Field(description="The last claimer (host:pid by default).")
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
    overlap: str = Field(description="``allow``, or ``skip`` while the last job waits "
                                     "or runs.")
    catch_up: int = Field(description="Missed ticks still enqueued after a downtime.")
    declared_at: float | None = Field(description="Unix seconds (Redis's clock).")
    stale: bool = Field(description="No scheduler declared it for a minute.")
    next_tick: float | None = Field(description="Unix seconds.")
    last_tick: float | None = Field(description="Unix seconds.")
    last_job: str | None
    last_job_state: str | None
    enqueued: int
    skipped_overlap: int
    skipped_missed: int


class WorkerView(BaseModel):
    """A live worker, as it last described itself."""

    id: str = Field(description="``host:pid:nonce``, unique per run.")
    host: str
    pid: int
    queues: list[str] = Field(description="Every queue it serves.")
    concurrency: int = Field(description="Jobs it runs at once at most.")
    in_flight: int = Field(description="Jobs it ran when it last said it was alive.")
    started_at: float = Field(description="Unix seconds (the worker's clock).")
    last_seen: float = Field(
        description="Unix seconds (Redis's clock) of its last heartbeat; it drops out of "
                    "the list five presence intervals after its last one.")
    version: str
    counters: dict[str, int] = Field(
        description="Its job counters: claimed, acked, failed, dead, lease_lost, released.")


class Rates(BaseModel):
    """Jobs per minute over the last minutes, by Redis's clock, oldest minute first; the
    last minute is the current one, still filling."""

    minute_starts: list[RedisMs] = Field(description="Redis time (ms) each minute starts.")
    acked: list[int] = Field(description="Jobs acked (retained done jobs, by done_at).")
    failed: list[int] = Field(
        description="Runs that failed (retried or dead), from the workers' per-task "
                    "statistics, which they flush every 5 s.")
    expired: list[int] = Field(
        description="Leases the reaper found expired, from the last 200 it recorded.")
    expired_capped: bool = Field(
        description="The 200 recorded expiries do not reach back over every minute "
                    "shown: the oldest counts may be too low.")


class QueueDetail(BaseModel):
    """One queue as the dashboard shows it."""

    summary: QueueSummary
    server_time_ms: RedisMs
    throughput: list[int] = Field(
        description="Acks in each of the last minutes ending now, oldest minute first.")
    rates: Rates
    leases: list[LeaseView]
    dead: list[JobView]
    events: list[LeaseEvent]
    schedules: list[ScheduleView]
    workers: list[WorkerView] = Field(description="Live workers, newest first.")
    workers_total: int = Field(description="Live workers, all of them (at most 1,000).")


class Overview(BaseModel):
    """Every queue's counts, and the server's clock."""

    server_time_ms: RedisMs
    queues: list[QueueSummary]


class Enqueued(BaseModel):
    """The id of the enqueued job."""

    queue: str
    job_id: str


class JobPage(BaseModel):
    """One page of a queue's jobs in one state."""

    jobs: list[JobView]
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` for the next page; null after the last.")


class JobMatch(BaseModel):
    """A job whose id starts with the prefix searched for (no payload: a light row)."""

    job_id: str = Field(description="The job's id.")
    state: State = Field(description="The set the id was found in.")
    task: str | None = Field(description="Its task; null when its hash is gone or corrupt.")
    attempts: int = Field(description="Claims so far (releases not counted).")
    max_attempts: int | None = Field(description="Claims allowed before dead.")
    enqueued_at: float | None = Field(description="Unix seconds (Redis's clock).")
    finished_at: float | None = Field(description="Unix seconds (Redis's clock).")


class SearchPage(BaseModel):
    """One bounded step of a search of a queue's job ids by prefix."""

    queue: str = Field(description="The queue searched.")
    prefix: str = Field(description="The start of the ids searched for.")
    jobs: list[JobMatch] = Field(description="The matches of this page, live states first, "
                                             "then by id.")
    scan_steps: int = Field(
        description="SSCAN/ZSCAN calls made for this page (at most 20 of COUNT 250: "
                    "about 5,000 ids looked at).")
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` to search on; null once every state was searched.")


class Attempt(BaseModel):
    """One claim of a job and how it ended, put together from what the queue keeps."""

    attempt: int | None = Field(
        description="1 for the first claim, 2 for the second, ... (a released claim's "
                    "successor has its number again); null when no record says and it "
                    "cannot be worked out.")
    token: str | None = Field(description="The claim's fencing token.")
    owner: str | None = Field(description="The claimer (host:pid by default).")
    claimed_at: int | None = Field(description="Redis time (ms) of the claim.")
    ended_at: int | None = Field(description="Redis time (ms) it ended, when recorded.")
    end: Literal["running", "lease_expired", "acked", "failed", "released", "buried",
                 "cancelled", "unknown"] = Field(
        description="running: its lease holds now; lease_expired: its claimer died, hung "
                    "or lost Redis; acked, failed, released, buried or cancelled by its "
                    "claimer; unknown: no record tells.")
    outcome: str | None = Field(
        description="Where the job went: requeued/todo, delayed, dead, cancelled, done; "
                    "null while running or not reaped yet.")
    detail: str | None = Field(description="The error or reason recorded for this end.")
    lease_ttl: float | None = Field(description="Seconds left on its lease, while running.")
    sources: list[Literal["claim", "ack", "settles", "expiries", "stream"]] = Field(
        description="What it was read from: the job hash's last claim, its last ack, its "
                    "settlement history, the reaper's expiries or the lifecycle stream.")


class Settlement(BaseModel):
    """A fail, release, bury or cancel of a claim (the job hash keeps the last 8)."""

    token: str = Field(description="The settled claim's token.")
    mode: str = Field(description="fail, release, bury or cancel.")
    outcome: str = Field(description="todo, delayed, dead or cancelled.")


class TimelineEvent(BaseModel):
    """A lifecycle event of the job, from the queue's stream (``Queue(events=N)``)."""

    id: str = Field(description="The stream entry's id.")
    at: RedisMs
    type: str = Field(description="enqueued, started, progress, acked, failed, retried, "
                                  "released, dead, cancel_requested, cancelled or "
                                  "lease_expired.")
    data: dict[str, str] = Field(description="What the event says: attempt, token, owner, "
                                             "error, outcome, reason, progress, task.")


class Preview(BaseModel):
    """A value as pretty-printed JSON, cut to a size a page can show."""

    text: str | None = Field(
        description="The value as indented JSON (its repr when JSON cannot carry it), at "
                    "most 16,384 characters; null when there is none.")
    size: int = Field(description="Characters of the whole text.")
    truncated: bool = Field(description="The text was cut; the whole value is at "
                                        "GET /queues/{name}/jobs/{job_id}.")


class LastClaim(BaseModel):
    """The job hash's record of its latest claim."""

    token: str | None = Field(description="Its fencing token.")
    owner: str | None = Field(description="Its claimer (host:pid by default).")
    claimed_at: int | None = Field(description="Redis time (ms).")


class JobDetail(BaseModel):
    """One job with its attempts, as the dashboard's job view shows it."""

    job: JobView = Field(description="The job; its payload and result are null here "
                                     "and given below as previews.")
    server_time_ms: RedisMs
    payload: Preview
    result: Preview
    last_claim: LastClaim
    releases: int = Field(description="Claims given back (a shutdown), not counted as "
                                      "attempts.")
    attempts: list[Attempt] = Field(description="Its claims, oldest first.")
    numbered: bool = Field(
        description="Every claim since the enqueue is known, so each has its number.")
    settlements: list[Settlement] = Field(description="Newest first.")
    expiries: list[LeaseEvent] = Field(
        description="The job's lease expiries among the last 200 the reaper recorded, "
                    "newest first.")
    stream: bool = Field(description="The queue keeps a lifecycle stream.")
    timeline: list[TimelineEvent] = Field(
        description="The job's events among the stream's newest 500, newest first.")
    actions: list[Literal["requeue", "purge", "cancel"]] = Field(
        description="What the dashboard offers for the job in its state.")


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
    """An error: ``detail`` says what went wrong (for a refused input, a list of what
    was wrong where)."""

    detail: Any
