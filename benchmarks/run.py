"""leaseq benchmarks: ``python -m benchmarks [--quick] [--only CASE ...]``.

Starts its own redis-server (no persistence) on a free port, runs every case bounded in
jobs and time, prints a table and writes ``benchmarks/results/latest.json`` and
``benchmarks/results/latest.md`` with the command, the versions and the machine.
``--quick`` is the smoke size CI runs (tiny N; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import redis
import redis.asyncio as aioredis
import structlog
from redis.asyncio.connection import Connection

import leaseq
from leaseq import JobContext, Queue, Reaper, Weighted, Worker
from leaseq.testing import RedisServer

from .report import render

RESULTS = Path(__file__).parent / "results"
PEERS = Path(__file__).parent
ROOT = Path(__file__).parent.parent


class CountingConnection(Connection):
    """Counts the commands and round trips this client sends (not script internals)."""

    commands = 0
    round_trips = 0

    def pack_command(self, *args: Any) -> list[bytes]:
        CountingConnection.commands += 1
        return super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.round_trips += 1
        if isinstance(command, (bytes, bytearray)):  # packed by the caller, not redis-py
            CountingConnection.commands += resp_commands(command)
        await super().send_packed_command(command, check_health)


def resp_commands(buf: bytes | bytearray) -> int:
    """Commands in a RESP buffer a client packed itself (leaseq's ack transaction)."""
    n = i = 0
    while i < len(buf):
        end = buf.index(b"\r\n", i)
        args = int(buf[i + 1:end])
        i = end + 2
        for _ in range(args):
            end = buf.index(b"\r\n", i)
            i = end + 2 + int(buf[i + 1:end]) + 2
        n += 1
    return n


def client(url: str, counting: bool = False) -> aioredis.Redis:
    if not counting:
        return aioredis.Redis.from_url(url)
    pool = aioredis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    return aioredis.Redis(connection_pool=pool)


async def noop(ctx: JobContext, payload: Any) -> None:
    return None


async def sleep10(ctx: JobContext, payload: Any) -> None:
    await anyio.sleep(0.01)


class Bench:
    def __init__(self, server: RedisServer, quick: bool) -> None:
        self.server = server
        self.url = server.url
        self.quick = quick
        self.results: dict[str, Any] = {}
        self.n = 2_000 if quick else 20_000

    async def flush(self) -> None:
        r = client(self.url)
        await r.flushall()
        await r.config_resetstat()
        await r.aclose()

    # -- drain -------------------------------------------------------------------------

    async def floor(self) -> dict[str, Any]:
        """A bare LPUSH/BRPOP loop: no leases, no acks, no reliability."""
        await self.flush()
        r = client(self.url)
        for start in range(0, self.n, 1000):
            await r.lpush("bare", *[b"x" * 16] * min(1000, self.n - start))
        t = time.perf_counter()
        for _ in range(self.n):
            await r.brpop(["bare"], timeout=1)
        seconds = time.perf_counter() - t
        await r.aclose()
        return {"jobs": self.n, "seconds": seconds, "jobs_per_s": self.n / seconds}

    async def drain(self, concurrency: int = 100, handler: Any = noop, n: int | None = None
                    ) -> dict[str, Any]:
        """Enqueue N jobs, then one in-process worker drains them (burst mode)."""
        n = n or self.n
        await self.flush()
        r = client(self.url, counting=True)
        q = Queue(r, "bench")
        CountingConnection.commands = CountingConnection.round_trips = 0
        for start in range(0, n, 10_000):
            await q.enqueue_many("t", [None] * min(10_000, n - start))
        worker = Worker(q, {"t": handler}, concurrency=concurrency, reaper=False)
        info0 = await r.info("cpu")
        t = time.perf_counter()
        await worker.run(burst=True, handle_signals=False)
        seconds = time.perf_counter() - t
        info1 = await r.info("cpu")
        stats = await r.info("commandstats")
        server_commands = sum(int(v["calls"]) for k, v in stats.items()
                              if not k.startswith(("cmdstat_info", "cmdstat_config")))
        cpu = (info1["used_cpu_sys"] + info1["used_cpu_user"]
               - info0["used_cpu_sys"] - info0["used_cpu_user"])
        done = (await q.stats()).done
        await r.aclose()
        assert done == n, f"drained {done} of {n}"
        return {"jobs": n, "concurrency": concurrency, "seconds": seconds,
                "jobs_per_s": n / seconds,
                "client_commands_per_job": CountingConnection.commands / n,
                "round_trips_per_job": CountingConnection.round_trips / n,
                "server_commands_per_job": server_commands / n,
                "redis_cpu_us_per_job_drain": cpu / n * 1e6}

    # -- enqueue -----------------------------------------------------------------------

    async def enqueue(self) -> dict[str, Any]:
        n = self.n // 4
        await self.flush()
        r = client(self.url)
        q = Queue(r, "bench")
        await q.enqueue("t", None)
        t = time.perf_counter()
        for _ in range(n):
            await r.lpush("bare", b'{"task":"t","payload":null}')
        bare = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(n):
            await q.enqueue("t", None)
        single = n / (time.perf_counter() - t)
        many_n = 20_000 if self.quick else 200_000
        t = time.perf_counter()
        for _ in range(0, many_n, 10_000):
            await q.enqueue_many("t", [None] * 10_000)
        many = many_n / (time.perf_counter() - t)
        await r.aclose()
        return {"bare_lpush_per_s": bare, "enqueue_per_s": single,
                "enqueue_vs_lpush": single / bare, "enqueue_many_per_s": many}

    # -- latency -----------------------------------------------------------------------

    async def latency(self) -> dict[str, Any]:
        """Enqueue-to-start with an idle worker process, at 200 jobs/s."""
        await self.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._worker", self.url, "lat", "10", "stamp"],
            cwd=ROOT)
        r = client(self.url)
        q = Queue(r, "lat")
        try:
            await q.wait(await q.enqueue("stamp", None), timeout=30)  # warm up
            sent: list[tuple[str, float]] = []
            count = 100 if self.quick else 1000
            for _ in range(count):
                t0 = time.time()
                sent.append((await q.enqueue("stamp", None), t0))
                await anyio.sleep(0.005)
            lat = [(await q.wait(job_id, timeout=30)) - t0 for job_id, t0 in sent]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            await r.aclose()
        lat_ms = sorted(x * 1000 for x in lat)
        return {"samples": len(lat_ms), "p50_ms": statistics.median(lat_ms),
                "p99_ms": lat_ms[int(len(lat_ms) * 0.99) - 1], "max_ms": lat_ms[-1]}

    # -- scaling -----------------------------------------------------------------------

    async def scaling(self) -> list[dict[str, Any]]:
        return [await self._scaled(kind, processes, concurrency)
                for kind in ("noop", "sleep") for processes in (1, 2, 4)
                for concurrency in (1, 10, 100)]

    async def _scaled(self, kind: str, processes: int, concurrency: int) -> dict[str, Any]:
        # Size each run to a few seconds of work so slow configurations stay bounded.
        per_s = (processes * concurrency * 80) if kind == "sleep" else 15_000
        n = max(200, min(self.n, int(per_s * (0.5 if self.quick else 3))))
        await self.flush()
        r = client(self.url)
        q = Queue(r, "scale")
        await q.enqueue_many(kind, [None] * n)
        procs = [subprocess.Popen([sys.executable, "-m", "benchmarks._worker", self.url,
                                   "scale", str(concurrency), kind, "--burst"], cwd=ROOT)
                 for _ in range(processes)]
        try:
            with anyio.fail_after(300):
                while (await q.stats()).done == 0:
                    await anyio.sleep(0.005)
                t0, d0 = time.perf_counter(), (await q.stats()).done
                while (done := (await q.stats()).done) < n:
                    await anyio.sleep(0.01)
                seconds = time.perf_counter() - t0
        finally:
            for p in procs:
                p.wait(timeout=60)
            await r.aclose()
        return {"handler": kind, "processes": processes, "concurrency": concurrency,
                "jobs": n, "jobs_per_s": (done - d0) / seconds}

    # -- reaper ------------------------------------------------------------------------

    async def reaper(self) -> list[dict[str, Any]]:
        rows = []
        for n in ((1_000, 10_000) if self.quick else (1_000, 10_000, 100_000)):
            await self.flush()
            r = client(self.url)
            q = Queue(r, "reap", lease_timeout=600)
            for start in range(0, n, 10_000):
                await q.enqueue_many("t", [None] * min(10_000, n - start))
            while await q.claim_many(1000):
                pass
            live = await Reaper(q).sweep_report()
            keys = [q.keys.lease(x) for x in
                    [m.decode() for m in await r.smembers(q.keys.in_progress)]]
            for start in range(0, len(keys), 10_000):
                await r.delete(*keys[start:start + 10_000])
            expired = await Reaper(q).sweep_report()
            await r.aclose()
            assert expired.requeued == n
            rows.append({"in_flight": n, "sweep_live_s": live.seconds,
                         "sweep_live_longest_call_ms": live.longest_call * 1000,
                         "sweep_expired_s": expired.seconds,
                         "sweep_expired_longest_call_ms": expired.longest_call * 1000})
        return rows

    # -- memory ------------------------------------------------------------------------

    async def memory(self) -> dict[str, Any]:
        n = 10_000 if self.quick else 100_000
        await self.flush()
        r = client(self.url)
        q = Queue(r, "mem", done_max=10_000, done_ttl=None)
        await q.enqueue("t", None)
        base = (await r.info("memory"))["used_memory"]
        payload = {"data": "x" * 89}  # 100 bytes of JSON
        assert len(json.dumps(payload, separators=(",", ":"))) == 100
        for _ in range(0, n, 10_000):
            await q.enqueue_many("t", [payload] * 10_000)
        queued = (await r.info("memory"))["used_memory"] - base
        # Soak: push many jobs through with done retention on; memory stays bounded.
        soak = 50_000 if self.quick else 1_000_000
        worker = Worker(q, {"t": noop}, concurrency=100, reaper=True, reaper_interval=0.5)
        samples = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            fed = 0
            while fed < soak:
                await q.enqueue_many("t", [payload] * 10_000)
                fed += 10_000
                while (await q.stats()).todos > 20_000:
                    await anyio.sleep(0.05)
                samples.append((await r.info("memory"))["used_memory"])
            while (s := await q.stats()).todos or s.in_progress:
                await anyio.sleep(0.05)
            await Reaper(q).sweep()
            worker.stop()
        final = (await r.info("memory"))["used_memory"]
        stats = await q.stats()
        await r.aclose()
        return {"queued_jobs": n, "bytes_per_queued_job": queued / n,
                "soak_jobs": soak + n + 1, "done_retained": stats.done,
                "used_memory_mb_first_sample": samples[0] / 2**20,
                "used_memory_mb_peak": max(samples) / 2**20,
                "used_memory_mb_after": final / 2**20}

    # -- recovery ----------------------------------------------------------------------

    async def recovery(self) -> dict[str, Any]:
        """SIGKILL a worker process in the middle of a job; time until the job starts on
        another worker, against the lease length and the reaper interval."""
        lease, interval = 1.0, 0.2
        await self.flush()
        r = client(self.url)
        q = Queue(r, "recover", lease_timeout=lease)
        await q.enqueue("hang", None)
        victim = subprocess.Popen([sys.executable, "-m", "benchmarks._worker", self.url,
                                   "recover", "1", "hang", "--lease", str(lease)], cwd=ROOT)
        started = anyio.Event()

        async def mark(ctx: JobContext, payload: Any) -> None:
            started.set()

        rescuer = Worker(q, {"hang": mark}, concurrency=1, reaper=True,
                         reaper_interval=interval)
        try:
            with anyio.fail_after(30):
                while (await q.stats()).in_progress == 0:
                    await anyio.sleep(0.001)
            victim.kill()
            killed_at = time.perf_counter()
            victim.wait()
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: rescuer.run(handle_signals=False))
                with anyio.fail_after(30):
                    await started.wait()
                seconds = time.perf_counter() - killed_at
                rescuer.stop()
        finally:
            if victim.poll() is None:
                victim.kill()
            await r.aclose()
        return {"lease_s": lease, "reaper_interval_s": interval,
                "kill_to_restart_s": seconds, "bound_s": lease + interval}


    async def multiqueue(self) -> list[dict[str, Any]]:
        """One worker (concurrency 100) draining the same N no-op jobs spread over 1 or 10
        queues, under each policy."""
        rows = []
        for queues, policy in ((1, "priority"), (10, "priority"), (10, "weighted")):
            await self.flush()
            r = client(self.url)
            qs = [Queue(r, f"mq{i}") for i in range(queues)]
            for i, q in enumerate(qs):
                share = self.n // queues + (1 if i < self.n % queues else 0)
                await q.enqueue_many("t", [None] * share)
            chosen = (Weighted({q.name: i + 1 for i, q in enumerate(qs)})
                      if policy == "weighted" else None)
            worker = Worker({q: {"t": noop} for q in qs}, policy=chosen, concurrency=100,
                            reaper=False)
            t = time.perf_counter()
            await worker.run(burst=True, handle_signals=False)
            seconds = time.perf_counter() - t
            await r.aclose()
            rows.append({"queues": queues, "policy": policy, "jobs": self.n,
                         "jobs_per_s": self.n / seconds})
        return rows

    async def peers(self) -> list[dict[str, Any]]:
        """No-op drain, one worker process each, timed from the first handler call to the
        last: leaseq, the bare loop and the peers, same N, same server, one run."""
        venv = PEERS / ".peers-venv"
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                            str(PEERS / "peers" / "requirements.txt")], check=True)
        rows = [await self._leaseq_first_to_last()]
        host, port = "127.0.0.1", str(self.server.port)
        for name, args, n in (
            ("taskiq", [self.url], self.n), ("saq", [self.url], self.n),
            ("arq", [host, port], self.n), ("rq", [self.url], max(500, self.n // 10)),
        ):
            await self.flush()
            out = subprocess.run(
                [str(python), f"{name}_adapter.py", *args, str(n)], cwd=PEERS / "peers",
                capture_output=True, text=True, timeout=900, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        return rows

    async def _leaseq_first_to_last(self) -> dict[str, Any]:
        await self.flush()
        r = client(self.url)
        q = Queue(r, "peers")
        await q.enqueue_many("t", [None] * self.n)
        calls = 0
        first = last = 0.0

        async def tick(ctx: JobContext, payload: Any) -> None:
            nonlocal calls, first, last
            last = time.perf_counter()
            if calls == 0:
                first = last
            calls += 1

        await Worker(q, {"t": tick}, concurrency=100, reaper=True).run(
            burst=True, handle_signals=False)
        await r.aclose()
        return {"name": "leaseq", "jobs": calls, "jobs_per_s": (calls - 1) / (last - first)}


    async def profile(self) -> dict[str, Any]:
        """cProfile of an in-process no-op drain; the top of it goes to profile.txt."""
        import cProfile
        import io
        import pstats

        await self.flush()
        r = client(self.url)
        q = Queue(r, "prof")
        await q.enqueue_many("t", [None] * self.n)
        worker = Worker(q, {"t": noop}, concurrency=100, reaper=False)
        prof = cProfile.Profile()
        prof.enable()
        await worker.run(burst=True, handle_signals=False)
        prof.disable()
        await r.aclose()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out).sort_stats("tottime")
        stats.print_stats(30)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "profile.txt").write_text(
            f"cProfile of a {self.n}-job no-op drain (concurrency 100), by own time\n"
            + out.getvalue())
        top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
        return {"top_own_time": [
            {"function": f"{Path(fn).name}:{line}({name})", "own_s": round(tt, 3)}
            for (fn, line, name), (_, _, tt, _, _) in top]}


CASES: dict[str, Callable[[Bench], Awaitable[Any]]] = {
    "floor": Bench.floor,
    "drain": Bench.drain,
    "enqueue": Bench.enqueue,
    "latency": Bench.latency,
    "scaling": Bench.scaling,
    "reaper": Bench.reaper,
    "memory": Bench.memory,
    "recovery": Bench.recovery,
    "multiqueue": Bench.multiqueue,
    "peers": Bench.peers,
    "profile": Bench.profile,
}


async def run(quick: bool, only: list[str]) -> dict[str, Any]:
    with RedisServer() as server:
        bench = Bench(server, quick)
        out: dict[str, Any] = {}
        for name, case in CASES.items():
            if only and name not in only:
                continue
            print(f"-- {name}", flush=True)
            t = time.perf_counter()
            out[name] = await case(bench)
            print(f"   {json.dumps(out[name], default=float)[:600]} "
                  f"({time.perf_counter() - t:.1f} s)", flush=True)
        return out


def machine() -> dict[str, Any]:
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True, check=False).stdout.strip()
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "redis_server": redis_version,
            "redis_py": redis.__version__, "leaseq": leaseq.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke size (CI)")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(CASES))
    parser.add_argument("--out", default=None, help="results file stem (default: latest)")
    parser.add_argument("--dir", default=str(RESULTS), help="results directory")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    started = time.time()
    results = anyio.run(run, args.quick, args.only)
    doc = {"command": "python -m benchmarks " + " ".join(sys.argv[1:]),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "seconds": round(time.time() - started, 1), "machine": machine(),
           "results": results}
    stem = args.out or ("quick" if args.quick else "latest")
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    (out / f"{stem}.md").write_text(render(json.loads(json.dumps(doc, default=float))))
    print(f"written to {out / (stem + '.json')} and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
