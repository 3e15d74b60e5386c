"""The runner's side of the adapters: the systems, their environments, one adapter run.

A system is an adapter script and the environment it runs in: leaseq's own virtualenv
(the bare loop and leaseq), ``benchmarks/.peers-venv`` and ``.peers-venv-2`` (the Python
peers, from ``requirements.txt`` and ``requirements-2.txt``: two, because arq and
taskiq-redis pin redis-py below 6 and the BullMQ port needs 6.2 or later), and
``node/`` (BullMQ on Node, ``npm ci`` from ``package-lock.json``). An environment is set up
the first time a run needs it, and again when its requirements or lock file change; one
that cannot be set up fails every system in it with the error's first line.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

HERE = Path(__file__).parent
BENCH = HERE.parent
NODE_DIR = HERE / "node"
VENVS = {"peers": (BENCH / ".peers-venv", HERE / "requirements.txt"),
         "peers-2": (BENCH / ".peers-venv-2", HERE / "requirements-2.txt")}
REPORTED = {
    "main": ("leaseq", "redis", "hiredis", "anyio", "structlog"),
    "peers": ("arq", "saq", "taskiq", "taskiq-redis", "rq", "redis", "hiredis"),
    "peers-2": ("bullmq", "streaq", "pydocket", "redis", "coredis", "hiredis"),
    "node": ("bullmq", "ioredis", "msgpackr"),
}
"""The packages whose versions each environment reports."""


@dataclass(frozen=True)
class System:
    """One queue as the benchmark runs it."""

    name: str
    env: str
    script: str
    default: int
    """The library's default concurrency (what a run without CONCURRENCY gets)."""
    rates: dict[int | None, float]
    """Roughly the jobs/s a drain reaches, by concurrency: sizes N to a few seconds."""
    concurrencies: tuple[int | None, ...] = (None, 50)
    """``None``: the library's default."""
    not_run: str | None = None
    """Why the concurrencies other than the default do not apply, if they do not."""

    def argv(self, python: str, mode: str, url: str, n: int,
             concurrency: int | None) -> list[str]:
        program = ["node", self.script] if self.env == "node" else [python, self.script]
        return [*program, mode, url, str(n), *([] if concurrency is None else [str(concurrency)])]


BARE = System("bare loop", "main", "bare_adapter.py", 1,
              {1: 9_000, 10: 18_000, 50: 19_000, 100: 19_000}, (1, 10, 50, 100))
# Default: 100 jobs at once, or what fits redis-py's default pool of 100 connections (79).
LEASEQ = System("leaseq", "main", "leaseq_adapter.py", 79,
                {None: 18_000, 10: 8_000, 100: 20_000, 200: 22_000}, (None, 10, 100, 200))
# The same on uvloop (the `fast` extra, which `leaseq worker` then runs on).
LEASEQ_UVLOOP = System("leaseq (uvloop)", "main", "leaseq_uvloop_adapter.py", 79,
                       {None: 18_000, 200: 22_000}, (None, 200))
PEERS = (
    System("arq", "peers", "arq_adapter.py", 10, {None: 230, 50: 570}),
    System("saq", "peers", "saq_adapter.py", 10, {None: 1_900, 50: 2_000}),
    System("taskiq", "peers", "taskiq_adapter.py", 100, {None: 4_500, 50: 3_600}),
    System("rq", "peers", "rq_adapter.py", 1, {None: 450}, (None, 50),
           not_run="RQ runs one job at a time in a worker process"),
    System("bullmq (python)", "peers-2", "bullmq_adapter.py", 1, {None: 2_300, 50: 2_600}),
    System("bullmq (node)", "node", "node/bullmq_adapter.js", 1, {None: 7_000, 50: 24_000}),
    System("streaq", "peers-2", "streaq_adapter.py", 16, {None: 1_400, 50: 1_300}),
    System("docket", "peers-2", "docket_adapter.py", 10, {None: 45, 50: 220}),
)


class Failed(Exception):
    """An environment that could not be set up, or an adapter run that failed; the
    message is the error's first line."""


ERROR_LINE = re.compile(r"(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b"
                        r"|npm (?:ERR!|error)|ERROR:|Error:|error:|fatal:)")


def error_line(text: str, fallback: str) -> str:
    """The first line of an error in a process's output (a traceback's exception, pip's
    or npm's error), else its last line."""
    lines = [ln.strip().lstrip("|+- ") for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    for ln in lines:
        if ERROR_LINE.match(ln):
            return ln[:300]
    return lines[-1][:300] if lines else fallback


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 900) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failed(f"{argv[0]}: {e}") from e
    if done.returncode != 0:
        raise Failed(error_line(done.stderr + "\n" + done.stdout,
                                f"{' '.join(argv[:3])} exited with {done.returncode}"))
    return done.stdout


_VERSIONS = ("import importlib.metadata as m, json; print(json.dumps("
             "{d.metadata['Name'].lower(): d.version for d in m.distributions()}))")
_PYTHON_VERSION = "import platform; print(platform.python_version())"


class Environments:
    """Sets up each environment once per run and remembers how that went."""

    def __init__(self) -> None:
        self._python: dict[str, str | Failed] = {}
        self.report: dict[str, dict[str, Any]] = {}

    async def python(self, env: str) -> str:
        """The interpreter of ``env`` (``node`` for Node), set up if needed; raises
        :class:`Failed` (every time) if it could not be."""
        if env not in self._python:
            try:
                self._python[env] = await anyio.to_thread.run_sync(self._prepare, env)
            except Failed as e:
                self._python[env] = e
                self.report[env] = {"error": str(e)}
        found = self._python[env]
        if isinstance(found, Failed):
            raise found
        return found

    def _prepare(self, env: str) -> str:
        if env == "node":
            return self._prepare_node()
        if env == "main":
            python = sys.executable
        else:
            venv, requirements = VENVS[env]
            python = str(venv / "bin" / "python")
            stamp = venv / "requirements.installed"
            wanted = requirements.read_text()
            if not stamp.exists() or stamp.read_text() != wanted:
                if not Path(python).exists():
                    _run([sys.executable, "-m", "venv", str(venv)])
                _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      "-r", str(requirements)])
                stamp.write_text(wanted)
        installed = json.loads(_run([python, "-c", _VERSIONS]))
        self.report[env] = {"python": _run([python, "-c", _PYTHON_VERSION]).strip(),
                            "versions": {p: installed.get(p) for p in REPORTED[env]}}
        return python

    def _prepare_node(self) -> str:
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise Failed("node or npm not found on PATH (BullMQ's adapter needs Node 20)")
        version = _run(["node", "--version"]).strip()
        if int(version.lstrip("v").split(".")[0]) < 20:
            raise Failed(f"Node {version} found; BullMQ's adapter is run on Node 20 or later")
        lock = (NODE_DIR / "package-lock.json").read_text()
        stamp = NODE_DIR / "node_modules" / ".lock-installed"
        if not stamp.exists() or stamp.read_text() != lock:
            _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR)
            stamp.write_text(lock)
        versions = {}
        for package in REPORTED["node"]:
            manifest = NODE_DIR / "node_modules" / package / "package.json"
            versions[package] = (json.loads(manifest.read_text())["version"]
                                 if manifest.exists() else None)
        self.report["node"] = {"node": version, "versions": versions}
        return "node"


@asynccontextmanager
async def adapter(argv: list[str]) -> AsyncIterator[Child]:
    """Start one adapter process (in ``peers/``); killed on the way out if still running."""
    with tempfile.TemporaryFile() as stderr:
        try:
            process = await anyio.open_process(argv, cwd=HERE, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, stderr=stderr)
        except OSError as e:
            raise Failed(f"{argv[0]}: {e}") from e
        try:
            yield Child(process, stderr)
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.aclose()


class Child:
    """One adapter process: protocol lines on its stdout, its stderr kept in a file."""

    def __init__(self, process: Process, stderr: IO[bytes]) -> None:
        self.process = process
        self._stderr = stderr
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

    async def expect(self, key: str) -> Any:
        """The next protocol line holding ``key``; :class:`Failed` if the process ends
        first (other lines a library prints are skipped)."""
        while True:
            try:
                line = await self._stdout.receive_until(b"\n", 1 << 26)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                raise Failed(await self.failure()) from None
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and key in message:
                return message[key]

    async def go(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(b"go\n")

    async def failure(self) -> str:
        """The error's first line, once the process has ended (killed after 10 s)."""
        with anyio.move_on_after(10):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        return error_line(text, f"exited with {self.process.returncode}")

    async def finish(self, timeout: float = 30) -> str | None:
        """Wait for a clean exit after the report; the error's first line if the process
        failed on the way out or had to be killed."""
        with anyio.move_on_after(timeout):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
            return f"killed: still running {timeout:.0f} s after its report"
        if self.process.returncode != 0:
            return await self.failure()
        return None
