"""Schema-based fuzzing of the HTTP API with schemathesis: thousands of generated requests
(valid and invalid) against ``leaseq web`` on a real redis-server, checked against the
OpenAPI document; any 500, undocumented status or wrongly accepted input fails."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis as syncredis

from leaseq.testing import RedisServer

pytestmark = pytest.mark.real_redis


def test_schemathesis_finds_nothing(start_web: Any, redis_server: RedisServer,
                                    tmp_path: Path):
    r = syncredis.Redis.from_url(redis_server.url)
    try:
        r.flushall()
    finally:
        r.close()
    # A known queue and job (see schemathesis.toml), so generated requests get past the
    # 404 into the handlers. The job is done: no route deletes a done job, as the purge
    # of waiting jobs that the fuzzing also sends would a waiting one.
    leaseq = [sys.executable, "-m", "leaseq", "--redis", redis_server.url]
    subprocess.run([*leaseq, "enqueue", "-q", "default", "echo", "1", "--job-id",
                    "fuzz-job"], check=True, capture_output=True)
    subprocess.run([*leaseq, "worker", "tests.helpers.tasks:HANDLERS", "-q", "default",
                    "--burst", "--no-reaper"], check=True, capture_output=True,
                   cwd=Path(__file__).parent.parent.parent)
    web = start_web("--max-body", "65536", env={"LEASEQ_WEB_TOKEN": "fuzz"})
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is in the dev extra"
    # A fixed seed: the same requests on every run, so a failure is reproducible.
    done = subprocess.run(
        [st, "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run",
         f"{web.url}/openapi.json", "--header", "Authorization: Bearer fuzz",
         "--max-examples", "40", "--seed", "20261123", "--checks", "all",
         "--request-timeout", "30"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    report = re.sub(r"(\S{200})\S+", r"\1...", done.stdout)  # generated bodies are huge
    assert done.returncode == 0, report[-8000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout
    assert "Traceback" not in web.log_path.read_text()
