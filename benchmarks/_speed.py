"""How fast this machine runs right now: a fixed unit of Python work, timed.

A shared virtual machine can change speed by more than the differences a benchmark
measures, without any other process showing up in ``/proc/stat`` (a neighbour on the
host, a core's clock). The runner times this probe before every drain and latency run;
a row whose reading is far from the run's median ran on a different machine, in effect,
and its ratios to the other rows say as much about the machine as about the systems.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

ROUNDS = 5
"""The probe is the fastest of this many rounds: a brief interruption does not count."""
DRIFT = 0.10
"""A row whose reading is further than this from the run's median (either way) is flagged.
The median, not the fastest: one reading can be off on its own (a probe is ~40 ms)."""

_DOC = {"id": "job-1", "task": "t", "payload": {"n": 1, "s": "x" * 40}, "attempt": 1}


def _unit() -> int:
    # What a worker does per job, in miniature: encode, decode, format, hash, look up.
    total = 0
    for i in range(2_000):
        doc = json.loads(json.dumps(_DOC))
        total += hash(f"{doc['id']}:{i}") & 7
        total += len(doc["payload"]["s"])
    return total


def cpu_seconds() -> tuple[float | None, float | None]:
    """From one read of ``/proc/stat`` (all cores): the CPU time the whole machine has
    spent busy, and the time the hypervisor gave to others while this machine wanted it
    (steal); ``None`` for what is not reported."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None, None
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] / tick if len(fields) > 7 else None
    return (sum(fields[:8]) - idle) / tick, steal


def probe() -> dict[str, Any]:
    """Units of work per second (the fastest of ``ROUNDS`` rounds), and the steal
    counter at the time."""
    best = float("inf")
    for _ in range(ROUNDS):
        t = time.perf_counter()
        _unit()
        best = min(best, time.perf_counter() - t)
    return {"units_per_s": 1.0 / best, "steal_s": cpu_seconds()[1]}


def median(readings: list[float]) -> float | None:
    """The run's typical speed: the median reading (``None`` without readings)."""
    ran = [x for x in readings if x > 0]
    return statistics.median(ran) if ran else None


def off(reading: float, typical: float) -> bool:
    """Whether a reading is further than ``DRIFT`` from the run's median."""
    return abs(reading / typical - 1.0) > DRIFT
