"""Shared by the Python adapters: the start record of every job and the runner's protocol.

Every adapter runs as ``python X_adapter.py MODE URL N [CONCURRENCY]`` (no CONCURRENCY:
the library's default) in one of three modes:

- ``drain``: enqueue N no-op jobs, print ``{"ready": true}`` and wait for a line on stdin
  (the runner reads Redis's counters in between), then run one worker until all N jobs
  ran and print ``{"report": ...}``.
- ``work``: run one idle worker until N + 1 jobs ran (the first is a warm-up); print
  ``{"warm": true}`` when the warm-up ran and ``{"report": ...}`` at the end.
- ``produce``: enqueue the warm-up job, wait for a line on stdin, then enqueue N jobs one
  at a time, awaiting each, 5 ms apart, each carrying its enqueue time as its payload;
  print ``{"report": ...}`` with how many it sent in how long.

The start record: the first thing every handler does is ``Clock.tick(stamp)``, which
notes when the job started and, when the payload carries an enqueue time (``stamp``,
microseconds of ``CLOCK_MONOTONIC``, the clock every process on the machine shares; Node
reads it with ``process.hrtime``), how long after its enqueue. The report holds the
calls, the rate from the first call to the last, the process's CPU (user + sys) and wall
time from "go" (in a latency run: from the warm-up) to the report, and the
enqueue-to-start latencies. ``node/bullmq_adapter.js``
keeps the same record and prints the same lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

PRODUCE_INTERVAL = 0.005


def now_us() -> int:
    """Microseconds of CLOCK_MONOTONIC: comparable across the machine's processes."""
    return time.monotonic_ns() // 1000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(line: dict[str, Any]) -> None:
    """One protocol line on stdout (anything else a library prints there is skipped)."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def wait_for_go() -> None:
    sys.stdin.readline()


def ready() -> None:
    """The jobs are enqueued: let the runner read Redis's counters, wait for its go."""
    emit({"ready": True})
    wait_for_go()


def start() -> Args:
    """Library logging at WARNING, to stderr; the adapter's arguments."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return Args()


class Args:
    """``MODE URL N [CONCURRENCY]`` from argv."""

    def __init__(self, argv: list[str] | None = None) -> None:
        argv = sys.argv[1:] if argv is None else argv
        self.mode, self.url, self.n = argv[0], argv[1], int(argv[2])
        self.concurrency: int | None = int(argv[3]) if len(argv) > 3 else None
        assert self.mode in ("drain", "work", "produce"), self.mode

    def clock(self) -> Clock:
        return Clock(self.n, warmup=self.mode == "work")


class Clock:
    """Count handler calls; the rate excludes start-up (first call to last call)."""

    def __init__(self, n: int, warmup: bool = False) -> None:
        self.n = n
        self.warmup = warmup
        self.calls = 0
        self.first = 0
        self.last = 0
        self.latencies_us: list[int] = []
        self.cpu0 = cpu_seconds()
        self.t0 = time.perf_counter()

    def go(self) -> None:
        """The drain starts now: CPU and wall time are counted from here."""
        self.cpu0 = cpu_seconds()
        self.t0 = time.perf_counter()

    def tick(self, stamp: Any = 0) -> bool:
        """Record one start; True when all N were seen."""
        now = now_us()
        if self.warmup:
            self.warmup = False
            emit({"warm": True})
            self.go()
            return False
        if isinstance(stamp, int) and stamp > 0:
            self.latencies_us.append(now - stamp)
        if self.calls == 0:
            self.first = now
        self.calls += 1
        self.last = now
        return self.calls >= self.n

    def report(self, name: str, **extra: Any) -> None:
        cpu = cpu_seconds() - self.cpu0
        seconds = time.perf_counter() - self.t0
        span = (self.last - self.first) / 1e6
        rate = (self.calls - 1) / span if self.calls > 1 and span > 0 else 0.0
        emit({"report": {"name": name, "jobs": self.calls, "jobs_per_s": rate,
                         "cpu_s": cpu, "seconds": seconds,
                         "latencies_us": self.latencies_us, **extra}})


async def produce(enqueue: Callable[[int], Awaitable[object]], n: int) -> None:
    """The ``produce`` mode over one awaited enqueue of a job whose payload is a stamp;
    reports how many jobs it sent in how long."""
    await enqueue(now_us())  # the warm-up
    wait_for_go()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for _ in range(n):
        await enqueue(now_us())
        await asyncio.sleep(PRODUCE_INTERVAL)
    emit({"report": {"produced": n, "seconds": time.perf_counter() - t0,
                     "cpu_s": cpu_seconds() - cpu0}})


def produce_sync(enqueue: Callable[[int], object], n: int) -> None:
    enqueue(now_us())
    wait_for_go()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for _ in range(n):
        enqueue(now_us())
        time.sleep(PRODUCE_INTERVAL)
    emit({"report": {"produced": n, "seconds": time.perf_counter() - t0,
                     "cpu_s": cpu_seconds() - cpu0}})
