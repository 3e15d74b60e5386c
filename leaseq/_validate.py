"""Checks of user input, run before anything is written to Redis."""

from __future__ import annotations

import math
from typing import Any

from .exceptions import InvalidInput

MAX_TASK_LEN = 256
MAX_JOB_ID_LEN = 1024


def task_name(task: Any) -> str:
    """A task name: a non-empty string of at most 256 characters."""
    if not isinstance(task, str) or not task or len(task) > MAX_TASK_LEN:
        raise InvalidInput(f"task must be a non-empty string of at most 256 chars, got {task!r}")
    return _encodable(task, "task")


def job_id(value: Any) -> str:
    """An explicit job id: a non-empty string of at most 1024 characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_JOB_ID_LEN:
        raise InvalidInput(
            f"job_id must be a non-empty string of at most 1024 chars, got {value!r}")
    return _encodable(value, "job_id")


def _encodable(value: str, what: str) -> str:
    # Redis stores UTF-8; a lone surrogate (from a lenient decoder) cannot be sent.
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid Unicode (lone surrogate): {value!r}") from None
    return value


def seconds(value: Any, what: str, *, allow_zero: bool) -> float:
    """A finite number of seconds, positive (or also zero when ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def millis(value: Any, what: str) -> int:
    """Positive seconds as whole milliseconds (at least 1 ms)."""
    return max(1, round(seconds(value, what, allow_zero=False) * 1000))


def optional_millis(value: Any, what: str) -> int:
    """Non-negative seconds as milliseconds; ``None`` means 0."""
    if value is None:
        return 0
    return round(seconds(value, what, allow_zero=True) * 1000)


def positive_int(value: Any, what: str) -> int:
    """An ``int`` >= 1 (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{what} must be an integer >= 1, got {value!r}")
    return value
