"""The scheduler: fires the ticks of periodic schedules into a queue.

Any number of schedulers may run the same schedules (every worker may run one): there is
no leader. Each tick is decided once in Redis (``tick.lua``, a compare-and-set on the
schedule's last tick), and ticks are Redis's time, so schedulers on skewed clocks, or one
killed in the middle of a tick, change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import anyio
import structlog
from anyio.abc import TaskStatus

from ..exceptions import InvalidInput, SerializationError
from ..protocol import scheduling, validate
from ..protocol.admin import server_ms
from ..protocol.codec import encode
from ..protocol.queue import Queue
from ..protocol.schedule import Every, Schedule
from ..protocol.wire import error_text, redis_failure
from .outage import Outage

__all__ = ["Scheduler"]

log = structlog.get_logger("leaseq.scheduler")

_DECLARE_EVERY_MS = 5_000
_MAX_GRACE_PERIODS = 1000
"""Ticks within the grace are looked at one by one: bounded, so a round stays short."""


class Scheduler:
    """Fires ``schedules`` into ``queue`` until cancelled.

    A tick more than ``grace`` seconds old when a scheduler first gets to it counts as
    missed (every scheduler was down): each schedule's ``catch_up`` says how many of
    those still run. A new schedule starts at the first tick after a scheduler first
    saw it. Logs ``schedule_enqueued`` and ``schedule_skipped`` (with the reason).
    """

    def __init__(self, queue: Queue, schedules: Sequence[Schedule], *, grace: float = 5.0,
                 interval: float = 1.0) -> None:
        if not isinstance(queue, Queue):
            raise InvalidInput(f"Scheduler takes a Queue, got {queue!r}")
        self.queue = queue
        self.schedules = list(schedules)
        for s in self.schedules:
            if not isinstance(s, Schedule):
                raise InvalidInput(f"schedules are Cron or Every objects, got {s!r}")
        names = [s.name for s in self.schedules]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise InvalidInput(f"two schedules named {dup[0]!r}: give each a name=")
        self.grace_ms = validate.millis(grace, "grace")
        for s in self.schedules:
            # A payload the serializer cannot encode would fail at every tick.
            try:
                encode(queue.serializer, s.payload, f"payload of schedule {s.name!r}")
            except SerializationError as exc:
                raise InvalidInput(str(exc)) from exc
            if isinstance(s, Every) and self.grace_ms >= s.period_ms * _MAX_GRACE_PERIODS:
                raise InvalidInput(f"grace must be under {_MAX_GRACE_PERIODS} periods of "
                                   f"schedule {s.name!r}, got {grace!r} s")
        self.interval = validate.seconds(interval, "interval", allow_zero=False)
        self.outage = Outage("scheduler", queue=queue.name)
        self._declared_at = -math.inf

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire due ticks and sleep until the next one (at most ``interval``), until
        cancelled; Redis errors are waited out."""
        log.info("scheduler_started", queue=self.queue.name,
                 schedules=[s.name for s in self.schedules])
        task_status.started()
        backoff = 0.05
        while True:
            try:
                wait = await self.tick_once()
            except Exception as exc:
                # Never the worker's end: a Redis failure is waited out, anything else
                # (a bug, a corrupt state) is logged and tried again later.
                if redis_failure(exc):
                    self.outage.failed(exc, retry_in=backoff)
                else:
                    log.error("scheduler_failed", queue=self.queue.name,
                              error=error_text(exc), retry_in=backoff)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.outage.ok()
            backoff = 0.05
            await anyio.sleep(wait)

    async def tick_once(self) -> float:
        """Fire what is due now; return how long to sleep before the next tick."""
        now = await server_ms(self.queue.redis)
        if now - self._declared_at >= _DECLARE_EVERY_MS:
            await scheduling.declare(self.queue, self.schedules)
            self._declared_at = now
        next_due = now + self.interval * 1000
        for schedule in self.schedules:
            await self._fire_due(schedule, now)
            next_due = min(next_due, schedule.next_tick(now))
        # A little past the tick, so that Redis's clock has reached it on arrival.
        return max(0.0, (next_due - now) / 1000) + 0.002

    async def _fire_due(self, schedule: Schedule, now: int) -> None:
        last = await scheduling.last_tick(self.queue, schedule)
        if last is None:
            await scheduling.fire(self.queue, schedule, None, "baseline", now)
            return
        due = schedule.due(last, now, self.grace_ms)
        if due.skipped and due.last_skipped is not None:
            outcome = await scheduling.fire(self.queue, schedule, last, "missed",
                                            due.last_skipped, due.skipped)
            if outcome != "missed":
                return  # another scheduler decided these ticks: read again next time
            log.warning("schedule_skipped", queue=self.queue.name, schedule=schedule.name,
                        reason="missed", ticks=due.skipped, until=due.last_skipped)
            last = due.last_skipped
        for tick in due.run:
            outcome = await scheduling.fire(self.queue, schedule, last, "run", tick)
            if outcome == "raced":
                return
            last = tick
            if outcome == "overlap":
                log.info("schedule_skipped", queue=self.queue.name, schedule=schedule.name,
                         reason="overlap", tick=tick)
            elif outcome == "enqueued":
                log.info("schedule_enqueued", queue=self.queue.name, schedule=schedule.name,
                         tick=tick, job_id=schedule.job_id(tick))
