"""leaseq's web dashboard and HTTP API (``pip install leaseq[web]``; ``leaseq web``).

The page shows each queue's counts, jobs per minute (acks, failures, lease expiries), its
live workers, the leases in flight (owner, attempt, age, time left), its jobs by state,
dead jobs with their reasons and the reaper's lease expiries, live over server-sent
events; it finds a job by id or id prefix and shows its attempts. The JSON API (described
at ``/openapi.json``) serves the same data, enqueues, cancels, requeues or purges jobs,
and pauses queues.
"""

from __future__ import annotations

from ._app import DEFAULT_MAX_BODY, create_app

__all__ = ("DEFAULT_MAX_BODY", "create_app")
