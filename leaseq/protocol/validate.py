"""Checks of user input, run before anything is written to Redis.

Bounds follow what Redis and its Lua scripts can take: scripts see numbers as doubles and
hand them to Redis formatted with ``%.14g``, so a millisecond count must stay well below
10^14 to reach ``SET PX``/``ZADD`` as a plain integer; counts stay in the range where a
double is exact.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Literal

from ..exceptions import InvalidInput

MAX_TASK_LEN = 256
MAX_JOB_ID_LEN = 1024
MAX_OWNER_LEN = 256
MAX_KEY_LEN = 256
MAX_SECONDS = 10 * 365 * 86_400
"""The longest duration leaseq accepts (ten years): far below what Redis refuses."""
MAX_COUNT = 2**31 - 1
"""The largest count (attempts, retention size, ...) leaseq accepts."""

# Names and ids are stored, logged and shown one per line: control characters (a newline
# above all) would forge log lines and table rows. A full match, so a trailing newline
# cannot slip through the way it does with ``$``.
PRINTABLE = r"[^\x00-\x1f\x7f]+"
"""What names and ids may hold: any character but a control character."""
_PRINTABLE = re.compile(PRINTABLE)


def task_name(task: Any) -> str:
    """A task name: 1-256 characters, no control characters."""
    if not isinstance(task, str) or not task or len(task) > MAX_TASK_LEN \
            or not _PRINTABLE.fullmatch(task):
        raise InvalidInput("task must be a string of 1-256 characters without control "
                           f"characters, got {task!r}")
    return _encodable(task, "task")


def job_id(value: Any) -> str:
    """An explicit job id: 1-1024 characters, no control characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_JOB_ID_LEN \
            or not _PRINTABLE.fullmatch(value):
        raise InvalidInput("job_id must be a string of 1-1024 characters without control "
                           f"characters, got {value!r}")
    return _encodable(value, "job_id")


def owner(value: Any) -> str:
    """A claimer's name (recorded with each lease): 1-256 characters, no control
    characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_OWNER_LEN \
            or not _PRINTABLE.fullmatch(value):
        raise InvalidInput("owner must be a string of 1-256 characters without control "
                           f"characters, got {value!r}")
    return _encodable(value, "owner")


def fair_key(value: Any) -> str:
    """A fair-queueing key (``enqueue(key=...)``): 1-256 characters, no control
    characters (the claim index separates keys from ranks with one)."""
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_LEN \
            or not _PRINTABLE.fullmatch(value):
        raise InvalidInput("key must be a string of 1-256 characters without control "
                           f"characters, got {value!r}")
    return _encodable(value, "key")


def _encodable(value: str, what: str) -> str:
    # Redis stores UTF-8; a lone surrogate (from a lenient decoder) cannot be sent.
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid Unicode (lone surrogate): {value!r}") from None
    return value


def storable(text: str) -> str:
    """``text`` made safe to store: what UTF-8 cannot encode (lone surrogates, from a file
    name decoded with ``surrogateescape``, say) becomes a ``\\udcxx`` escape."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def seconds(value: Any, what: str, *, allow_zero: bool) -> float:
    """A finite number of seconds up to :data:`MAX_SECONDS`, positive (or also zero when
    ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{what} must be a number of seconds, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond a double's range
        number = math.inf
    if not math.isfinite(number) or number > MAX_SECONDS:
        raise InvalidInput(
            f"{what} must be a finite number of seconds up to {MAX_SECONDS} (ten years), "
            f"got {value!r}")
    if number < 0 or (number == 0 and not allow_zero):
        raise InvalidInput(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return number


def millis(value: Any, what: str) -> int:
    """Positive seconds as whole milliseconds (at least 1 ms)."""
    return max(1, round(seconds(value, what, allow_zero=False) * 1000))


def optional_millis(value: Any, what: str) -> int:
    """Non-negative seconds as milliseconds; ``None`` means 0."""
    if value is None:
        return 0
    return round(seconds(value, what, allow_zero=True) * 1000)


def positive_int(value: Any, what: str, maximum: int = MAX_COUNT) -> int:
    """An ``int`` from 1 to ``maximum`` (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInput(f"{what} must be an integer from 1 to {maximum}, got {value!r}")
    return value


AfterPolicy = Literal["dead", "always"]
"""What a job enqueued ``after=`` others does when one of them fails: end ``dead``
without running, or run ``always``."""

MAX_DEPENDENCIES = 10_000


def dependencies(
    after: Iterable[str] | None, policy: object, delay: float | None,
    expires_in: float | None, expires_at: float | None,
) -> list[str]:
    """The ids a job waits for (``enqueue(after=...)``), each once, checked; ``[]`` for
    none."""
    if policy not in ("dead", "always"):
        raise InvalidInput(f"after_policy must be 'dead' or 'always', got {policy!r}")
    if after is None:
        return []
    if isinstance(after, str | bytes):
        raise InvalidInput("after must be a list of job ids, not one string")
    deps = list(dict.fromkeys(job_id(i) for i in after))
    if len(deps) > MAX_DEPENDENCIES:
        raise InvalidInput(f"after names {len(deps)} jobs, at most {MAX_DEPENDENCIES}")
    if deps and delay:
        raise InvalidInput("after cannot be combined with delay")
    if deps and (expires_in is not None or expires_at is not None):
        raise InvalidInput("after cannot be combined with a start deadline")
    return deps
