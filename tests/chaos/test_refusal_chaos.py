"""The server-refusals chaos scenario (small size): workers ride out OOM, BUSY, MISCONF
and READONLY episodes without crashing, and no job is lost or run unexplained twice."""

from __future__ import annotations

import pytest

from . import scenarios as s
from .refusals import server_refusals

pytestmark = [pytest.mark.real_redis, pytest.mark.chaos, pytest.mark.timeout(400)]


async def test_server_refusals_crash_no_worker_and_lose_nothing():
    """Every refusal episode is waited out: no worker exits, none logs a refusal more than
    once per episode and component, every job ends done, none lost, no unexplained
    duplicate."""
    outcome = await server_refusals(s.SMALL, s.with_logdir())
    failures = [n for n in outcome.notes if n.startswith("FAILED")]
    assert not outcome.problems and not failures, (outcome.problems, outcome.notes,
                                                   outcome.report)
    assert outcome.report.lost == 0
    assert outcome.report.unexplained_duplicates == 0
    assert outcome.faults == 4
