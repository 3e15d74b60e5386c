"""Runs N copies of a worker command as child processes, supervised as one.

asyncio uses one core, so a machine with several cores runs several worker processes.
The supervisor starts them, restarts one that crashes (a non-zero exit code, or killed by
a signal: an OOM kill) with a growing delay, forwards SIGTERM/SIGINT to every child (a
second signal too, which makes the children stop at once) and returns when all of them
have exited. A child that exits 0 by itself is done (in burst mode: it drained the
queue), never restarted; after a stop signal no child is started.

The children's stderr is a pipe to the supervisor, which writes their output to its own
stderr in whole lines: lines of different children never cut into each other, however
long they are (a pipe shared by several writers keeps only writes of up to 4096 bytes
whole).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence

import anyio
import anyio.abc
import structlog

from .logsetup import TTY_ENV, stderr_is_tty, write_line

__all__ = ["Supervisor"]

log = structlog.get_logger(__name__)

_MAX_PARTIAL_LINE = 1 << 20
"""A child's unterminated output is passed on once it is this long (1 MiB): a runaway
line without a newline must not grow the supervisor's memory without bound."""


class Supervisor:
    """Runs and supervises ``processes`` children.

    ``argv_for(i)`` gives the command line of child ``i`` (0-based); each child also gets
    ``LEASEQ_WORKER_INDEX=i`` in its environment. ``burst`` says the children exit 0
    once the queue is drained (``leaseq worker --burst``), so that is their normal end.
    A crashed child is restarted after ``restart_delay`` seconds, doubling per crash in a
    row up to ``max_restart_delay``. :attr:`restarts` counts restarts per child index.
    """

    def __init__(
        self,
        argv_for: Callable[[int], Sequence[str]],
        processes: int,
        *,
        burst: bool = False,
        restart_delay: float = 1.0,
        max_restart_delay: float = 30.0,
        drain_timeout: float = 2.0,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.argv_for = argv_for
        self.processes = processes
        self.burst = burst
        self.restart_delay = restart_delay
        self.max_restart_delay = max(max_restart_delay, restart_delay)
        self.drain_timeout = drain_timeout
        """How long a child's output is still relayed after it exited (a grandchild that
        inherited its stderr may hold the pipe open for ever)."""
        self.children: dict[int, anyio.abc.Process] = {}
        self.exit_codes: dict[int, int] = {}
        """The last exit code of each child (negative: killed by that signal)."""
        self.restarts: dict[int, int] = dict.fromkeys(range(processes), 0)
        self._stopping = False
        self._stop_signal: int = signal.SIGTERM
        self._stopped: anyio.Event | None = None

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every running child."""
        for proc in self.children.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.Signals(signum))

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop supervising: no more starts or restarts (a restart delay in progress ends
        at once); forward ``signum`` to the children. Call it from the event loop."""
        self._stopping = True
        self._stop_signal = signum
        if self._stopped is not None:
            self._stopped.set()
        self.signal_all(signum)

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until every child has exited for good (after a stop, or by exiting 0);
        return 0 when the last run of each exited cleanly, else the first other exit
        code (128 + N for a child killed by signal N, as a shell reports it)."""
        self._stopped = anyio.Event()
        if self._stopping:
            self._stopped.set()
        async with anyio.create_task_group() as outer:
            if handle_signals:
                await outer.start(self._forward_signals)
            async with anyio.create_task_group() as kids:
                for i in range(self.processes):
                    kids.start_soon(self._keep_running, i)
            outer.cancel_scope.cancel()
        bad = [code for code in self.exit_codes.values() if code != 0]
        if not bad:
            return 0
        return bad[0] if bad[0] > 0 else 128 - bad[0]

    async def _keep_running(self, index: int) -> None:
        assert self._stopped is not None
        delay = self.restart_delay
        stopped = self._stopped
        while not stopped.is_set():
            started = anyio.current_time()
            pid, code = await self._run_child(index)
            self.exit_codes[index] = code
            if stopped.is_set() or code == 0:
                # Exit 0 is the child's own decision (a drained queue in burst mode):
                # restarting it would only make it exit again, for ever.
                expected = code == 0 and (stopped.is_set() or self.burst)
                (log.info if expected else log.warning)(
                    "worker_process_exited", index=index, child_pid=pid, code=code)
                return
            if anyio.current_time() - started >= self.max_restart_delay:
                # A crash after a long healthy run is not part of a crash loop.
                delay = self.restart_delay
            log.warning("worker_process_died", index=index, child_pid=pid, code=code,
                        signal=_signal_name(code), restarts=self.restarts[index],
                        restart_in=delay)
            # A stop during the delay ends it: no child is started after a stop.
            with anyio.move_on_after(delay):
                await stopped.wait()
            if stopped.is_set():
                log.info("worker_process_not_restarted", index=index, reason="stopping")
                return
            self.restarts[index] += 1
            delay = min(delay * 2, self.max_restart_delay)

    async def _run_child(self, index: int) -> tuple[int, int]:
        """Start child ``index``, relay its stderr until it exits; its pid and code."""
        env = {**os.environ, "LEASEQ_WORKER_INDEX": str(index),
               "LEASEQ_SUPERVISOR_PID": str(os.getpid()),
               TTY_ENV: "1" if stderr_is_tty() else "0"}
        proc = await anyio.open_process(
            list(self.argv_for(index)), stdin=subprocess.DEVNULL, stdout=None,
            stderr=subprocess.PIPE, env=env)
        self.children[index] = proc
        if self._stopping:
            # The stop came while the process was being created: signal_all missed it.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.Signals(self._stop_signal))
        log.info("worker_process_started", index=index, child_pid=proc.pid,
                 restarts=self.restarts[index])
        try:
            async with anyio.create_task_group() as relay:
                if proc.stderr is not None:
                    relay.start_soon(_relay, proc.stderr)
                code = await proc.wait()
                # Its last lines may still be in the pipe: pass them on before saying it
                # exited, but not for longer than drain_timeout.
                relay.cancel_scope.deadline = anyio.current_time() + self.drain_timeout
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:  # cancelled: leave no orphan behind
                    proc.kill()
                await proc.aclose()
        return proc.pid, code

    async def _forward_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                log.info("signal_forwarded", signal=signal.Signals(signum).name,
                         children=sum(p.returncode is None for p in self.children.values()))
                self.stop(signum)


async def _relay(stream: anyio.abc.ByteReceiveStream) -> None:
    """Copy a child's output to our stderr, only ever whole lines per write."""
    pending = bytearray()
    try:
        async for chunk in stream:
            pending += chunk
            end = pending.rfind(b"\n") + 1
            if end:
                write_line(2, bytes(pending[:end]))
                del pending[:end]
            elif len(pending) >= _MAX_PARTIAL_LINE:
                write_line(2, bytes(pending) + b"\n")
                pending.clear()
    finally:
        if pending:  # the child died in the middle of a line: end it, keep the next whole
            write_line(2, bytes(pending) + b"\n")


def _signal_name(code: int) -> str | None:
    if code >= 0:
        return None
    with contextlib.suppress(ValueError):
        return signal.Signals(-code).name
    return None
