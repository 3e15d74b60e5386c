"""The operator commands through the CLI as a subprocess, against a real redis-server:
jobs, workers, queue purge, check, enqueue --wait."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest
import redis as syncredis

from leaseq.testing import RedisServer, WorkerProcess

from .test_cli import cli

pytestmark = pytest.mark.real_redis


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[syncredis.Redis]:
    """A client of the session's server, flushed first (every test owns its queues)."""
    client = syncredis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def enqueue(url: str, queue: str, task: str, payloads: list[object]) -> list[str]:
    run = cli(url, "enqueue", "-q", queue, task,
              stdin="".join(json.dumps(p) + "\n" for p in payloads))
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_jobs_lists_every_waiting_job_page_by_page(redis_server: RedisServer, r):
    ids = enqueue(redis_server.url, "listing", "echo", list(range(12)))
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        args = ["jobs", "-q", "listing", "--limit", "5", "--json"]
        if cursor:
            args += ["--cursor", cursor]
        run = cli(redis_server.url, *args)
        assert run.returncode == 0, run.stderr
        page = json.loads(run.stdout)
        seen += [job["job_id"] for job in page["jobs"]]
        assert all(job["state"] == "todo" and job["task"] == "echo" for job in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert set(seen) == set(ids)
    table = cli(redis_server.url, "jobs", "-q", "listing", "--state", "todo")
    assert table.returncode == 0 and table.stdout.splitlines()[0].startswith("JOB")
    assert len(table.stdout.splitlines()) == 13


def test_jobs_of_an_unknown_queue_says_so(redis_server: RedisServer, r):
    run = cli(redis_server.url, "jobs", "-q", "nosuch", "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["jobs"] == []
    assert "not known on this server" in run.stderr


def test_workers_lists_a_live_worker_and_check_turns_healthy(redis_server: RedisServer, r):
    before = cli(redis_server.url, "check", "-q", "health", "--json")
    assert before.returncode == 1
    report = json.loads(before.stdout)
    assert report["ok"] is False and report["checks"]["queue"]["ok"] is False
    enqueue(redis_server.url, "health", "echo", [1])
    worker = WorkerProcess(redis_server.url, "tests.helpers.tasks:HANDLERS", "health",
                           record=False)
    worker.start()
    try:
        worker.wait_ready()
        for _ in range(300):
            run = cli(redis_server.url, "check", "-q", "health", "--json")
            if run.returncode == 0:
                break
        assert run.returncode == 0, run.stdout
        assert all(c["ok"] for c in json.loads(run.stdout)["checks"].values())
        listed = json.loads(cli(redis_server.url, "workers", "--json").stdout)["workers"]
        assert [w["pid"] for w in listed] == [worker.pid]
        assert listed[0]["queues"] == ["health"]
        text = cli(redis_server.url, "workers", "-q", "health")
        assert text.stdout.splitlines()[0].startswith("WORKER") and str(worker.pid) in text.stdout
    finally:
        worker.send(signal.SIGTERM)
        worker.wait(timeout=60)
    gone = json.loads(cli(redis_server.url, "workers", "--json").stdout)["workers"]
    assert gone == []  # a worker that stopped removed itself
    after = json.loads(cli(redis_server.url, "check", "-q", "health", "--json").stdout)
    assert after["checks"]["workers"]["ok"] is False


def test_queue_purge_asks_with_the_count_and_leaves_running_jobs(
    redis_server: RedisServer, r
):
    enqueue(redis_server.url, "purging", "echo", list(range(4)))
    declined = cli(redis_server.url, "queue", "purge", "-q", "purging", stdin="n\n")
    assert declined.returncode == 1 and "delete 4 waiting and delayed jobs" in declined.stderr
    assert r.scard("leaseq:{purging}:todos") == 4
    done = cli(redis_server.url, "queue", "purge", "-q", "purging", "--yes", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"queue": "purging",
                                                                 "purged": 4}
    assert r.scard("leaseq:{purging}:todos") == 0


def test_enqueue_wait_prints_the_result(redis_server: RedisServer, r):
    worker = WorkerProcess(redis_server.url, "tests.helpers.tasks:HANDLERS", "waited",
                           record=False)
    worker.start()
    try:
        run = cli(redis_server.url, "enqueue", "-q", "waited", "echo", '{"x": 1}',
                  "--wait", "--timeout", "60")
        assert run.returncode == 0, run.stderr
        job_id, result = run.stdout.splitlines()
        assert json.loads(result) == {"x": 1} and job_id
    finally:
        worker.send(signal.SIGTERM)
        worker.wait(timeout=60)
    timed_out = cli(redis_server.url, "enqueue", "-q", "waited", "echo", "1", "--wait",
                    "--timeout", "0.2")
    assert timed_out.returncode == 1 and "not finished" in timed_out.stderr


def test_web_says_when_a_fixed_queue_is_not_known(redis_server: RedisServer, r):
    from leaseq.testing import WebProcess

    web = WebProcess(redis_server.url, "-q", "nosuchqueue")
    web.start()
    try:
        web.wait_ready()
    finally:
        web.send(signal.SIGTERM)
        web.wait(timeout=30)
    assert "queue nosuchqueue is not known on this server" in web.log_path.read_text()


def test_every_option_reads_its_environment_variable(redis_server: RedisServer, r):
    """LEASEQ_<COMMAND>_<OPTION> configures any option (containers), and --help lists
    the name."""
    enqueue(redis_server.url, "envq", "echo", [1, 2])
    run = cli(redis_server.url, "stats", env={"LEASEQ_STATS_QUEUE": "envq",
                                              "LEASEQ_STATS_JSON": "1"})
    assert run.returncode == 0, run.stderr
    assert "envq" in run.stdout and run.stdout.lstrip().startswith(("{", "["))
    assert "LEASEQ_WORKER_CONCURRENCY" in cli(None, "worker", "--help").stdout
    # The same for the controls' options.
    run = cli(redis_server.url, "queue", "limits", env={
        "LEASEQ_QUEUE_LIMITS_QUEUE": "envq", "LEASEQ_QUEUE_LIMITS_RATE": "5/2:3",
        "LEASEQ_QUEUE_LIMITS_JSON": "1"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["rate_limit"] == {"count": 5, "per": 2.0, "burst": 3}
    run = cli(redis_server.url, "queue", "pause", env={"LEASEQ_QUEUE_PAUSE_QUEUE": "envq"})
    assert run.stdout == "paused queue envq\n"
    enqueue_help = cli(None, "enqueue", "--help").stdout
    for name in ("PRIORITY", "KEY", "EXPIRES_IN"):
        assert f"LEASEQ_ENQUEUE_{name}" in enqueue_help
    for name in ("ORDERING", "MAX_IN_FLIGHT", "KEY_CONCURRENCY", "RATE", "KEY_RATE"):
        assert f"LEASEQ_QUEUE_LIMITS_{name}" in cli(None, "queue", "limits", "--help").stdout


def test_demo_without_redis_server_says_what_to_install(tmp_path):
    """A pip install alone has no redis-server: `leaseq demo` says exactly what to install
    (one line, exit 3)."""
    import os
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "leaseq", "demo"], capture_output=True,
                         text=True, timeout=60, check=False,
                         env={**os.environ, "PATH": str(tmp_path)})
    assert run.returncode == 3, run.stderr
    assert run.stderr.strip().splitlines() == [
        ("leaseq: redis-server not found on PATH; install it (Debian/Ubuntu: sudo apt-get "
        "install redis-server); or point LEASEQ_REDIS_URL at a running Redis")]


def test_stats_by_task_through_the_cli(redis_server: RedisServer, r):
    enqueue(redis_server.url, "tasked", "echo", [1, 2, 3])
    enqueue(redis_server.url, "tasked", "sleep", [{"s": 0}])
    burst = cli(redis_server.url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "tasked",
                "--burst", "--no-reaper")
    assert burst.returncode == 0, burst.stderr
    enqueue(redis_server.url, "tasked", "echo", [4])
    run = cli(redis_server.url, "stats", "-q", "tasked", "--by-task", "--json")
    assert run.returncode == 0, run.stderr
    tasks = json.loads(run.stdout)["tasks"]
    assert tasks["echo"]["totals"]["acked"] == 3 and tasks["echo"]["states"]["todo"] == 1
    assert tasks["sleep"]["totals"]["acked"] == 1
    table = cli(redis_server.url, "stats", "-q", "tasked", "--by-task")
    assert table.returncode == 0 and table.stdout.splitlines()[0].startswith("TASK")
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == ["echo", "sleep"]
    usage = cli(redis_server.url, "stats", "--by-task")
    assert usage.returncode == 2
