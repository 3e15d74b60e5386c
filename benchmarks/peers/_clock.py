"""Shared by the peer adapters: time a drain from the first handler call to the last."""

from __future__ import annotations

import json
import sys
import time


class Clock:
    """Count handler calls; the rate excludes start-up (first call to last call)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0
        self.first = 0.0
        self.last = 0.0

    def tick(self) -> bool:
        """Record one call; True when all N were seen."""
        now = time.perf_counter()
        if self.calls == 0:
            self.first = now
        self.calls += 1
        self.last = now
        return self.calls >= self.n

    def report(self, name: str) -> None:
        rate = (self.calls - 1) / (self.last - self.first) if self.calls > 1 else 0.0
        json.dump({"name": name, "jobs": self.calls, "jobs_per_s": rate}, sys.stdout)
        sys.stdout.write("\n")
