"""leaseq on uvloop: ``python leaseq_uvloop_adapter.py MODE URL N [CONCURRENCY]``, the
leaseq adapter (``leaseq_adapter.py``) with uvloop's event loop, as ``leaseq worker``
runs when the ``fast`` extra is installed."""

from __future__ import annotations

import asyncio
import runpy
from pathlib import Path

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
runpy.run_path(str(Path(__file__).with_name("leaseq_adapter.py")), run_name="__main__")
