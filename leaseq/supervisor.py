"""Runs N copies of a worker command as child processes, supervised as one.

asyncio uses one core, so a machine with several cores runs several worker processes.
The supervisor starts them, restarts one that dies while the fleet is meant to run (a
crash, an OOM kill), forwards SIGTERM/SIGINT to every child (a second signal too, which
makes the children stop at once) and returns when all of them have exited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence

import anyio
import structlog

__all__ = ["Supervisor"]

log = structlog.get_logger(__name__)


class Supervisor:
    """``argv_for(i)`` gives the command line of child ``i`` (0-based); each child also
    gets ``LEASEQ_WORKER_INDEX=i`` in its environment."""

    def __init__(
        self,
        argv_for: Callable[[int], Sequence[str]],
        processes: int,
        *,
        restart_delay: float = 1.0,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.argv_for = argv_for
        self.processes = processes
        self.restart_delay = restart_delay
        self.children: dict[int, anyio.abc.Process] = {}
        self._stopping = False
        self.exit_codes: dict[int, int] = {}

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every running child."""
        for proc in self.children.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.Signals(signum))

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop supervising: no more restarts; forward ``signum`` to the children."""
        self._stopping = True
        self.signal_all(signum)

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until every child has exited after a stop; return 0 when all exited
        cleanly, else the first non-zero exit code."""
        async with anyio.create_task_group() as outer:
            if handle_signals:
                await outer.start(self._forward_signals)
            async with anyio.create_task_group() as kids:
                for i in range(self.processes):
                    kids.start_soon(self._keep_running, i)
            outer.cancel_scope.cancel()
        bad = [code for code in self.exit_codes.values() if code != 0]
        return bad[0] if bad else 0

    async def _keep_running(self, index: int) -> None:
        delay = self.restart_delay
        while True:
            env = {**os.environ, "LEASEQ_WORKER_INDEX": str(index)}
            proc = await anyio.open_process(
                list(self.argv_for(index)), stdin=subprocess.DEVNULL, stdout=None,
                stderr=None, env=env)
            self.children[index] = proc
            log.info("worker_process_started", index=index, pid=proc.pid)
            try:
                code = await proc.wait()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    proc.kill()
                    await proc.wait()
                raise
            self.exit_codes[index] = code
            if self._stopping:
                log.info("worker_process_exited", index=index, pid=proc.pid, code=code)
                return
            log.warning("worker_process_died", index=index, pid=proc.pid, code=code,
                        restart_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _forward_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                log.info("signal_forwarded", signal=signal.Signals(signum).name,
                         children=len(self.children))
                self.stop(signum)
