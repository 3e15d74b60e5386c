"""How fast this machine runs right now: a fixed unit of Python work, timed.

A shared virtual machine can change speed by more than the differences a benchmark
measures, without any other process showing up in ``/proc/stat`` (a neighbour on the
host, a core's clock). The runner times this probe before every drain and latency run;
the spread of the readings says how far apart two rows of one run may be for reasons
that have nothing to do with the systems measured.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

ROUNDS = 5
"""The probe is the fastest of this many rounds: a brief interruption does not count."""
DRIFT = 0.10
"""A run whose slowest probe is more than this much slower than its fastest is flagged."""

_DOC = {"id": "job-1", "task": "t", "payload": {"n": 1, "s": "x" * 40}, "attempt": 1}


def _unit() -> int:
    # What a worker does per job, in miniature: encode, decode, format, hash, look up.
    total = 0
    for i in range(2_000):
        doc = json.loads(json.dumps(_DOC))
        total += hash(f"{doc['id']}:{i}") & 7
        total += len(doc["payload"]["s"])
    return total


def steal_seconds() -> float | None:
    """CPU time the hypervisor has given to others while this machine wanted it (all
    cores, ``/proc/stat``), or ``None`` where it is not reported."""
    try:
        fields = Path("/proc/stat").read_text().split("\n")[0].split()[1:]
        return int(fields[7]) / os.sysconf("SC_CLK_TCK") if len(fields) > 7 else None
    except (OSError, ValueError, IndexError):
        return None


def probe() -> dict[str, Any]:
    """Units of work per second (the fastest of ``ROUNDS`` rounds), and the steal
    counter at the time."""
    best = float("inf")
    for _ in range(ROUNDS):
        t = time.perf_counter()
        _unit()
        best = min(best, time.perf_counter() - t)
    return {"units_per_s": 1.0 / best, "steal_s": steal_seconds()}


def spread(readings: list[float]) -> float | None:
    """How much slower the slowest reading is than the fastest (0.2: 20 % slower)."""
    ran = [x for x in readings if x > 0]
    if len(ran) < 2:
        return None
    return 1.0 - min(ran) / max(ran)
