"""Clean-up of processes a test started: killed if still running, pipes closed, so a
failed test leaves nothing for the garbage collector to warn about in a later one."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any, TypeVar

P = TypeVar("P", bound="subprocess.Popen[Any]")


def reap(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` if it is still running, wait for it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


@contextlib.contextmanager
def reaped(proc: P) -> Iterator[P]:
    """``proc`` for the block, reaped when it ends (see :func:`reap`)."""
    try:
        yield proc
    finally:
        reap(proc)
