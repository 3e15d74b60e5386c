"""Run every chaos scenario and write the report.

    python -m benchmarks.chaos            # full size (5,000 jobs, 20 kills, ...)
    python -m benchmarks.chaos --small    # the CI size

Prints a table and writes ``benchmarks/results/chaos.md`` with the command, the machine
and the versions. Exits non-zero if an invariant failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import anyio

from leaseq import __version__
from leaseq.testing import RedisServer
from tests.chaos import scenarios as s
from tests.chaos.refusals import server_refusals

RESULTS = Path(__file__).parent / "results" / "chaos.md"


async def run_all(size: s.Size) -> list[s.Outcome]:
    outcomes: list[s.Outcome] = []
    with RedisServer() as server:
        for scenario in s.IN_SERVER:
            outcome = await _one(scenario.__name__,
                                 lambda f=scenario: f(server, size, s.with_logdir()))
            outcomes.append(outcome)
    for fsync in ("always", "everysec", None):
        outcome = await _one(f"redis_restart[{fsync}]",
                             lambda f=fsync: s.redis_restart(size, s.with_logdir(), f))
        outcomes.append(outcome)
    outcomes.append(await _one("redis_restarted_empty",
                               lambda: s.redis_restarted_empty(size, s.with_logdir())))
    outcomes.append(await _one("server_refusals",
                               lambda: server_refusals(size, s.with_logdir())))
    return outcomes


async def _one(name: str, run: object) -> s.Outcome:
    print(f"-- {name} ...", flush=True)
    started = time.monotonic()
    outcome = await run()  # type: ignore[operator]
    print(f"   {outcome.report.as_dict()} {outcome.notes} ({time.monotonic() - started:.1f} s)",
          flush=True)
    return outcome


def table(outcomes: list[s.Outcome]) -> str:
    head = ("| scenario | jobs | faults | done | dead | lost | duplicated | unexplained dup. "
            "| stale acks | seconds | result |")
    lines = [head, "|" + "---|" * 11]
    for o in outcomes:
        r = o.report
        failed = o.problems or [n for n in o.notes if n.startswith("FAILED")]
        fatal = [n for n in o.notes if n.startswith("FAILED")]
        verdict = fatal if o.measured else failed
        result = "FAIL" if verdict else ("measured" if o.measured else "pass")
        lines.append(f"| {o.scenario} | {o.jobs} | {o.faults} | {r.done} | {r.dead} | {r.lost} "
                     f"| {r.duplicated} | {r.unexplained_duplicates} | {r.stale_acks} "
                     f"| {o.seconds:.1f} | {result} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="CI sizes")
    args = parser.parse_args()
    size = s.SMALL if args.small else s.FULL
    started = time.monotonic()
    outcomes = anyio.run(run_all, size)
    text = table(outcomes)
    print(text)
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True, check=False).stdout.strip()
    notes = "\n".join(f"- **{o.scenario}**: " + "; ".join(o.notes) for o in outcomes if o.notes)
    RESULTS.write_text(
        f"# Chaos report\n\n"
        f"Command: `python -m benchmarks.chaos{' --small' if args.small else ''}` — "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{time.monotonic() - started:.0f} s in all.\n\n"
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {redis_version}; leaseq {__version__}.\n\n"
        f"**lost** = enqueue acknowledged but never done or dead; **duplicated** = handler "
        f"started more than once (after a fault: a kill, an expired lease); "
        f"**unexplained dup.** = extra runs not accounted for by a recorded lease expiry, "
        f"release or failure (must be 0); **stale acks** = done by a token other than the "
        f"last claim's (must be 0).\n\n{text}\n\n## Notes\n\n{notes}\n")
    print(f"\nwritten to {RESULTS}")
    bad = [o for o in outcomes if (o.problems and not o.measured)
           or any(n.startswith("FAILED") for n in o.notes)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
