"""``rediss://``: the CLI and a worker against a redis-server that only speaks TLS on its
client port, with certificates made by ``openssl`` for the test."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from leaseq.testing import RedisServer, free_port

from .test_cli import cli

pytestmark = pytest.mark.real_redis


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(directory: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=leaseq test CA", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
             cwd=directory)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    make_certs(tmp_path)
    tls_port = free_port()
    # The plain port stays on loopback for the fixture's readiness PING only.
    server = RedisServer(extra_args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(tmp_path / "server.crt"),
        "--tls-key-file", str(tmp_path / "server.key"),
        "--tls-ca-cert-file", str(tmp_path / "ca.crt"), "--tls-auth-clients", "no"])
    with server:
        yield server, tls_port, tmp_path / "ca.crt"


def test_cli_and_worker_over_tls(tls_server: tuple[RedisServer, int, Path]):
    _, port, ca = tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    result = cli(url, "enqueue", "-q", "tls", "echo", stdin="\n".join(map(str, range(50))))
    assert result.returncode == 0, result.stderr
    result = cli(url, "worker", "tests.helpers.tasks:HANDLERS", "-q", "tls", "--burst")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(cli(url, "stats", "-q", "tls", "--json").stdout)
    assert (row["done"], row["todos"]) == (50, 0)


def test_an_untrusted_certificate_is_one_line_and_exit_3(
    tls_server: tuple[RedisServer, int, Path],
):
    _, port, _ = tls_server
    result = cli(f"rediss://127.0.0.1:{port}/0", "stats")
    assert result.returncode == 3
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
