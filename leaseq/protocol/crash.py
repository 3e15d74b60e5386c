"""Named crash points for fault tests: ``LEASEQ_CRASH_POINT=name[:probability]``.

When the variable names a point, the process SIGKILLs itself there (with the given
probability, default 1), exactly like a crash the lease protocol must survive. Points:

- ``after_claim``: leases were claimed, no handler has started;
- ``before_ack``: a handler finished (its side effects happened), the ack was not sent;
- ``in_ack``: an ack transaction read the lease tokens (``WATCH``) but did not ``EXEC``.

Unset (always, outside fault tests) the check is a comparison against ``None``.
"""

from __future__ import annotations

import os
import random
import signal

POINTS = ("after_claim", "before_ack", "in_ack")


def _parse(spec: str | None) -> tuple[str, float] | None:
    if not spec:
        return None
    name, _, probability = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"LEASEQ_CRASH_POINT={spec!r}: unknown point, use one of {POINTS}")
    return name, float(probability) if probability else 1.0


_ARMED = _parse(os.environ.get("LEASEQ_CRASH_POINT"))


def point(name: str) -> None:
    """Die here if the environment armed this crash point."""
    if _ARMED is not None and _ARMED[0] == name and random.random() < _ARMED[1]:
        os.kill(os.getpid(), signal.SIGKILL)
