"""RQ needs its job functions in an importable module (not __main__)."""

from __future__ import annotations

from _clock import start

args = start()
clock = args.clock()


def noop(stamp: int) -> None:
    clock.tick(stamp)
