"""The ``leaseq`` command, run as a subprocess against a real redis-server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as syncredis

from leaseq.testing import RedisServer, free_port

from .helpers.reaping import reap

pytestmark = pytest.mark.real_redis

ROOT = Path(__file__).parent.parent


def cli(url: str | None, *args: str, stdin: str | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "leaseq"]
    if url is not None:
        argv += ["--redis", url]
    return subprocess.run(
        [*argv, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
        cwd=ROOT, env={**os.environ, **(env or {})}, check=False)


_spawned: list[subprocess.Popen[str]] = []


def spawn(url: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "leaseq", "--redis", url, "--log-format", "json", *args],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    _spawned.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _reap_spawned() -> Iterator[None]:
    """Kill what a failed test left running and close its pipes, in that test.

    Left to the garbage collector, the pipes' ResourceWarning would fail whichever test
    happened to be running when they were collected.
    """
    yield
    while _spawned:
        reap(_spawned.pop())


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[syncredis.Redis]:
    client = syncredis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def url(redis_server: RedisServer, r: syncredis.Redis) -> str:
    return redis_server.url


def wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.mark.parametrize("command", [
    [], ["worker"], ["reaper"], ["enqueue"], ["stats"], ["inspect"], ["dead"],
    ["dead", "list"], ["dead", "requeue"], ["dead", "purge"], ["doctor"], ["demo"],
    ["web"], ["queue", "pause"], ["queue", "resume"], ["queue", "limits"]])
def test_every_command_has_help(command: list[str]):
    result = cli(None, *command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout


def test_enqueue_stats_inspect_round_trip(url: str):
    result = cli(url, "enqueue", "-q", "mail", "send", '{"to": "a@b.c"}')
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    lines = "\n".join(json.dumps({"n": i}) for i in range(2500)) + "\n\n"
    result = cli(url, "enqueue", "-q", "mail", "send", stdin=lines)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 2500
    result = cli(url, "stats", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["queue"], row["todos"], row["in_progress"], row["oldest_lease_age"]) == (
        "mail", 2501, 0, None)
    result = cli(url, "stats", "-q", "mail")
    assert result.returncode == 0
    assert "2501" in result.stdout
    result = cli(url, "inspect", job_id, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["queue"], info["state"], info["payload"]) == ("mail", "todo", {"to": "a@b.c"})


def test_enqueue_with_explicit_id_is_idempotent_and_bad_json_is_refused(url: str):
    first = cli(url, "enqueue", "-q", "q", "t", "1", "--job-id", "fixed")
    again = cli(url, "enqueue", "-q", "q", "t", "2", "--job-id", "fixed")
    assert first.stdout.strip() == again.stdout.strip() == "fixed"
    bad = cli(url, "enqueue", "-q", "q", "t", "{nope")
    assert bad.returncode == 2
    assert "invalid JSON" in bad.stderr
    bad_line = cli(url, "enqueue", "-q", "q", "t", stdin='1\n{"x":\n')
    assert bad_line.returncode == 2
    assert "stdin line 2" in bad_line.stderr
    bad_queue = cli(url, "enqueue", "-q", "bad{name}", "t", "1")
    assert bad_queue.returncode == 2
    assert "queue name" in bad_queue.stderr


def test_inspect_unknown_job_exits_1(url: str):
    result = cli(url, "inspect", "nope", "-q", "q")
    assert result.returncode == 1
    assert "no job 'nope'" in result.stderr


def test_unreachable_redis_is_one_line_and_exit_3():
    port = free_port()
    result = cli(f"redis://127.0.0.1:{port}/0", "stats")
    assert result.returncode == 3
    assert result.stderr.startswith(f"leaseq: cannot reach Redis at redis://127.0.0.1:{port}/0")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_password_is_redacted_and_bad_schemes_refused():
    port = free_port()
    result = cli(f"redis://user:s3cret@127.0.0.1:{port}/0", "stats")
    assert result.returncode == 3
    assert "s3cret" not in result.stderr
    assert "user:***@" in result.stderr
    result = cli("http://localhost/", "stats")
    assert result.returncode == 2
    assert "redis://, rediss://, unix://, redis+cluster:// or" in result.stderr


def test_redis_url_from_environment(url: str):
    result = cli(None, "enqueue", "-q", "envq", "t", "1", env={"LEASEQ_REDIS_URL": url})
    assert result.returncode == 0, result.stderr
    assert cli(url, "stats", "-q", "envq", "--json").stdout.count('"todos": 1') == 1


def test_worker_burst_runs_every_job(url: str, r: syncredis.Redis):
    cli(url, "enqueue", "-q", "w", "echo", stdin="\n".join(str(i) for i in range(200)))
    result = cli(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "w", "--burst")
    assert result.returncode == 0, result.stderr
    stats = json.loads(cli(url, "stats", "-q", "w", "--json").stdout)[0]
    assert (stats["done"], stats["todos"], stats["in_progress"]) == (200, 0, 0)


def test_worker_factory_target_and_bad_targets(url: str):
    cli(url, "enqueue", "-q", "f", "echo", "1")
    result = cli(url, "worker", "tests.helpers.tasks:make_worker", "-q", "f", "--burst")
    assert result.returncode == 0, result.stderr
    assert json.loads(cli(url, "stats", "-q", "f", "--json").stdout)[0]["done"] == 1
    for target, message in [("nodots", "expected MODULE:ATTR"),
                            ("no_such_module:X", "cannot import"),
                            ("tests.helpers.tasks:missing", "has no attribute"),
                            ("tests.helpers.tasks:NOT_HANDLERS", "expected a dict")]:
        result = cli(url, "worker", target, "-q", "f")
        assert result.returncode == 2, (target, result.stderr)
        assert message in result.stderr


def test_sigterm_during_jobs_leaves_no_lease_behind(url: str, r: syncredis.Redis):
    cli(url, "enqueue", "-q", "term", "sleep", stdin="\n".join('{"s": 30}' for _ in range(8)))
    proc = spawn(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "term", "-c", "4",
                 "--grace-period", "0.5")
    wait_until(lambda: r.scard("leaseq:{term}:in_progress") == 4)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert r.scard("leaseq:{term}:in_progress") == 0
    assert r.keys("leaseq:{term}:lease:*") == []
    assert r.scard("leaseq:{term}:todos") == 8
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert events.count("job_released") == 4
    assert "worker_stopped" in events


def test_second_signal_stops_at_once(url: str, r: syncredis.Redis, tmp_path: Path):
    # A job claimed but not yet started is released at the first signal, and the worker
    # exits at once; only a running handler holds it in its grace period.
    mark = tmp_path / "started"
    cli(url, "enqueue", "-q", "twice", "sleep", json.dumps({"s": 60, "mark": str(mark)}))
    proc = spawn(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "twice",
                 "--grace-period", "600")
    wait_until(mark.exists)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None  # still in its (long) grace period
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert r.scard("leaseq:{twice}:todos") == 1
    assert r.keys("leaseq:{twice}:lease:*") == []


def test_sigkilled_worker_job_is_redone_by_another_after_the_lease(url: str, r: syncredis.Redis):
    job_id = cli(url, "enqueue", "-q", "kill", "sleep", '{"s": 1}').stdout.strip()
    victim = spawn(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "kill",
                   "--lease-timeout", "1", "--no-reaper")
    wait_until(lambda: r.scard("leaseq:{kill}:in_progress") == 1)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    rescuer = spawn(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "kill",
                    "--lease-timeout", "1")
    try:
        wait_until(lambda: r.sismember("leaseq:{kill}:done", job_id))
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.communicate(timeout=30)
    info = json.loads(cli(url, "inspect", job_id, "-q", "kill", "--json").stdout)
    assert (info["attempts"], info["lease_expiries"]) == (2, 1)
    assert info["result"]["pid"] == rescuer.pid


def test_processes_option_supervises_children_and_stops_them_together(
    url: str, r: syncredis.Redis,
):
    cli(url, "enqueue", "-q", "multi", "sleep", stdin="\n".join('{"s": 0.2}' for _ in range(12)))
    proc = spawn(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "multi", "-p", "2",
                 "-c", "2")
    try:
        wait_until(lambda: r.scard("leaseq:{multi}:done") == 12)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    pids = {json.loads(r.hget(f"leaseq:{{multi}}:job:{m.decode()}", "result"))["pid"]
            for m in r.smembers("leaseq:{multi}:done")}
    assert len(pids) == 2
    assert proc.pid not in pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_reaper_sidecar_requeues_expired_leases(url: str, r: syncredis.Redis):
    import anyio
    import redis.asyncio as aioredis

    from leaseq import Queue

    async def claim_and_abandon() -> None:
        client = aioredis.Redis.from_url(url)
        q = Queue(client, "side", lease_timeout=0.2)
        await q.enqueue("t", 1)
        assert await q.claim() is not None
        await client.aclose()

    anyio.run(claim_and_abandon)
    proc = spawn(url, "reaper", "-q", "side", "-q", "other", "--interval", "0.05")
    try:
        wait_until(lambda: r.scard("leaseq:{side}:todos") == 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_dead_list_requeue_purge_with_confirmations(url: str, r: syncredis.Redis):
    ids = cli(url, "enqueue", "-q", "d", "nope", stdin="1\n2\n3\n").stdout.split()
    cli(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "d", "--burst", "--no-reaper")
    listed = cli(url, "dead", "list", "-q", "d")
    assert listed.returncode == 0
    assert len(listed.stdout.splitlines()) == 1 + 3  # a header, then one line per job
    assert "unknown task 'nope'" in listed.stdout
    refused = cli(url, "dead", "purge", "-q", "d", "--all")
    assert refused.returncode == 1
    assert "without --yes" in refused.stderr
    assert cli(url, "dead", "purge", "-q", "d", ids[0], "--yes").stdout.strip() == "purged 1 job(s)"
    assert cli(url, "dead", "requeue", "-q", "d", "--all", "-y").stdout.strip() == (
        "requeued 2 job(s)")
    assert r.scard("leaseq:{d}:todos") == 2
    assert cli(url, "dead", "requeue", "-q", "d").returncode == 2


def test_doctor_finds_and_repairs_integrity_problems(url: str, r: syncredis.Redis):
    cli(url, "enqueue", "-q", "doc", "echo", stdin="1\n2\n3\n")
    clean = cli(url, "doctor", "-q", "doc")
    assert clean.returncode == 0, clean.stdout
    assert "integrity" in clean.stdout
    assert "maxmemory-policy: noeviction" in clean.stdout
    r.set("leaseq:{doc}:lease:ghost", "token")  # a lease with no id in in_progress
    orphan = r.smembers("leaseq:{doc}:todos").pop().decode()
    r.srem("leaseq:{doc}:todos", orphan)  # a job hash in no set
    r.sadd("leaseq:{doc}:todos", "hashless")  # an id with no job hash
    found = cli(url, "doctor", "-q", "doc")
    assert found.returncode == 1
    for check in ("orphan_lease", "orphan_job", "missing_hash"):
        assert f"FAIL  {check}" in found.stdout
    repaired = cli(url, "doctor", "-q", "doc", "--repair")
    assert repaired.returncode == 0, repaired.stdout
    assert repaired.stdout.count("(repaired)") == 3
    assert cli(url, "doctor", "-q", "doc").returncode == 0
    assert not r.exists("leaseq:{doc}:lease:ghost")
    assert r.sismember("leaseq:{doc}:todos", orphan)
    assert r.sismember("leaseq:{doc}:dead", "hashless")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_worker_metrics_and_healthz_over_http(url: str, r: syncredis.Redis):
    port = free_port()
    cli(url, "enqueue", "-q", "m", "echo", stdin="1\n2\n3\n")
    proc = spawn(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "m",
                 "--metrics-port", str(port))
    try:
        wait_until(lambda: r.scard("leaseq:{m}:done") == 3)

        def scraped() -> bool:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                return False
            return status == 200 and 'leaseq_queue_jobs{queue="m",state="done"} 3.0' in body

        wait_until(scraped)
        _, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert 'leaseq_jobs_total{event="acked",queue="m"} 3.0' in body
        assert 'leaseq_jobs_in_flight{queue="m"} 0.0' in body
        assert "leaseq_handler_duration_seconds_bucket" in body
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_healthz_reports_an_unreachable_redis(redis_server: RedisServer):
    port = free_port()
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    proc = spawn(dead_url, "reaper", "-q", "x", "--metrics-port", str(port))
    try:
        def answered() -> bool:
            try:
                return _get(f"http://127.0.0.1:{port}/healthz")[0] == 503
            except OSError:
                return False

        wait_until(answered)
        assert _get(f"http://127.0.0.1:{port}/metrics")[1].count("leaseq_redis_up 0.0") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_demo_runs_with_a_private_redis_and_loses_nothing():
    result = cli(None, "demo", "--jobs", "300", timeout=240,
                 env={"LEASEQ_REDIS_URL": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "started a private redis-server" in result.stdout
    assert "SIGKILL" in result.stdout
    assert "lost 0" in result.stdout
    held = int(re.search(r"while it held (\d+) leases", result.stdout).group(1))  # type: ignore[union-attr]
    redone = int(re.search(r"redone after the kill (\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    assert redone >= held  # every job the killed worker held ran again


def test_unix_socket_and_password_urls(tmp_path: Path):
    sock = tmp_path / "redis.sock"
    with RedisServer(extra_args=["--unixsocket", str(sock), "--unixsocketperm", "700",
                                 "--requirepass", "s3cret"]) as server:
        unix_url = f"unix://:s3cret@{sock}?db=0"
        result = cli(unix_url, "enqueue", "-q", "sock", "t", "1")
        assert result.returncode == 0, result.stderr
        tcp_url = f"redis://:s3cret@127.0.0.1:{server.port}/0"
        stats = json.loads(cli(tcp_url, "stats", "-q", "sock", "--json").stdout)
        assert stats[0]["todos"] == 1
        wrong = cli(f"redis://:nope@127.0.0.1:{server.port}/0", "stats", "-q", "sock")
        assert wrong.returncode == 3
        assert "refused the credentials" in wrong.stderr
        assert "nope" not in wrong.stderr


def test_acl_user_in_the_url():
    with RedisServer() as server:
        admin = syncredis.Redis.from_url(server.url)
        admin.acl_setuser("worker", enabled=True, passwords=["+pw"], keys=["leaseq:*"],
                          commands=["+@all"])
        admin.close()
        url = f"redis://worker:pw@127.0.0.1:{server.port}/0"
        result = cli(url, "enqueue", "-q", "acl", "t", "1")
        assert result.returncode == 0, result.stderr
        denied = cli(f"redis://worker:bad@127.0.0.1:{server.port}/0", "stats", "-q", "acl")
        assert denied.returncode == 3


@pytest.mark.parametrize("asked", ["", "asyncio"], ids=["default", "LEASEQ_EVENT_LOOP=asyncio"])
def test_the_worker_runs_on_uvloop_when_it_is_installed_unless_told_not_to(
        url: str, asked: str):
    pytest.importorskip("uvloop")  # the fast extra (in the dev extra too)
    cli(url, "enqueue", "-q", "loop", "echo", "1")
    result = cli(url, "--log-format", "json", "worker", "tests.helpers.tasks:HANDLERS",
                 "-q", "loop", "--burst", env={"LEASEQ_EVENT_LOOP": asked})
    assert result.returncode == 0, result.stderr
    (started,) = [json.loads(line) for line in result.stderr.splitlines()
                  if line.startswith("{") and json.loads(line)["event"] == "worker_started"]
    assert started["event_loop"] == ("asyncio" if asked else "uvloop")
    done = [line for line in result.stderr.splitlines() if '"job_acked"' in line]
    assert len(done) == 1
