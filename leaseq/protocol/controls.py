"""Scheduling controls stored with a queue: its ordering and its limits.

Every worker enforces them at claim time in ``claim.lua``, which reads them from the
queue's ``settings`` hash on each call, so they hold across every process at once. A
process that names a control (``Queue(max_in_flight=...)``) must agree with the stored
value (:class:`~leaseq.SettingsConflict` otherwise); one that does not name it applies
what is stored. :meth:`~leaseq.Queue.configure` changes them on purpose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..exceptions import InvalidInput, SettingsConflict
from . import validate
from .wire import text

__all__ = ["ORDERINGS", "UNSET", "Controls", "Rate"]

Ordering = Literal["set", "fifo"]
ORDERINGS = ("set", "fifo")
"""The orderings a queue may have: ``"set"`` (the default: any waiting job may be
claimed next) and ``"fifo"`` (priority, then enqueue order; round-robin between keys)."""

MAX_PRIORITY = 1000
"""Priorities run from -1000 to 1000 (higher first); the claim index's rank keeps
them exact beside a 12-digit enqueue counter."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""A control not named: apply the one stored with the queue (or none)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit: at most ``count`` job starts per ``per`` seconds, across every
    worker, with bursts of up to ``burst`` starts at once.

    Enforced at claim with Redis time (a GCRA: each start moves a theoretical arrival
    time on by ``per / count``), so a limited worker sleeps until the next start is due
    instead of polling. ``burst`` defaults to a tenth of a second's worth of starts (at
    least 2, at most ``count``): a worker that comes back a few milliseconds after a
    start fell due keeps that start instead of losing it, so a backlog starts at the
    rate. ``burst=1`` spaces every start by ``per / count`` exactly, and then lateness
    adds up (a claim 2 ms late on a 20 ms spacing costs 10 % of the rate)."""

    count: int
    """Starts allowed per period."""
    per: float = 1.0
    """The period in seconds."""
    burst: int | None = None
    """Starts allowed at once after an idle spell (``None`` on input: the default
    described above; always a number once built)."""

    def __post_init__(self) -> None:
        validate.positive_int(self.count, "Rate count")
        validate.millis(self.per, "Rate per")
        if self.burst is None:
            object.__setattr__(self, "burst", _default_burst(self.count, self.per))
        validate.positive_int(self.burst, "Rate burst")

    def encode(self) -> str:
        """The stored form, ``count:per_ms:burst``."""
        return f"{self.count}:{validate.millis(self.per, 'Rate per')}:{self.burst}"

    @classmethod
    def decode(cls, raw: str) -> Rate | None:
        """A stored rate, or ``None`` when the value is not one."""
        parts = raw.split(":")
        if len(parts) != 3 or not all(p.isdigit() and len(p) <= 15 for p in parts):
            return None
        count, per_ms, burst = (int(p) for p in parts)
        try:
            return cls(count, per_ms / 1000, burst)
        except InvalidInput:
            return None

    def __str__(self) -> str:
        usual = self.burst == _default_burst(self.count, self.per)
        return f"{self.count}/{self.per:g}s" + ("" if usual else f", burst {self.burst}")


def _default_burst(count: int, per: float) -> int:
    """A tenth of a second's worth of starts, at least 2, at most ``count``."""
    return min(count, max(2, math.ceil(count / per / 10)))


def _count(value: Any, name: str) -> int | None:
    return None if value is None else validate.positive_int(value, name)


def _rate(value: Any, name: str) -> Rate | None:
    if value is None or isinstance(value, Rate):
        return value
    raise InvalidInput(f"{name} must be a leaseq.Rate or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class Controls:
    """A queue's ordering and limits, as applied (see the module's docstring)."""

    ordering: Ordering = "set"
    max_in_flight: int | None = None
    key_concurrency: int | None = None
    rate_limit: Rate | None = None
    key_rate: Rate | None = None
    events: int | None = None
    """The length the queue's lifecycle event stream is kept at (about: ``XADD MAXLEN
    ~``); ``None``: no events are written (the default: they cost every job a few
    commands)."""

    @property
    def fifo(self) -> bool:
        """Whether waiting jobs are claimed in order (priority, enqueue order, keys)."""
        return self.ordering == "fifo"

    def stored(self) -> dict[str, str]:
        """The settings fields of these controls ('' = the field is removed)."""
        return {
            "ordering": self.ordering,
            "max_in_flight": "" if self.max_in_flight is None else str(self.max_in_flight),
            "key_concurrency": "" if self.key_concurrency is None else str(
                self.key_concurrency),
            "rate": "" if self.rate_limit is None else self.rate_limit.encode(),
            "key_rate": "" if self.key_rate is None else self.key_rate.encode(),
            "events": "" if self.events is None else str(self.events),
        }

    @classmethod
    def read(cls, raw: Mapping[Any, Any]) -> Controls:
        """The controls stored in a settings hash (values that are not valid are none)."""
        f = {text(k): text(v) for k, v in raw.items()}

        def count(name: str) -> int | None:
            v = f.get(name, "")
            return int(v) if v.isdigit() and 1 <= int(v) <= validate.MAX_COUNT else None

        return cls(
            ordering="fifo" if f.get("ordering") == "fifo" else "set",
            max_in_flight=count("max_in_flight"), key_concurrency=count("key_concurrency"),
            rate_limit=Rate.decode(f["rate"]) if "rate" in f else None,
            key_rate=Rate.decode(f["key_rate"]) if "key_rate" in f else None,
            events=count("events"))


# Constructor argument names and the stored field each maps to.
FIELDS = {"ordering": "ordering", "max_in_flight": "max_in_flight",
          "key_concurrency": "key_concurrency", "rate_limit": "rate",
          "key_rate": "key_rate", "events": "events"}


def given(
    ordering: Any = UNSET, max_in_flight: Any = UNSET, key_concurrency: Any = UNSET,
    rate_limit: Any = UNSET, key_rate: Any = UNSET, events: Any = UNSET,
) -> dict[str, Any]:
    """The controls a caller named, validated (``UNSET`` ones left out)."""
    out: dict[str, Any] = {}
    if ordering is not UNSET:
        if ordering not in ORDERINGS:
            raise InvalidInput(f"ordering must be 'set' or 'fifo', got {ordering!r}")
        out["ordering"] = ordering
    if max_in_flight is not UNSET:
        out["max_in_flight"] = _count(max_in_flight, "max_in_flight")
    if key_concurrency is not UNSET:
        out["key_concurrency"] = _count(key_concurrency, "key_concurrency")
    if rate_limit is not UNSET:
        out["rate_limit"] = _rate(rate_limit, "rate_limit")
    if key_rate is not UNSET:
        out["key_rate"] = _rate(key_rate, "key_rate")
    if events is not UNSET:
        out["events"] = _count(events, "events")
    return out


def check(queue: str, named: Mapping[str, Any], stored: Controls) -> Controls:
    """The controls to apply: the stored ones, which every named one must equal."""
    for name, value in named.items():
        have = getattr(stored, name)
        if have != value and not (name == "ordering" and have == "set" and value == "set"):
            raise SettingsConflict(queue, name, _show(have), _show(value))
    return stored


def _show(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)


def job_fields(
    fifo: bool, priority: int | None, key: str | None, expires_in: float | None,
    expires_at: float | None,
) -> tuple[str, str, str]:
    """A job's priority, key and start deadline in enqueue.lua's form, validated."""
    if (priority is not None or key is not None) and not fifo:
        what = "priority" if priority is not None else "key"
        raise InvalidInput(f"{what} needs a queue with ordering='fifo' (a set queue has "
                           "no order to place the job in)")
    prio = "0"
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int) \
                or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidInput(f"priority must be an integer from -{MAX_PRIORITY} to "
                               f"{MAX_PRIORITY}, got {priority!r}")
        prio = str(priority)
    fkey = "" if key is None else validate.fair_key(key)
    if expires_in is not None and expires_at is not None:
        raise InvalidInput("give expires_in or expires_at, not both")
    expires = ""
    if expires_in is not None:
        expires = f"+{validate.millis(expires_in, 'expires_in')}"
    elif expires_at is not None:
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float) \
                or not math.isfinite(expires_at) or not 0 < expires_at < 10**11:
            raise InvalidInput("expires_at must be a Unix time in seconds (Redis's clock), "
                               f"got {expires_at!r}")
        expires = str(math.ceil(expires_at * 1000))
    return prio, fkey, expires
