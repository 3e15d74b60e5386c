"""``leaseq worker`` as a user runs it: the supervisor of ``-p N`` and the log lines.

Every test runs ``python -m leaseq`` as a subprocess against a real redis-server and
reads its output line by line, the way a log shipper would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis as syncredis

from leaseq.testing import RedisServer

from .helpers.log_tasks import LONG

pytestmark = pytest.mark.real_redis

ROOT = Path(__file__).parent.parent
HANDLERS = "tests.helpers.log_tasks:HANDLERS"
STDLIB_LOGGER = "tests.helpers.log_tasks"


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    client = syncredis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


def argv(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "leaseq", "--redis", url, *args]


def run(url: str, *args: str, stdin: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(url, *args), input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def enqueue(url: str, queue: str, task: str, payloads: list[Any], *options: str) -> None:
    done = run(url, "enqueue", "-q", queue, task, *options,
               stdin="".join(json.dumps(p) + "\n" for p in payloads))
    assert done.returncode == 0, done.stderr


def stats(url: str, queue: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(run(url, "stats", "-q", queue, "--json").stdout)[0]
    return result


def parse(text: str) -> list[dict[str, Any]]:
    """Every line as JSON: a line that does not parse fails the test, with the line."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            events.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line[:300]!r}")
    return events


def wait_until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
    return value


class Fleet:
    """``leaseq --log-format json worker ... -p N`` with its output (stdout and stderr,
    as ``> log 2>&1`` has it) going to a file or a pipe."""

    def __init__(self, url: str, *args: str, log: Path, to_pipe: bool = False) -> None:
        self.log = log
        self._file: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        if to_pipe:
            self.proc = subprocess.Popen(
                argv(url, "--log-format", "json", "worker", *args), cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            # Drained all along, as a pipe's reader does, into the same file.
            self._reader = threading.Thread(target=self._copy, daemon=True)
            self._reader.start()
        else:
            self._file = open(log, "wb")  # noqa: SIM115 - closed in close()
            self.proc = subprocess.Popen(
                argv(url, "--log-format", "json", "worker", *args), cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=self._file, stderr=subprocess.STDOUT)

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log, "wb") as out:
            while chunk := self.proc.stdout.read1(65536):
                out.write(chunk)
                out.flush()

    def events(self) -> list[dict[str, Any]]:
        """The complete JSON lines so far (a line still being written is skipped)."""
        out = []
        for line in self.log.read_bytes().decode("utf-8", "replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event
                and all(e.get(k) == v for k, v in fields.items())]

    def wait_for(self, event: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        found: list[dict[str, Any]] = wait_until(lambda: self.find(event, **fields), timeout)
        return found[-1]

    def child_ready(self, pid: int) -> None:
        """Wait until the child ``pid`` logged worker_started (its signal handlers are
        in place)."""
        self.wait_for("worker_started", pid=pid)

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    def close(self) -> None:
        """Stop the fleet (a failed test too) and leave no child behind: SIGKILL of the
        supervisor alone would orphan its children."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for started in self.find("worker_process_started"):
            pid = started["child_pid"]
            # Only if that pid is still one of our children, not a reused number.
            with contextlib.suppress(OSError):
                if b"leaseq" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(10)
        if self._file is not None:
            self._file.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def fleets(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(url: str, *args: str, to_pipe: bool = False) -> Fleet:
        fleet = Fleet(url, *args, log=tmp_path / f"fleet-{len(made)}.log", to_pipe=to_pipe)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()


# -- 1. whole lines, each saying which process wrote it -------------------------------------


@pytest.mark.parametrize("to_pipe", [False, True], ids=["file", "pipe"])
def test_fleet_writes_only_whole_json_lines_each_naming_its_process(
    url: str, fleets: Callable[..., Fleet], to_pipe: bool,
) -> None:
    """Three children logging thousands of lines (some longer than PIPE_BUF) through
    structlog and the stdlib into one file or pipe: every line parses, nothing is lost,
    every child line has pid and process, the supervisor's have its pid."""
    jobs = 2000
    enqueue(url, "lines", "chatty", list(range(jobs)))
    fleet = fleets(url, HANDLERS, "-q", "lines", "-p", "3", "-c", "10", to_pipe=to_pipe)
    client = syncredis.Redis.from_url(url)
    try:
        wait_until(lambda: client.scard("leaseq:{lines}:done") == jobs, timeout=60)
    finally:
        client.close()
    assert fleet.stop() == 0
    events = parse(fleet.log.read_text())

    supervisor = fleet.proc.pid
    started = {e["child_pid"]: e["index"] for e in events
               if e["event"] == "worker_process_started"}
    assert sorted(started.values()) == [0, 1, 2]
    for e in events:
        assert isinstance(e.get("pid"), int), e
        if e["pid"] == supervisor:
            assert "process" not in e, e
        else:
            assert e.get("process") == started[e["pid"]], e
    assert {e["pid"] for e in events} == {supervisor, *started}
    structlog_lines = [e for e in events if e["event"] == "chatty_structlog"]
    stdlib_lines = [e for e in events if e["event"].startswith("chatty_stdlib ")]
    assert sorted(e["n"] for e in structlog_lines) == list(range(jobs))
    assert len(stdlib_lines) == jobs
    assert {e["logger"] for e in stdlib_lines} == {STDLIB_LOGGER}
    assert sum(e["long"] == LONG for e in structlog_lines) == jobs // 10
    assert sum(e["event"].endswith(LONG) for e in stdlib_lines) == jobs // 10


# -- 2. burst, crashes, restarts, stops -----------------------------------------------------


def test_burst_fleet_exits_zero_once_the_queue_is_drained(
    url: str, fleets: Callable[..., Fleet],
) -> None:
    """-p 2 --burst: both children drain the queue and exit 0; neither is restarted and
    the supervisor exits 0."""
    enqueue(url, "burst", "chatty", list(range(1, 400)))
    fleet = fleets(url, HANDLERS, "-q", "burst", "-p", "2", "--burst")
    assert fleet.wait(timeout=30) == 0
    events = parse(fleet.log.read_text())
    s = stats(url, "burst")
    assert (s["done"], s["todos"], s["in_progress"]) == (399, 0, 0)
    names = [e["event"] for e in events]
    assert names.count("worker_process_started") == 2
    assert names.count("worker_process_died") == 0
    exited = [e for e in events if e["event"] == "worker_process_exited"]
    assert sorted((e["index"], e["code"]) for e in exited) == [(0, 0), (1, 0)]


def test_burst_fleet_logs_drained_children_as_expected_not_as_a_warning(
    url: str, fleets: Callable[..., Fleet],
) -> None:
    """With --burst the supervisor knows that a child exiting 0 has drained the queue:
    an info line, not the warning of a child that stopped by itself. (Needs the worker
    command to pass burst to Supervisor.)"""
    enqueue(url, "quiet", "chatty", [1, 2, 3])
    fleet = fleets(url, HANDLERS, "-q", "quiet", "-p", "2", "--burst")
    assert fleet.wait(timeout=30) == 0
    exited = [e for e in parse(fleet.log.read_text()) if e["event"] == "worker_process_exited"]
    assert [e["level"] for e in exited] == ["info", "info"]


def test_sigkilled_child_is_restarted_and_counted(
    url: str, fleets: Callable[..., Fleet],
) -> None:
    """A child killed by SIGKILL is reported with its signal and started again, with
    restarts=1; the new child serves; a later SIGTERM stops all and exits 0."""
    fleet = fleets(url, HANDLERS, "-q", "crash", "-p", "2")
    first = fleet.wait_for("worker_process_started", index=0)
    fleet.child_ready(first["child_pid"])
    os.kill(first["child_pid"], signal.SIGKILL)
    died = fleet.wait_for("worker_process_died", index=0)
    assert (died["child_pid"], died["code"], died["signal"]) == (
        first["child_pid"], -signal.SIGKILL, "SIGKILL")
    again = fleet.wait_for("worker_process_started", index=0, restarts=1)
    assert again["child_pid"] != first["child_pid"]
    fleet.child_ready(again["child_pid"])
    # The other child frozen meanwhile: it could claim every job in one go otherwise.
    other = fleet.wait_for("worker_process_started", index=1)["child_pid"]
    os.kill(other, signal.SIGSTOP)
    try:
        enqueue(url, "crash", "chatty", list(range(1, 21)))
        fleet.wait_for("job_acked", pid=again["child_pid"])
    finally:
        os.kill(other, signal.SIGCONT)
    assert fleet.stop() == 0
    events = parse(fleet.log.read_text())
    assert [e["index"] for e in events if e["event"] == "worker_process_died"] == [0]


def test_children_stop_by_themselves_when_the_supervisor_is_sigkilled(
    url: str, fleets: Callable[..., Fleet],
) -> None:
    """Nothing forwards a signal from a SIGKILLed supervisor: its children notice they
    are orphaned and stop gracefully (exit), rather than running on unsupervised."""
    fleet = fleets(url, HANDLERS, "-q", "orphans", "-p", "2")
    pids = [fleet.wait_for("worker_process_started", index=i)["child_pid"] for i in (0, 1)]
    for pid in pids:
        fleet.child_ready(pid)
    fleet.proc.kill()
    fleet.proc.wait(timeout=10)

    def gone() -> bool:
        for pid in pids:
            try:
                if b"leaseq" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return False
            except OSError:
                continue
        return True

    wait_until(gone, timeout=30)


def test_sigterm_during_restart_backoff_starts_no_child_and_exits_promptly(
    url: str, fleets: Callable[..., Fleet],
) -> None:
    """SIGTERM while a crashed child waits out its restart delay (2 s, its second crash
    in a row): the delay ends at once, no child is started after the signal, and the
    supervisor exits well before the delay would have run out, reporting the crash."""
    fleet = fleets(url, HANDLERS, "-q", "backoff", "-p", "2")
    pid = fleet.wait_for("worker_process_started", index=0)["child_pid"]
    for restarts in (1, 2):
        fleet.child_ready(pid)
        os.kill(pid, signal.SIGKILL)
        if restarts == 1:
            pid = fleet.wait_for("worker_process_started", index=0, restarts=1)["child_pid"]
    died = fleet.wait_for("worker_process_died", index=0, restarts=1)
    assert died["restart_in"] == 2.0
    sent = time.monotonic()
    code = fleet.stop()
    elapsed = time.monotonic() - sent
    assert code == 128 + signal.SIGKILL  # the last run of child 0 was killed
    assert elapsed < died["restart_in"], elapsed
    events = parse(fleet.log.read_text())
    names = [e["event"] for e in events]
    signalled = names.index("signal_forwarded")
    assert "worker_process_started" not in names[signalled:]
    assert names.count("worker_process_started") == 3  # 0, 1 and the one restart of 0
    assert fleet.find("worker_process_not_restarted", index=0, reason="stopping")


# -- 3. the standard library's logging ------------------------------------------------------


def worker_run(url: str, queue: str, *options: str, fmt: str = "json",
               level: str = "info") -> subprocess.CompletedProcess[str]:
    enqueue(url, queue, "stdlib", [7], "--max-attempts", "1")
    done = run(url, "--log-format", fmt, "--log-level", level, "worker", HANDLERS, "-q",
               queue, "--burst", *options)
    assert done.returncode == 0, done.stderr
    return done


def test_handler_stdlib_logging_is_rendered_as_json_with_level_and_logger(url: str) -> None:
    """A handler's logging.getLogger(__name__) lines are JSON lines like leaseq's own:
    level, logger name, timestamp, pid, extra fields; a logged exception carries its
    traceback; warnings.warn is a JSON line too. The failing handler still dies."""
    events = parse(worker_run(url, "std").stderr)
    by_event = {e["event"]: e for e in events}
    info = by_event["stdlib_info_line"]
    assert (info["level"], info["logger"], info["n"]) == ("info", STDLIB_LOGGER, 7)
    assert info["timestamp"].endswith("Z")
    warning = by_event["stdlib_warning_line"]
    assert (warning["level"], warning["logger"]) == ("warning", STDLIB_LOGGER)
    failure = by_event["stdlib_exception_line"]
    assert (failure["level"], failure["logger"]) == ("error", STDLIB_LOGGER)
    assert failure["exception"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in failure["exception"]
    assert "handler failed on purpose" in by_event["job_dead"]["error"]
    pids = {e["pid"] for e in events}
    assert len(pids) == 1 and all("process" not in e for e in events)


def test_log_level_applies_to_stdlib_loggers(url: str) -> None:
    """--log-level warning drops a handler's stdlib info line and keeps its warning."""
    events = parse(worker_run(url, "lvl", level="warning").stderr)
    names = [e["event"] for e in events]
    assert "stdlib_info_line" not in names
    assert "stdlib_warning_line" in names
    assert {e["level"] for e in events} <= {"warning", "error", "critical"}


def test_console_format_renders_stdlib_lines_and_keeps_tracebacks_multiline(
    url: str,
) -> None:
    """--log-format console: stdlib lines go through the console renderer (level and
    logger shown); a logged exception's traceback and a dead job's error (which ends
    with the handler's frames) keep their own lines instead of one line with \\n."""
    lines = worker_run(url, "con", fmt="console").stderr.splitlines()
    [at] = [i for i, line in enumerate(lines) if "stdlib_exception_line" in line]
    assert "[error" in lines[at] and STDLIB_LOGGER in lines[at]
    rest = lines[at + 1:]
    assert "Traceback (most recent call last):" in rest
    assert "ZeroDivisionError: division by zero" in rest
    assert not any("\\n" in line for line in lines)
    [warning] = [line for line in lines if "stdlib_warning_line" in line]
    assert "[warning" in warning and STDLIB_LOGGER in warning
    [dead] = [i for i, line in enumerate(lines) if " job_dead " in line]
    assert "error='RuntimeError: handler failed on purpose'" in lines[dead]
    assert '    raise RuntimeError("handler failed on purpose")' in lines[dead + 1:]
