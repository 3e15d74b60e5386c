"""Operators' controls of a queue: change its stored ordering and limits, pause and
resume it (every worker applies them from its next claim)."""

from __future__ import annotations

from typing import Any

from ..exceptions import InvalidInput
from . import controls as _controls
from .controls import Controls
from .core import QueueCore

__all__ = ["Controlling"]

# Wake tokens a resume pushes: enough to wake every idle worker of a large fleet at once.
_RESUME_WAKES = 64


class Controlling(QueueCore):
    """:meth:`configure`, :meth:`read_controls`, :meth:`pause`, :meth:`resume` and
    :meth:`is_paused` of :class:`~leaseq.Queue`."""

    async def configure(self, **named: Any) -> Controls:
        """Store the controls named here with the queue, replacing what is stored:
        ``ordering`` (only while the queue holds no waiting, delayed or running job),
        ``max_in_flight``, ``key_concurrency``, ``rate_limit``, ``key_rate`` (``None``
        removes a limit). Every worker applies them from its next claim. Returns the
        controls now stored."""
        unknown = set(named) - set(_controls.FIELDS)
        if unknown:
            raise InvalidInput(f"unknown control {sorted(unknown)[0]!r}; controls are "
                               + ", ".join(_controls.FIELDS))
        await self.prepare()
        self.controls = await self._store_controls("set", _controls.given(**named))
        self._named_controls.update(_controls.given(**named))
        return self.controls

    async def pause(self) -> None:
        """Pause the queue: from now on no worker claims from it (checked in the claim
        script, so it holds for every worker at once). Enqueues go on, running jobs
        finish and are acked; the reaper still requeues expired leases. Idempotent."""
        await self.prepare()
        await self.redis.hset(self.keys.settings, "paused", "1")

    async def resume(self) -> None:
        """Let workers claim from the queue again, and wake the idle ones. Idempotent."""
        await self.prepare()
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(k.settings, "paused")
            pipe.lpush(k.wake, *["1"] * _RESUME_WAKES)
            pipe.ltrim(k.wake, 0, _RESUME_WAKES - 1)
            await pipe.execute()

    async def read_controls(self) -> Controls:
        """The ordering and limits stored with the queue now (the claims of every
        worker apply these; :attr:`controls` is what this object read at
        :meth:`prepare`). Reads only."""
        return Controls.read(await self.redis.hgetall(self.keys.settings))

    async def is_paused(self) -> bool:
        """Whether the queue is paused now."""
        return await self.redis.hget(self.keys.settings, "paused") is not None
