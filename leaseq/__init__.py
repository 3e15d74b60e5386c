"""leaseq: an at-least-once asyncio work queue on Redis with fenced lease timeouts."""

from __future__ import annotations

from ._version import VERSION
from .exceptions import (
    InvalidInput,
    JobCancelled,
    JobDead,
    JobNotFound,
    LeaseLost,
    LeaseqError,
    SerializationError,
    SettingsConflict,
    WaitTimeout,
)
from .models import (
    JobInfo,
    JobState,
    Lease,
    QueueEvent,
    QueueStats,
    ScheduleInfo,
    WorkerInfo,
)
from .protocol.cancelling import CancelOutcome
from .protocol.codec import JsonSerializer, Serializer
from .protocol.controls import Rate
from .protocol.queue import Queue
from .protocol.router import Router
from .protocol.schedule import Cron, Every, Schedule
from .runtime.policy import Policy, Priority, Weighted
from .runtime.reaper import Reaper, SweepReport
from .runtime.scheduler import Scheduler
from .runtime.task import Backoff, Handler, JobContext, Lifespan, Middleware, Task
from .runtime.typed import Call, TaskRun, TypedTask, task
from .runtime.worker import Worker

__version__ = VERSION

__all__ = (
    "Backoff",
    "Call",
    "CancelOutcome",
    "Cron",
    "Every",
    "Handler",
    "InvalidInput",
    "JobCancelled",
    "JobContext",
    "JobDead",
    "JobInfo",
    "JobNotFound",
    "JobState",
    "JsonSerializer",
    "Lease",
    "LeaseLost",
    "LeaseqError",
    "Lifespan",
    "Middleware",
    "Policy",
    "Priority",
    "Queue",
    "QueueEvent",
    "QueueStats",
    "Rate",
    "Reaper",
    "Router",
    "Schedule",
    "ScheduleInfo",
    "Scheduler",
    "SerializationError",
    "Serializer",
    "SettingsConflict",
    "SweepReport",
    "Task",
    "TaskRun",
    "TypedTask",
    "WaitTimeout",
    "Weighted",
    "Worker",
    "WorkerInfo",
    "__version__",
    "task",
)
