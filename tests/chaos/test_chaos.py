"""The chaos suite (small sizes): every scenario must hold every invariant.

``python benchmarks/chaos.py`` runs the same scenarios at full size and writes the report
to ``benchmarks/results/chaos.md``.
"""

from __future__ import annotations

import pytest

from leaseq.testing import RedisServer

from . import scenarios as s

pytestmark = [pytest.mark.real_redis, pytest.mark.chaos, pytest.mark.timeout(400)]


def assert_passed(outcome: s.Outcome) -> None:
    failures = [n for n in outcome.notes if n.startswith("FAILED")]
    assert not outcome.problems and not failures, (outcome.problems, outcome.notes,
                                                   outcome.report)


@pytest.mark.parametrize("scenario", s.IN_SERVER, ids=lambda f: f.__name__)
async def test_scenario(redis_server: RedisServer, scenario: s.Scenario):
    outcome = await scenario(redis_server, s.SMALL, s.with_logdir())
    assert_passed(outcome)
    assert outcome.report.lost == 0


async def test_redis_sigkill_with_aof_always_loses_nothing():
    outcome = await s.redis_restart(s.SMALL, s.with_logdir(), "always")
    assert_passed(outcome)
    assert outcome.report.lost == 0
    assert outcome.faults == 2


async def test_redis_restarted_empty_is_detected_loudly():
    outcome = await s.redis_restarted_empty(s.SMALL, s.with_logdir())
    assert not [n for n in outcome.notes if n.startswith("FAILED")], outcome.notes
    assert "redis_data_lost logged 0" not in outcome.notes[0]
    assert outcome.report.lost > 0  # without persistence the data is gone, and we say so
