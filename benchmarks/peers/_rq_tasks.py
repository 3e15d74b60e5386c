"""RQ needs its job functions in an importable module (not __main__)."""

from __future__ import annotations

import sys

from _clock import Clock

clock = Clock(int(sys.argv[2]) if len(sys.argv) > 2 else 0)


def noop() -> None:
    clock.tick()
