"""Cancelling a job from any process (``cancel.lua``): a waiting or delayed job at once,
a running one through its lease (docs/protocol.md, "Cancel")."""

from __future__ import annotations

from typing import Literal

from . import scripts, validate
from .core import QueueCore
from .validate import storable
from .wire import text

__all__ = ["CancelOutcome", "Cancelling"]

CancelOutcome = Literal["cancelled", "delivered", "finished", "unknown"]
"""What :meth:`~leaseq.Queue.cancel` did: ``"cancelled"`` (the job waited, was delayed
or blocked, and is now cancelled), ``"delivered"`` (it runs: its worker was told and stops
it, and it ends cancelled), ``"finished"`` (it was done, dead or cancelled already) or
``"unknown"`` (no such job)."""

_MAX_REASON_CHARS = 4096


class Cancelling(QueueCore):
    """:meth:`cancel` of :class:`~leaseq.Queue`."""

    async def cancel(self, job_id: str, *, reason: str = "cancelled") -> CancelOutcome:
        """Cancel a job, from any process; return what happened (:data:`CancelOutcome`).

        A waiting, delayed or blocked job moves to ``cancelled`` at once and never runs
        (the jobs enqueued after it end dead, see :meth:`enqueue`). A running
        job's cancel is bound to the lease that holds it now (a later run of the same id
        is not affected): the worker holding it learns at once (a published message,
        and its next heartbeat if the message was missed), cancels the handler and
        settles the job cancelled; if that worker died, the reaper ends the job
        cancelled when the lease expires instead of requeueing it. A handler that
        finishes before its worker learns of the cancel is not acked: the job ends
        cancelled all the same. :meth:`wait` raises :class:`~leaseq.JobCancelled`.
        Idempotent: a call re-sent after a lost reply answers what the first did.
        """
        validate.job_id(job_id)
        why = storable(str(reason)[:_MAX_REASON_CHARS])
        await self.prepare()
        k = self.keys
        reply = await scripts.CANCEL(
            self.redis,
            [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.job(job_id),
             k.lease(job_id), *k.control, k.reply()],
            [job_id, why, self.publish, k.cancels])
        outcome = text(reply)
        if outcome in ("cancelled", "delivered"):
            await self._replicated("cancel")
        return outcome  # type: ignore[return-value]
