"""One log line per outage: failed Redis calls of one part of a process are reported
when the first fails and when one succeeds again, not once per call.

During a refusal (a server at ``maxmemory``, a long script, a failed save) every job's
ack, settle and renewal fails the same way; a line per call would bury the one line an
operator needs under thousands of copies.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from ..protocol.wire import error_text

log = structlog.get_logger("leaseq.worker")


QUIET = 10.0
"""Seconds after a ``redis_unavailable`` line in which a new outage of the same part is
not logged again: under ``maxmemory`` some calls of a part pass and others are refused,
and each pass would otherwise end an episode and the next refusal start one."""


class Outage:
    """Tracks failed Redis calls of one ``component`` (``claim``, ``ack``, ...).

    :meth:`failed` logs ``redis_unavailable`` (a warning) at the first failure of an
    episode and counts the rest; :meth:`ok` logs ``redis_recovered`` (with the number of
    failures and the episode's length) at the first success after failures. An outage
    that starts within :data:`QUIET` seconds of the last logged one is folded into it:
    its failures are counted, and reported with the next ``redis_recovered``.
    """

    __slots__ = ("_reported", "_warned_at", "component", "context", "failures", "since")

    def __init__(self, component: str, **context: Any) -> None:
        self.component = component
        self.context = context
        self.failures = 0
        self.since: float | None = None
        self._warned_at = -QUIET
        self._reported = False

    @property
    def active(self) -> bool:
        """Whether the last call of this component failed."""
        return self.since is not None

    def failed(self, exc: BaseException, **fields: Any) -> None:
        """Record a failed call; log it if it starts an episode."""
        self.failures += 1
        if self.since is not None:
            return
        self.since = now = time.monotonic()
        self._reported = now - self._warned_at >= QUIET
        if self._reported:
            self._warned_at = now
            log.warning("redis_unavailable", component=self.component, error=error_text(exc),
                        **{**self.context, **fields})

    def ok(self) -> None:
        """Record a call that succeeded; log the end of an episode."""
        if self.since is None:
            return
        if self._reported:
            log.info("redis_recovered", component=self.component, failures=self.failures,
                     seconds=round(time.monotonic() - self.since, 3), **self.context)
            self.failures = 0
        self.since = None
