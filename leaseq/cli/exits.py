"""How a command ends: its exit codes, and failing with a one-line message."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

EXIT_OK = 0
"""Success."""
EXIT_FAILURE = 1
"""The command ran but the answer is "no": job not found, problems found, aborted."""
EXIT_USAGE = 2
"""Bad arguments (click's convention)."""
EXIT_UNREACHABLE = 3
"""Redis could not be reached, refused our credentials or permissions, or what answered
is not a usable Redis server (protocol or TLS error, a command leaseq needs is missing)."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (SIGINT) before the work was done (128 + SIGINT, the shell's way)."""
EXIT_BROKEN_PIPE = 141
"""The reader of stdout went away (``leaseq dead list | head -1``): 128 + SIGPIPE, what a
shell reports for a program that SIGPIPE ended. Nothing is printed."""


class Failure(Exception):
    """Raised inside a command's coroutine to end it as :func:`fail` would (``run`` prints
    ``leaseq: message`` and exits with ``code``): ``sys.exit`` inside a task group would
    come out as an exception group."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``leaseq: message`` to stderr and exit with ``code``."""
    click.echo(f"leaseq: {message}", err=True)
    sys.exit(code)


def notice(message: str) -> None:
    """Print ``leaseq: message`` to stderr (a remark; the command goes on)."""
    click.echo(f"leaseq: {message}", err=True)
