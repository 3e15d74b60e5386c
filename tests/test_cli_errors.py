"""How the ``leaseq`` command fails, is interrupted and reads to an operator: errors that
cannot heal stop workers and reapers at start-up, one line instead of tracebacks, a
closed stdout, Ctrl-C while enqueueing from stdin, and what read commands print.

Every test runs ``python -m leaseq`` as a subprocess against this module's own
redis-servers (one plain, one with a password, one speaking only TLS)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis as syncredis

from leaseq.cli.errors import _short_sentinel
from leaseq.testing import RedisServer, free_port

from .helpers.reaping import reaped
from .test_tls import make_certs

pytestmark = pytest.mark.real_redis

ROOT = Path(__file__).parent.parent
HANDLERS = "tests.helpers.tasks:HANDLERS"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d"


def leaseq(url: str | None, *args: str, stdin: str | None = None, timeout: float = 15,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "leaseq", *(["--redis", url] if url else []), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})}, check=False)


def popen(url: str, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "leaseq", "--redis", url, *args],
                            cwd=ROOT, **kwargs)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class Lines:
    """The lines of a pipe, read by a thread, each awaited with a deadline."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._lines: queue.Queue[bytes] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: IO[bytes]) -> None:
        try:
            for line in pipe:
                self._lines.put(line)
        except (OSError, ValueError):  # closed by the test
            return

    def next(self, timeout: float = 10.0) -> str:
        line = self._lines.get(timeout=timeout).decode().rstrip("\n")
        self.seen.append(line)
        return line

    def until(self, predicate: Any, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.01, deadline - time.monotonic()))
            if predicate(line):
                return line


# -- servers of this module ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        admin = syncredis.Redis.from_url(s.url)
        admin.acl_setuser("worker", enabled=True, passwords=["+pw"], keys=["leaseq:*"],
                          commands=["+@all"])
        admin.acl_setuser("elsewhere", enabled=True, passwords=["+pw"], keys=["other:*"],
                          commands=["+@all"])
        admin.acl_setuser("noscripts", enabled=True, passwords=["+pw"], keys=["leaseq:*"],
                          commands=["+@all", "-@scripting"])
        admin.close()
        yield s


@pytest.fixture
def r(server: RedisServer) -> Iterator[syncredis.Redis]:
    client = syncredis.Redis.from_url(server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def url(server: RedisServer, r: syncredis.Redis) -> str:
    return server.url


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    with RedisServer(extra_args=["--requirepass", "s3cret"]) as s:
        yield s


@pytest.fixture(scope="module")
def scriptless_server() -> Iterator[RedisServer]:
    """A server without EVALSHA (renamed away, as some managed offerings do)."""
    with RedisServer(extra_args=["--rename-command", "EVALSHA", ""]) as s:
        yield s


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    """A plain TCP server that answers anything with an HTTP 400 and hangs up."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    certs = tmp_path_factory.mktemp("certs")
    make_certs(certs)
    port = free_port()
    with RedisServer(extra_args=[
            "--tls-port", str(port), "--tls-cert-file", str(certs / "server.crt"),
            "--tls-key-file", str(certs / "server.key"),
            "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "no"]):
        yield port


def _bad_url(case: str, request: pytest.FixtureRequest) -> str:
    if case == "http_port":
        return f"redis://127.0.0.1:{request.getfixturevalue('http_port')}/0"
    if case == "untrusted_tls":
        return f"rediss://127.0.0.1:{request.getfixturevalue('tls_port')}/0"
    if case == "missing_command":
        return request.getfixturevalue("scriptless_server").url
    if case == "wrong_password":
        return f"redis://:nope@127.0.0.1:{request.getfixturevalue('password_server').port}/0"
    port = request.getfixturevalue("server").port
    user = {"unknown_user": "ghost:pw", "wrong_user_password": "worker:bad",
            "no_key_permission": "elsewhere:pw", "no_script_permission": "noscripts:pw"}[case]
    return f"redis://{user}@127.0.0.1:{port}/0"


# -- 1. errors that cannot heal stop worker and reaper at start-up -----------------------------


@pytest.mark.parametrize("case", [
    "wrong_password", "unknown_user", "wrong_user_password", "no_key_permission",
    "no_script_permission", "missing_command", "http_port", "untrusted_tls"])
def test_worker_and_reaper_stop_at_start_up_with_the_line_stats_prints(
    case: str, request: pytest.FixtureRequest,
):
    """An error no retry can heal ends `worker` and `reaper` at once with exit 3 and the
    one line `stats` prints for the same URL, instead of logging redis_unavailable
    forever."""
    bad = _bad_url(case, request)
    stats = leaseq(bad, "stats", "-q", "q")
    assert stats.returncode == 3, stats.stderr
    assert "Traceback" not in stats.stderr
    *notes, line = stats.stderr.strip().splitlines()
    assert all("is not known on this server" in note for note in notes), notes
    assert line.startswith("leaseq: ")
    for command in (["worker", HANDLERS, "-q", "q"], ["reaper", "-q", "q"]):
        result = leaseq(bad, "--log-format", "json", *command)
        assert result.returncode == 3, (command, result.stderr)
        # The same line, but for the command Redis refused (a permission is per command).
        assert _without_command(one_line(result.stderr)) == _without_command(line)
    assert "nope" not in line and ":bad@" not in line  # passwords stay redacted


def _without_command(line: str) -> str:
    line = re.sub(r"with args beginning with: .*$", "", line)
    return re.sub(r" \([A-Z|]+ [^)]*\)$| the '[a-z|]+' command$", "", line)


def test_worker_with_several_processes_stops_before_starting_children(
    password_server: RedisServer,
):
    bad = f"redis://:nope@127.0.0.1:{password_server.port}/0"
    result = leaseq(bad, "--log-format", "json", "worker", HANDLERS, "-q", "q", "-p", "2")
    assert result.returncode == 3
    assert "refused the credentials" in one_line(result.stderr)


def test_connection_refused_at_start_up_is_logged_once_and_retried_until_redis_answers():
    """A Redis that is not up yet heals: the worker logs it once, waits, and serves once
    the server is there."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with reaped(popen(url, "--log-format", "json", "worker", HANDLERS, "-q", "later",
                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE)) as proc:
        assert proc.stderr is not None
        log = Lines(proc.stderr)
        log.until(lambda line: '"redis_unavailable"' in line)
        assert proc.poll() is None
        with RedisServer(port=port) as server:
            client = syncredis.Redis.from_url(server.url)
            log.until(lambda line: '"worker_started"' in line, timeout=15)
            job = leaseq(url, "enqueue", "-q", "later", "echo", "1").stdout.strip()
            wait_until(lambda: client.sismember("leaseq:{later}:done", job))
            client.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    assert sum('"redis_unavailable"' in line for line in log.seen) == 1


def test_signal_while_waiting_for_redis_at_start_up_stops_cleanly():
    with reaped(popen(f"redis://127.0.0.1:{free_port()}/0", "--log-format", "json",
                      "reaper", "-q", "q", stdin=subprocess.DEVNULL,
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)) as proc:
        assert proc.stderr is not None
        Lines(proc.stderr).until(lambda line: '"redis_unavailable"' in line)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize("command", [
    ["stats"], ["stats", "-q", "q", "--json"], ["inspect", "some-id"], ["dead", "list", "-q", "q"],
    ["dead", "requeue", "-q", "q", "--all", "--yes"], ["enqueue", "-q", "q", "t", "1"],
    ["enqueue", "-q", "q", "t"]])
def test_an_http_port_is_one_line_and_exit_3_for_every_command(http_port: int,
                                                               command: list[str]):
    result = leaseq(f"redis://127.0.0.1:{http_port}/0", *command, stdin="1\n")
    assert result.returncode == 3, result.stderr
    assert "does not speak the Redis protocol" in one_line(result.stderr)


@pytest.mark.parametrize(("error", "kept"), [
    ("Error 111 connecting to 127.0.0.1:{port}. Connection refused.",  # redis-py 8.1
     "Error 111. Connection refused."),
    (("network:ConnectionError: Error 111 connecting to 127.0.0.1:{port}. Connect call "
      "failed ('127.0.0.1', {port})."),  # redis-py 8.2, the standard event loop
     "Error 111. Connect call failed"),
])
def test_each_sentinels_error_is_kept_without_the_address_twice(error: str, kept: str):
    """redis-py's list of sentinel clients (their reprs, ~1,000 characters each) becomes
    each sentinel's address and its error, whichever way redis-py words the error."""
    clients = ", ".join(
        "<redis.asyncio.client.Redis(<redis.asyncio.connection.ConnectionPool(<redis."
        f"asyncio.connection.Connection(db=0,host=127.0.0.1,port={port},socket_timeout=5)>)>)>"
        f" - {error.format(port=port)}" for port in (26379, 26380))
    assert _short_sentinel(f"No master found for 'mymaster' : {clients}") == (
        f"No master found for 'mymaster' (sentinel 127.0.0.1:26379: {kept}; "
        f"sentinel 127.0.0.1:26380: {kept})")


def test_a_sentinel_that_cannot_be_reached_is_one_short_line():
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    result = leaseq(f"redis+sentinel://{hosts}/mymaster", "stats")
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert len(line) < 300, line
    assert "No master found for 'mymaster'" in line
    for host in hosts.split(","):
        assert host in line


# -- 2. one line instead of tracebacks; a closed stdout ---------------------------------------


def test_a_handler_function_as_worker_target_is_one_line_and_exit_2(url: str):
    result = leaseq(url, "worker", "tests.helpers.tasks:echo", "-q", "q", "--burst")
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "tests.helpers.tasks:echo" in line
    assert "(ctx, payload)" in line
    assert "expected a dict of task handlers" in line


def _dead_jobs(url: str, queue_name: str, n: int) -> None:
    lines = "".join(json.dumps({"n": i, "pad": "x" * 40}) + "\n" for i in range(n))
    assert leaseq(url, "enqueue", "-q", queue_name, "nope", stdin=lines).returncode == 0
    done = leaseq(url, "worker", HANDLERS, "-q", queue_name, "--burst", "--no-reaper",
                  "-c", "50", timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["dead_list", "enqueue_stdin"])
def test_a_closed_stdout_ends_the_command_quietly_with_141(url: str, command: str):
    """`leaseq dead list | head -1`: the reader left, which is neither a Redis error nor
    worth a message."""
    if command == "dead_list":
        _dead_jobs(url, "pipe", 3000)
        argv = ["dead", "list", "-q", "pipe", "--limit", "5000"]
        feed = b""
    else:
        argv = ["enqueue", "-q", "pipe", "t"]
        feed = b"".join(b'{"n": %d}\n' % i for i in range(50_000))
    with reaped(popen(url, *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)) as proc:
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
        assert stdin is not None and stdout is not None and stderr is not None

        def write() -> None:
            with contextlib.suppress(BrokenPipeError):
                stdin.write(feed)
                stdin.close()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        assert stdout.readline()
        stdout.close()
        said = stderr.read().decode()
        assert proc.wait(timeout=30) == 141, said
        writer.join(timeout=10)
    assert said == ""


# -- 3. enqueue from stdin streams, and Ctrl-C keeps what was typed ---------------------------


def test_enqueue_from_stdin_prints_each_id_as_it_goes_and_ctrl_c_keeps_the_jobs(
    url: str, r: syncredis.Redis,
):
    with reaped(popen(url, "enqueue", "-q", "typed", "echo", stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stderr is not None
        ids = Lines(proc.stdout)
        proc.stdin.write(b'{"line": 1}\n')
        proc.stdin.flush()
        first = ids.next(timeout=10)  # before stdin is closed: it did not wait for EOF
        proc.stdin.write(b'{"line": 2}\n')
        proc.stdin.flush()
        second = ids.next(timeout=10)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
        assert "2 jobs enqueued" in proc.stderr.read().decode()
    assert r.smembers("leaseq:{typed}:todos") == {first.encode(), second.encode()}


def test_enqueue_from_a_terminal_says_it_reads_lines_until_ctrl_d(url: str):
    controller, terminal = pty.openpty()
    try:
        with reaped(popen(url, "enqueue", "-q", "tty", "echo", stdin=terminal,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)) as proc:
            os.close(terminal)
            assert proc.stdout is not None and proc.stderr is not None
            os.write(controller, b"1\n")
            assert Lines(proc.stdout).next(timeout=10)
            os.write(controller, b"\x04")  # Ctrl-D at the start of a line: end of input
            assert proc.wait(timeout=15) == 0
            assert "until Ctrl-D" in proc.stderr.read().decode()
    finally:
        os.close(controller)


@pytest.mark.parametrize("payload", ["NaN", "Infinity", "-Infinity", '{"x": NaN}'])
def test_nan_payloads_are_invalid_json_exit_2(url: str, payload: str):
    result = leaseq(url, "enqueue", "-q", "q", "t", "--", payload)
    assert result.returncode == 2, result.stderr
    assert "invalid JSON" in one_line(result.stderr)
    from_stdin = leaseq(url, "enqueue", "-q", "q", "t", stdin=f"1\n{payload}\n")
    assert from_stdin.returncode == 2
    assert "stdin line 2: invalid JSON" in one_line(from_stdin.stderr)


# -- 4. what the read and admin commands print -------------------------------------------------


def test_inspect_shows_local_iso_times_with_ages_and_dashes_for_what_is_missing(url: str):
    job = leaseq(url, "enqueue", "-q", "insp", "echo", '{"a": 1}').stdout.strip()
    result = leaseq(url, "inspect", job)
    assert result.returncode == 0, result.stderr
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())
    assert re.fullmatch(ISO + r" \(\d+\.\d s ago\)", fields["enqueued_at"]), fields
    assert fields["finished_at"] == fields["result"] == fields["lease_ttl"] == "-"
    assert fields["payload"] == '{"a": 1}'
    assert "None" not in result.stdout
    raw = json.loads(leaseq(url, "inspect", job, "--json").stdout)
    assert isinstance(raw["enqueued_at"], float) and raw["finished_at"] is None


def test_stats_at_80_columns_keeps_headers_whole_and_shows_small_rates(url: str):
    leaseq(url, "enqueue", "-q", "narrow", "echo", stdin="1\n2\n")
    assert leaseq(url, "worker", HANDLERS, "-q", "narrow", "--burst").returncode == 0
    result = leaseq(url, "stats", "-q", "narrow", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    for header in ("queue", "todos", "in_progress", "delayed", "done", "dead"):
        assert re.search(rf"\b{header}\b", result.stdout), (header, result.stdout)
    assert "0.03" in result.stdout  # 2 acks in the last minute
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def _read_until(fd: int, needle: bytes, timeout: float = 15.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"{needle!r} not seen before EOF in {seen[-500:]!r}")
            seen += chunk
    return seen


def test_stats_watch_ends_quietly_with_exit_0_on_ctrl_c(url: str):
    leaseq(url, "enqueue", "-q", "watched", "echo", "1")
    controller, terminal = pty.openpty()
    try:
        with reaped(popen(url, "stats", "--watch", "-q", "watched", "--interval", "0.1",
                          stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.PIPE,
                          env={**os.environ, "COLUMNS": "100", "LINES": "30"})) as proc:
            os.close(terminal)
            assert proc.stderr is not None
            _read_until(controller, b"watched")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
            assert proc.stderr.read() == b""  # no "Aborted!"
    finally:
        os.close(controller)


def test_dead_list_has_a_header_and_the_time_of_death(url: str):
    _dead_jobs(url, "graves", 2)
    result = leaseq(url, "dead", "list", "-q", "graves")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["JOB", "ID", "TASK", "DIED", "REASON"]
    assert len(rows) == 2
    for row in rows:
        assert re.search(ISO + r" \([\d.]+ s ago\)", row), row
        assert "unknown task 'nope'" in row


def test_confirmation_prompts_say_how_many_jobs(url: str, r: syncredis.Redis):
    _dead_jobs(url, "ask", 3)
    refused = leaseq(url, "dead", "purge", "-q", "ask", "--all")
    assert refused.returncode == 1
    assert "refusing to purge 3 dead jobs of queue ask without --yes" in refused.stderr
    controller, terminal = pty.openpty()
    try:
        with reaped(popen(url, "dead", "requeue", "-q", "ask", "--all", stdin=terminal,
                          stdout=terminal, stderr=terminal)) as proc:
            os.close(terminal)
            _read_until(controller, b"requeue 3 dead jobs of queue ask? [y/N]")
            os.write(controller, b"y\n")
            assert proc.wait(timeout=15) == 0
    finally:
        os.close(controller)
    assert r.scard("leaseq:{ask}:todos") == 3


def test_dead_requeue_or_purge_of_an_unknown_id_exits_1_naming_it(url: str,
                                                                 r: syncredis.Redis):
    _dead_jobs(url, "ids", 1)
    (known,) = (m.decode() for m in r.smembers("leaseq:{ids}:dead"))
    for verb in ("requeue", "purge"):
        result = leaseq(url, "dead", verb, "-q", "ids", "UNKNOWN", "--yes")
        assert result.returncode == 1, result.stderr
        assert one_line(result.stderr).startswith("leaseq: not found: UNKNOWN")
    both = leaseq(url, "dead", "requeue", "-q", "ids", known, "UNKNOWN", "--yes", "--json")
    assert both.returncode == 1
    assert json.loads(both.stdout) == {"requeued": 1, "not_found": ["UNKNOWN"]}
    assert r.sismember("leaseq:{ids}:todos", known)


def test_log_options_are_accepted_after_the_command(url: str):
    leaseq(url, "enqueue", "-q", "late", "echo", "1")
    result = leaseq(url, "worker", HANDLERS, "-q", "late", "--burst", "--log-format", "json",
                    "--log-level", "info")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert "worker_started" in events
    quiet = leaseq(url, "--log-format", "console", "dead", "list", "-q", "late",
                   "--log-format", "json")
    assert quiet.returncode == 0, quiet.stderr


@pytest.mark.parametrize("command", [
    ["stats", "-q", "nosuch"], ["stats", "-q", "nosuch", "--json"],
    ["inspect", "some-id", "-q", "nosuch"], ["dead", "list", "-q", "nosuch"]])
def test_read_commands_say_when_a_queue_is_not_known(url: str, command: list[str]):
    leaseq(url, "enqueue", "-q", "real", "echo", "1")
    result = leaseq(url, *command)
    assert ("leaseq: queue nosuch is not known on this server (no job was ever enqueued)"
            in result.stderr.splitlines())
    assert "queue real" not in leaseq(url, "stats", "-q", "real").stderr


def test_scriptable_commands_print_json(url: str, r: syncredis.Redis):
    (line,) = leaseq(url, "enqueue", "-q", "js", "echo", "1", "--json").stdout.splitlines()
    job = json.loads(line)["job_id"]
    assert json.loads(line) == {"queue": "js", "job_id": job}
    many = leaseq(url, "enqueue", "-q", "js", "nope", "--json", stdin="1\n2\n")
    dead_ids = [json.loads(x)["job_id"] for x in many.stdout.splitlines()]
    assert len(dead_ids) == 2
    leaseq(url, "worker", HANDLERS, "-q", "js", "--burst", "--no-reaper")
    assert json.loads(leaseq(url, "stats", "-q", "js", "--json").stdout)[0]["dead"] == 2
    assert json.loads(leaseq(url, "inspect", job, "--json").stdout)["state"] == "done"
    listed = [json.loads(x) for x in leaseq(url, "dead", "list", "-q", "js",
                                            "--json").stdout.splitlines()]
    assert sorted(x["job_id"] for x in listed) == sorted(dead_ids)
    purged = leaseq(url, "dead", "purge", "-q", "js", "--all", "-y", "--json")
    assert json.loads(purged.stdout) == {"purged": 2, "not_found": []}
