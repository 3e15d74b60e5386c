"""The benchmark runner still runs (tiny N; its numbers mean nothing and are not checked)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis as syncredis

from benchmarks import client_instructions

ROOT = Path(__file__).parent.parent


@pytest.mark.real_redis
@pytest.mark.timeout(300)
def test_benchmark_runner_smoke(tmp_path: Path):
    """``python -m benchmarks --quick`` runs the floor, leaseq's drains and the small
    cases in leaseq's own environment (no peers, no Node, no network)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "floor", "drain", "enqueue",
         "reaper", "recovery", "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads((tmp_path / "quick.json").read_text())
    assert set(doc["results"]) == {"floor", "drain", "enqueue", "reaper", "recovery"}
    floor, drain = doc["results"]["floor"]["rows"], doc["results"]["drain"]["rows"]
    # The floor is the bare loop at its best of four concurrencies, each reported.
    assert [r["concurrency"] for r in floor] == [1, 10, 50, 100]
    assert doc["results"]["floor"]["best"] in (1, 10, 50, 100)
    # leaseq's default worker (concurrency 79 on redis-py's default pool), then 10, 100
    # and 200; then on uvloop at its default and 200.
    assert [(r["name"], r["concurrency"]) for r in drain] == [
        ("leaseq", 79), ("leaseq", 10), ("leaseq", 100), ("leaseq", 200),
        ("leaseq (uvloop)", 79), ("leaseq (uvloop)", 200)]
    for row in floor + drain:
        assert "error" not in row, row
        assert row["jobs"] == 2000 and row["jobs_per_s"] > 0
        assert row["worker_cpu_us_per_job"] > 0 and row["commands_per_job"] > 0
        assert row["speed"] > 0  # the machine's speed, probed just before the row ran
    # Redis's count of socket reads is a round-trip count any client gets: for the bare
    # loop (one BRPOP per job, each awaited) it agrees with the client's own count, but for
    # the set-up of each new connection (at the smoke size, up to a fifth more).
    for row in floor:
        assert 0.8 <= row["redis_reads_per_job"] / row["round_trips_per_job"] <= 1.5, row
    for row in drain:
        assert 0 < row["redis_reads_per_job"] < 1, row  # batched claims and acks
    # A probe per row, per case and one at the end, and the run's range from them.
    speed = doc["speed"]
    assert len(speed["probes"]) == len(floor) + len(drain) + 5 + 1
    assert speed["slowest"] <= speed["median"] <= speed["fastest"]
    text = (tmp_path / "quick.md").read_text()
    assert "## Targets" in text and "| bare loop | 100 |" in text
    assert "| leaseq (uvloop) | 200 |" in text
    assert "Machine speed (`benchmarks/_speed.py`, " in text


@pytest.mark.real_redis
@pytest.mark.timeout(300)
def test_web_benchmark_smoke(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.web", "--quick", "--requests", "3",
         "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads((tmp_path / "web-quick.json").read_text())
    assert doc["results"]["size"]["todos"] == 20_000
    assert set(doc["results"]["big"]) == {
        "/queues", "/queues/{q}", "/queues/{q}/leases", "/queues/{q}/dead",
        "/queues/{q}/events", "/jobs/{job}"}
    assert "| `/queues/{q}` |" in (tmp_path / "web-quick.md").read_text()


@pytest.mark.real_redis
@pytest.mark.timeout(300)
def test_cluster_benchmark_smoke(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--quick", "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "cluster-quick.json").read_text())["results"]
    assert [r["masters"] for r in rows] == [0, 1, 2, 3]  # 0: a plain redis-server
    assert [len(r["per_master"]) for r in rows] == [1, 1, 2, 3]
    assert all(r["jobs"] == 1200 and r["jobs_per_second"] > 0 for r in rows)


@pytest.mark.real_redis
@pytest.mark.timeout(300)
def test_failover_benchmark_smoke(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.failover", "--runs", "1", "--jobs", "200",
         "--case", "knob-lag", "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    # Exit 1 would mean a confirmed enqueue was lost.
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads((tmp_path / "failover.json").read_text())
    # One case, the one the knob exists for (each failover costs ~10 s of the suite).
    assert list(doc["results"]) == ["replica 1 s behind, knob on"]
    assert [len(runs) for runs in doc["results"].values()] == [1]
    assert all(runs[0]["acknowledged"] == 200 for runs in doc["results"].values())


@pytest.mark.real_redis
@pytest.mark.timeout(300)
def test_instructions_benchmark_smoke(tmp_path: Path):
    """Redis's instructions per job under callgrind: a job claimed and acked alone costs
    the server more than one of a batch of 50 (the per-call work is shared)."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", "--jobs", "100",
         "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {r["name"]: r["instructions_per_job"]
            for r in json.loads((tmp_path / "instructions.json").read_text())["results"]["rows"]}
    assert len(rows) == 10 and all(v > 0 for v in rows.values())
    assert rows["drain_1"] > rows["drain_50"] > rows["bare_brpop"]
    assert "| claim + ack, one at a time (set queue) |" in (
        tmp_path / "instructions.md").read_text()


@pytest.mark.real_redis
@pytest.mark.parametrize("case", [name for name, _ in client_instructions.CASES])
def test_client_instructions_cases_run(case: str, redis_server: Any):
    """Each case of ``benchmarks.client_instructions`` runs as the process callgrind would
    count (here without valgrind: under it one case takes a minute or more), and does its
    jobs: a drain's worker acks every job it was given, the bare loop's BRPOP takes every
    one pushed, or the child exits non-zero."""
    anyio.run(client_instructions._prepare, redis_server.url, case, 30)
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.client_instructions", "--child", case,
         redis_server.url, "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    r = syncredis.Redis.from_url(redis_server.url)
    try:
        if case == "bare_lpush":
            assert r.llen("bare") == 30
        elif case == "bare_brpop":
            assert r.llen("bare") == 0
        elif case == "enqueue":
            assert r.scard("leaseq:{cins}:todos") == 30
        elif case == "worker_weighted":
            assert sum(r.scard(f"leaseq:{{cins{i}}}:done") for i in range(10)) == 30
        else:
            assert r.scard("leaseq:{cins}:done") == 30
    finally:
        r.close()
    acked = [line for line in result.stderr.splitlines() if '"job_acked"' in line]
    console = [line for line in result.stdout.splitlines() if " job_acked " in line]
    if case == "worker_json_logs":
        # The command line's logging: one JSON object per line, one line per acked job.
        assert len(acked) == 30 and console == []
        assert all(json.loads(line)["event"] == "job_acked" for line in acked)
    elif case == "worker_structlog_defaults":
        # structlog's own defaults: a console line per acked job, on stdout.
        assert acked == [] and len(console) == 30
    else:
        assert acked == [] and console == []  # filtered at ERROR
