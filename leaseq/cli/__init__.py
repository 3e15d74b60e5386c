"""The ``leaseq`` command: parsing, logging set-up, output, the supervisor of worker
processes and the demo. The library never imports it (see ``docs/architecture.md``)."""

from __future__ import annotations

from .main import main

__all__ = ("main",)
