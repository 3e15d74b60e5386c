"""Reading a queue's lifecycle events: the stream the scripts write when the queue keeps
one (``Queue(events=N)``), read with ``XREAD``, resumable from an event id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..exceptions import InvalidInput
from ..models import QueueEvent
from .core import QueueCore
from .wire import connection_errors, text

__all__ = ["read_events"]

_BATCH = 100


async def read_events(
    queue: QueueCore, since: str, block: float | None,
) -> AsyncIterator[QueueEvent]:
    """The events after ``since`` (see :meth:`~leaseq.Queue.events`)."""
    if not isinstance(since, str) or not (since in ("0", "$") or _is_id(since)):
        raise InvalidInput(f"since must be an event id ('1700000000000-0'), '0' (the "
                           f"oldest kept) or '$' (from now on), got {since!r}")
    wait_ms = None if block is None else max(1, int(block * 1000))
    last = since
    if last == "$":
        # XREAD's "$" is "after the newest now": fix it once, so no event between two
        # reads is skipped.
        with connection_errors():
            newest = await queue.redis.xrevrange(queue.keys.stream, count=1)
        last = text(newest[0][0]) if newest else "0"
    while True:
        with connection_errors():
            reply: Any = await queue.redis.xread(
                {queue.keys.stream: last}, count=_BATCH, block=wait_ms)
        entries = reply[0][1] if reply else []
        if not entries:
            if wait_ms is None:
                return
            continue
        for event_id, fields in entries:
            last = text(event_id)
            yield _event(last, fields)


def _is_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit())


def _event(event_id: str, fields: dict[Any, Any]) -> QueueEvent:
    data = {text(k): text(v) for k, v in fields.items()}
    kind = data.pop("type", "")
    job_id = data.pop("job", "")
    return QueueEvent(id=event_id, type=kind, job_id=job_id,
                      at=int(event_id.split("-", 1)[0]) / 1000, data=data)
