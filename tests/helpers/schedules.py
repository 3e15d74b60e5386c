"""Schedules that scheduler processes of the tests load (``tests.helpers.schedules:ATTR``)."""

from __future__ import annotations

from leaseq import Every

EVERY_SECOND = [Every(1, "tick", {"from": "schedule"})]
"""One job a second."""

ECHO_EVERY_SECOND = [Every(1, "echo", {"from": "schedule"}, name="tick")]
"""One ``echo`` job a second (the handlers of ``tests.helpers.tasks``)."""
