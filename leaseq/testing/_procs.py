"""Worker and reaper processes under test control: start, SIGKILL, SIGSTOP/SIGCONT,
SIGTERM, restart, optionally under a wrapper such as ``faketime``."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ReaperProcess", "WebProcess", "WorkerProcess"]


class _Process:
    """A ``python -m leaseq ...`` child process."""

    _ready_event = "worker_started"

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path | None,
                 wrapper: Sequence[str]) -> None:
        self._argv = [*wrapper, sys.executable, "-m", "leaseq", *argv]
        self._env = {**os.environ, **env}
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="leaseq-proc-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        """Where the process's JSON log lines go (stderr)."""
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0

    def start(self) -> None:
        """Start (or start again after it exited)."""
        if self.alive:
            return
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter and module
                self._argv, env=self._env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, cwd=os.getcwd())
        self.starts += 1

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines of the current run, parsed."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            lines = log.read().decode("utf-8", "replace").splitlines()
        out = []
        for line in lines:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the process logged that it is running (its signal handlers are in
        place, so SIGTERM is a graceful stop from then on)."""
        deadline = time.monotonic() + timeout
        while not any(e.get("event") == self._ready_event for e in self.events()):
            if not self.alive:
                raise RuntimeError(f"process exited with {self.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"process not ready after {timeout} s")
            time.sleep(0.02)

    @property
    def pid(self) -> int | None:
        """The current process id (None before the first start)."""
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the process is running (or stopped with SIGSTOP)."""
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code once exited (negative: killed by that signal)."""
        return None if self.process is None else self.process.poll()

    def send(self, sig: int) -> None:
        """Send a signal if the process is running."""
        if self.alive and self.process is not None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap it: a crash, as far as the queue can tell."""
        if self.process is not None and self.alive:
            # No SIGCONT first: SIGKILL ends a stopped process as it is, where a SIGCONT
            # would let it run for a moment and settle what it held before it died.
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGSTOP: the process freezes, its leases run out, it does not know."""
        self.send(signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT after :meth:`stop`."""
        self.send(signal.SIGCONT)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful stop) and wait; returns the exit code."""
        if self.process is None:
            return 0
        self.send(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit by itself."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)


def _faketime_env(offset: str) -> dict[str, str]:
    # Preloading the library (rather than running the `faketime` program, which forks)
    # keeps the worker the direct child, so SIGKILL and SIGSTOP reach it.
    for lib in glob.glob("/usr/lib/*/faketime/libfaketime.so.1"):
        return {"LD_PRELOAD": lib, "FAKETIME": offset, "FAKETIME_NO_CACHE": "1"}
    raise FileNotFoundError("libfaketime not found: install the Debian package faketime")


class WorkerProcess(_Process):
    """``leaseq worker`` for the handlers ``target`` (``MODULE:ATTR``, a dict of handlers).

    With ``record=True`` (default) every run is logged to the queue's execution log (see
    :func:`leaseq.testing.check_invariants`). ``crash_point`` arms a named crash point
    (``"before_ack"`` or ``"before_ack:0.05"``); ``clock_offset`` (``"+30s"``, ``"-30s"``)
    runs it with a skewed clock through libfaketime (Debian package ``faketime``);
    ``wrapper`` prefixes the command line (it must exec, not fork, or signals miss the
    worker). ``log_path`` collects its JSON log lines.
    """

    def __init__(
        self,
        redis_url: str,
        target: str,
        queue: str,
        *,
        concurrency: int = 10,
        lease_timeout: float = 2.0,
        max_attempts: int = 5,
        reaper: bool = True,
        grace_period: float = 30.0,
        record: bool = True,
        crash_point: str | None = None,
        clock_offset: str | None = None,
        wrapper: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        environ = dict(env or {})
        if record:
            environ["LEASEQ_TESTING_TARGET"] = target
            target = "leaseq.testing._record:HANDLERS"
        if crash_point:
            environ["LEASEQ_CRASH_POINT"] = crash_point
        if clock_offset:
            environ.update(_faketime_env(clock_offset))
        argv = ["--redis", redis_url, "--log-format", "json", "worker", target,
                "--queue", queue, "--concurrency", str(concurrency),
                "--lease-timeout", str(lease_timeout), "--max-attempts", str(max_attempts),
                "--grace-period", str(grace_period),
                "--reaper" if reaper else "--no-reaper", *extra_args]
        super().__init__(argv, environ, log_path, wrapper)


class ReaperProcess(_Process):
    """``leaseq reaper`` for ``queues``."""

    _ready_event = "reaper_started"

    def __init__(self, redis_url: str, *queues: str, interval: float = 0.2,
                 log_path: Path | None = None, wrapper: Sequence[str] = ()) -> None:
        argv = ["--redis", redis_url, "--log-format", "json", "reaper", "--interval",
                str(interval)]
        for q in queues:
            argv += ["--queue", q]
        super().__init__(argv, {}, log_path, wrapper)


class SchedulerProcess(_Process):
    """``leaseq scheduler`` firing ``schedules`` (``MODULE:ATTR``, a list of Cron and
    Every) into ``queue``; ``clock_offset`` (``"+30s"``) runs it with a skewed clock
    through libfaketime."""

    _ready_event = "scheduler_started"

    def __init__(self, redis_url: str, queue: str, schedules: str, *, grace: float = 5.0,
                 clock_offset: str | None = None, log_path: Path | None = None) -> None:
        environ = _faketime_env(clock_offset) if clock_offset else {}
        argv = ["--redis", redis_url, "--log-format", "json", "scheduler", "--queue", queue,
                schedules, "--grace", str(grace)]
        super().__init__(argv, environ, log_path, ())


class WebProcess(_Process):
    """``leaseq web`` on a free port (needs the ``web`` extra); :attr:`url` once
    :meth:`wait_ready` returned. ``args`` go to ``leaseq web`` (``--queue``, ...)."""

    _ready_event = "web_started"

    def __init__(self, redis_url: str, *args: str, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None) -> None:
        argv = ["--redis", redis_url, "--log-format", "json", "web", "--port", "0", *args]
        super().__init__(argv, env or {}, log_path, ())

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:41234``."""
        for event in self.events():
            if event.get("event") == self._ready_event:
                return f"http://127.0.0.1:{event['port']}"
        raise RuntimeError("leaseq web has not started (call wait_ready first)")
