"""A queue's settings stored with the queue, so every process applies the same ones.

The default lease length, the default attempts and the retention of done jobs live in the
queue's ``settings`` hash. A process that sets one explicitly (``Queue(done_ttl=...)``, a
CLI flag) stores it; a process that does not (a reaper sidecar, the dashboard, a worker
started with defaults) applies what is stored, and the built-in default only when nothing
is. Otherwise retention would depend on who happens to run the reaper.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import structlog

from .validate import MAX_COUNT, MAX_SECONDS
from .wire import text

log = structlog.get_logger("leaseq.queue")


class Stored(enum.Enum):
    """The type of :data:`STORED`."""

    STORED = "stored"


STORED = Stored.STORED
"""A setting not given: use the value stored with the queue, else the built-in default."""

DEFAULTS: dict[str, int | None] = {
    "lease_ms": 30_000, "max_attempts": 5, "done_ttl_ms": 86_400_000, "done_max": 100_000}
"""Built-in defaults, in the stored form (milliseconds; ``None`` = retention rule off)."""

_NONE = "none"


def encode(value: int | None) -> str:
    """A setting as stored in the hash."""
    return _NONE if value is None else str(value)


# What a stored value may be, as the client would accept it (a value beyond, written
# behind the queue's back, is ignored: the built-in default applies).
_BOUNDS = {"lease_ms": (1, MAX_SECONDS * 1000), "max_attempts": (1, MAX_COUNT),
           "done_ttl_ms": (0, MAX_SECONDS * 1000), "done_max": (0, MAX_COUNT)}


def decode(raw: Any, field: str) -> int | Stored | None:
    """A stored setting; :data:`STORED` (not usable) for a value that is not one."""
    value = text(raw)
    if value == _NONE and field in ("done_ttl_ms", "done_max"):
        return None
    if not value.isdigit() or len(value) > 15:
        return STORED
    low, high = _BOUNDS[field]
    number = int(value)
    return number if low <= number <= high else STORED


def merge(
    queue: str, explicit: Mapping[str, int | None], stored_raw: Mapping[Any, Any]
) -> tuple[dict[str, int | None], dict[str, str]]:
    """The settings this process applies, and the fields it must store.

    Explicit values win and are stored (with a warning when they change a stored value:
    two processes disagree about the queue); the others come from the hash, else from
    :data:`DEFAULTS`.
    """
    stored = {text(k): decode(v, text(k)) for k, v in stored_raw.items()
              if text(k) in DEFAULTS}
    applied: dict[str, int | None] = {}
    to_store: dict[str, str] = {}
    for field, default in DEFAULTS.items():
        found = stored.get(field, STORED)
        if field in explicit:
            value = explicit[field]
            applied[field] = value
            if found is STORED or found != value:
                to_store[field] = encode(value)
            if found is not STORED and found != value:
                log.warning("queue_settings_changed", queue=queue, setting=field,
                            stored=found, now=value,
                            detail="this process sets the queue's setting explicitly and "
                                   "replaces the stored value other processes apply")
        else:
            applied[field] = default if found is STORED else found
    return applied, to_store
