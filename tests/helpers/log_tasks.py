"""Handlers that log, for the logging tests: ``leaseq worker tests.helpers.log_tasks:HANDLERS``.

``stdlib`` logs through the standard library as an application's handler would;
``chatty`` writes many lines through both structlog and the standard library, some of
them longer than a pipe keeps whole (4096 bytes).
"""

from __future__ import annotations

import logging
from typing import Any

from leaseq import JobContext

logger = logging.getLogger(__name__)

LONG = "x" * 6000
"""A field that makes a line longer than PIPE_BUF."""


async def stdlib(ctx: JobContext, payload: Any) -> None:
    """Log at info and warning, log a caught exception with its traceback, then fail."""
    logger.info("stdlib_info_line", extra={"n": payload})
    logger.warning("stdlib_warning_line")
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        logger.exception("stdlib_exception_line")
    raise RuntimeError("handler failed on purpose")


async def chatty(ctx: JobContext, payload: Any) -> int:
    """Two structlog lines and one stdlib line; every tenth job's lines are long."""
    long = LONG if payload % 10 == 0 else ""
    ctx.log.info("chatty_structlog", n=payload, long=long)
    logger.warning("chatty_stdlib %s %s", payload, long)
    return int(payload)


HANDLERS = {"stdlib": stdlib, "chatty": chatty}
