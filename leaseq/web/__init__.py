"""leaseq's web dashboard and HTTP API (``pip install leaseq[web]``; ``leaseq web``).

The page shows each queue's counts, acks per minute, the leases in flight (owner, attempt,
age, time left), dead jobs with their reasons and the reaper's lease expiries, live over
server-sent events; the JSON API (described at ``/openapi.json``) serves the same data,
enqueues jobs and requeues or purges dead ones.
"""

from __future__ import annotations

from ._app import DEFAULT_MAX_BODY, create_app

__all__ = ("DEFAULT_MAX_BODY", "create_app")
