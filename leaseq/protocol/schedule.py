"""Periodic schedules: :class:`Cron` and :class:`Every`, and which of their ticks fall
due between two instants.

A tick is an instant in Unix milliseconds, by Redis's clock. The job of a tick has a
deterministic id (``<schedule name>@<tick>``), so whichever scheduler fires a tick, it
is the same job; ``tick.lua`` records each tick once (see ``docs/protocol.md``).
Cron expressions are parsed and evaluated by ``cronsim`` in the schedule's time zone
(``zoneinfo``): a time that a daylight-saving change skips runs once at the change
(02:30 on a day that jumps from 02:00 to 03:00 runs at 03:00), and a time in the
repeated hour runs once (at its first occurrence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..exceptions import InvalidInput
from . import validate

__all__ = ["Cron", "Due", "Every", "Schedule", "from_timing"]

Overlap = Literal["allow", "skip"]
_MAX_CATCH_UP = 1000


@dataclass(frozen=True)
class Due:
    """The ticks of a schedule after its last one, up to now: ``run`` in order (the
    on-time ones, and at most ``catch_up`` missed ones before them), and ``skipped``
    missed ticks before those (recorded up to ``last_skipped``)."""

    run: tuple[int, ...]
    skipped: int = 0
    last_skipped: int | None = None


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """What both kinds of schedule share. ``name`` (default: the task's name) identifies
    the schedule in Redis: keep it when changing the expression, so the new one goes on
    from the last tick of the old. ``overlap="skip"`` enqueues nothing while the
    previous job of the schedule is still waiting, delayed or running (the skip is
    recorded). After every scheduler was down, ``catch_up`` is how many of the missed
    ticks (the newest) are still enqueued; the others are recorded as skipped. A tick
    is missed when no scheduler fired it within the scheduler's ``grace`` seconds.
    ``max_attempts`` and ``lease_timeout`` apply to each job as in
    :meth:`~leaseq.Queue.enqueue`."""

    task: str
    payload: Any = None
    name: str = ""
    overlap: Overlap = "allow"
    catch_up: int = 1
    max_attempts: int | None = None
    lease_timeout: float | None = None

    def __post_init__(self) -> None:
        validate.task_name(self.task)
        object.__setattr__(self, "name", validate.task_name(self.name or self.task))
        if self.overlap not in ("allow", "skip"):
            raise InvalidInput(f"overlap must be 'allow' or 'skip', got {self.overlap!r}")
        if isinstance(self.catch_up, bool) or not isinstance(self.catch_up, int) \
                or not 0 <= self.catch_up <= _MAX_CATCH_UP:
            raise InvalidInput(f"catch_up must be an integer from 0 to {_MAX_CATCH_UP}, "
                               f"got {self.catch_up!r}")
        if self.max_attempts is not None:
            validate.positive_int(self.max_attempts, "max_attempts")
        if self.lease_timeout is not None:
            validate.millis(self.lease_timeout, "lease_timeout")

    def job_id(self, tick: int) -> str:
        """The id of the job of ``tick``: the same in every scheduler."""
        return f"{self.name}@{tick}"

    def next_tick(self, after: int) -> int:
        """The first tick after ``after`` (ms)."""
        raise NotImplementedError

    def ticks(self, after: int, until: int) -> tuple[int, list[int]]:
        """How many ticks fall in ``(after, until]``, and the newest of them (at most
        the last ``_MAX_CATCH_UP + 1000``; the count is exact)."""
        raise NotImplementedError

    def spec(self) -> str:
        """The schedule's timing as text (``cron */5 * * * * Europe/Paris``, ``every 60s``)."""
        raise NotImplementedError

    def due(self, after: int, now: int, grace_ms: int) -> Due:
        """The ticks in ``(after, now]`` and what to do with each, when ticks older than
        ``grace_ms`` count as missed."""
        count, newest = self.ticks(after, now)
        on_time = [t for t in newest if now - t <= grace_ms]
        missed = newest[:len(newest) - len(on_time)]
        missed_count = count - len(on_time)
        kept = missed[len(missed) - min(self.catch_up, len(missed)):]
        run = kept + on_time
        skipped = missed_count - len(kept)
        last_skipped = None
        if skipped:
            # The newest skipped tick; one just before the first tick to run stands for
            # it when so many were missed that it is older than the ticks looked at.
            last_skipped = (missed[-len(kept) - 1] if len(missed) > len(kept)
                            else run[0] - 1)
        return Due(run=tuple(run), skipped=skipped, last_skipped=last_skipped)

    def timing(self) -> dict[str, Any]:
        """The schedule's timing as data (``{"every": 60}``, ``{"cron": ..., "tz": ...}``),
        from which :func:`from_timing` makes it again."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What a scheduler declares about the schedule (for ``leaseq schedules``)."""
        return {"name": self.name, "task": self.task, "spec": self.spec(),
                "timing": self.timing(), "overlap": self.overlap, "catch_up": self.catch_up}


_KEEP = _MAX_CATCH_UP + 1000


@dataclass(frozen=True, kw_only=True)
class Every(Schedule):
    """A tick every ``seconds`` (at least 1 s, a whole number of milliseconds), at
    multiples of the period since the Unix epoch: ``Every(60, ...)`` ticks at each minute
    by Redis's clock, whichever process fires it."""

    seconds: float = field(kw_only=False)

    def __init__(self, seconds: float, task: str, payload: Any = None, **options: Any) -> None:
        object.__setattr__(self, "seconds", seconds)
        Schedule.__init__(self, task=task, payload=payload, **options)

    def __post_init__(self) -> None:
        super().__post_init__()
        period = validate.millis(self.seconds, "seconds")
        if period < 1000:
            raise InvalidInput(f"seconds must be at least 1, got {self.seconds!r}")

    @property
    def period_ms(self) -> int:
        """The period in milliseconds."""
        return validate.millis(self.seconds, "seconds")

    def next_tick(self, after: int) -> int:
        """See :meth:`Schedule.next_tick`."""
        return (after // self.period_ms + 1) * self.period_ms

    def ticks(self, after: int, until: int) -> tuple[int, list[int]]:
        """See :meth:`Schedule.ticks`."""
        p = self.period_ms
        first, last = after // p + 1, until // p
        if last < first:
            return 0, []
        return last - first + 1, [k * p for k in range(max(first, last - _KEEP + 1), last + 1)]

    def spec(self) -> str:
        """See :meth:`Schedule.spec`."""
        return f"every {self.seconds}s"

    def timing(self) -> dict[str, Any]:
        """See :meth:`Schedule.timing`."""
        return {"every": self.seconds}


@dataclass(frozen=True, kw_only=True)
class Cron(Schedule):
    """A tick at each time a five-field cron expression matches (``"*/5 * * * *"``,
    ``"30 2 * * mon-fri"``) in the time zone ``tz`` (an IANA name; default UTC)."""

    expression: str = field(kw_only=False)
    tz: str = "UTC"

    def __init__(self, expression: str, task: str, payload: Any = None, *, tz: str = "UTC",
                 **options: Any) -> None:
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "tz", tz)
        Schedule.__init__(self, task=task, payload=payload, **options)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.expression, str) or len(self.expression.split()) != 5:
            raise InvalidInput(f"a cron expression has five fields (minute hour day month "
                               f"weekday), got {self.expression!r}")
        try:
            zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise InvalidInput(f"unknown time zone {self.tz!r}") from exc
        try:
            CronSim(self.expression, datetime.now(zone))
        except CronSimError as exc:
            raise InvalidInput(f"bad cron expression {self.expression!r}: {exc}") from exc

    def _iter(self, after: int) -> CronSim:
        start = datetime.fromtimestamp(after / 1000, timezone.utc).astimezone(ZoneInfo(self.tz))
        return CronSim(self.expression, start)

    def next_tick(self, after: int) -> int:
        """See :meth:`Schedule.next_tick`."""
        # cronsim starts from the local wall time and ignores `fold`: in a repeated
        # hour its first answer may be before `after`.
        for when in self._iter(after):
            if _ms(when) > after:
                return _ms(when)
        raise AssertionError("a cron expression that never matches")  # pragma: no cover

    def ticks(self, after: int, until: int) -> tuple[int, list[int]]:
        """See :meth:`Schedule.ticks` (cron ticks are whole minutes: a long outage costs
        one step per missed minute to count)."""
        count, newest = 0, []
        for when in self._iter(after):
            tick = _ms(when)
            if tick > until:
                break
            if tick > after:
                count += 1
                newest.append(tick)
                if len(newest) > _KEEP:
                    del newest[0]
        return count, newest

    def spec(self) -> str:
        """See :meth:`Schedule.spec`."""
        return f"cron {self.expression} {self.tz}"

    def timing(self) -> dict[str, Any]:
        """See :meth:`Schedule.timing`."""
        return {"cron": self.expression, "tz": self.tz}


def from_timing(timing: Any, task: str) -> Schedule | None:
    """A schedule of ``task`` with a declared :meth:`Schedule.timing`, enough to tell its
    next tick; ``None`` for anything leaseq did not write."""
    if not isinstance(timing, dict):
        return None
    try:
        if "every" in timing:
            return Every(timing["every"], task)
        if "cron" in timing:
            return Cron(timing["cron"], task, tz=timing.get("tz", "UTC"))
    except (InvalidInput, TypeError):
        return None
    return None


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)
