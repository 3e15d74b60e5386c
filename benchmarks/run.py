"""leaseq benchmarks: ``python -m benchmarks [--quick] [--only CASE ...]``.

Starts its own redis-server (no persistence) on a free port, runs every case bounded in
jobs and time, prints a table and writes ``benchmarks/results/latest.json`` and
``benchmarks/results/latest.md`` with the command, the versions and the machine.
``--quick`` is the smoke size CI runs (tiny N; its numbers mean nothing).

The drains (``floor``, ``drain``, ``peers``) and the enqueue-to-start latencies
(``latency``, and each peer's in ``peers``) run every system the same way: its adapter in
``peers/`` as a process of its own (see ``peers/_clock.py``), Redis's CPU and command
counters read around the drain, the worker's CPU read by the worker itself.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import redis
import redis.asyncio as aioredis
import structlog

import leaseq
from leaseq import JobContext, Queue, Reaper, Weighted, Worker
from leaseq.testing import RedisServer

from . import _speed
from .peers.systems import BARE, LEASEQ, LEASEQ_UVLOOP, PEERS, Environments, Failed, System, adapter
from .report import render

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent
DRAIN_SECONDS = 3.0
"""Each drain is sized (from the rate its system is expected to reach) to last this long."""
CHILD_TIMEOUT = 180.0
"""A drain or latency run that takes longer than this is reported as failed."""
DISTURBED, RETRIES, RETRY_PAUSE = 0.25, 2, 3.0
"""A run during which the rest of the machine kept more than DISTURBED cores busy is run
again, RETRY_PAUSE seconds later, at most RETRIES times; the least disturbed is kept
(``others_by_attempt`` lists them all)."""


def client(url: str) -> aioredis.Redis:
    # Room for the in-process workers' concurrency (100) plus their own connections.
    return aioredis.Redis.from_url(url, max_connections=256)


async def noop(ctx: JobContext, payload: Any) -> None:
    return None


def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ran = [r for r in rows if "jobs_per_s" in r and "error" not in r]
    return max(ran, key=lambda r: r["jobs_per_s"]) if ran else None


class Bench:
    def __init__(self, server: RedisServer, quick: bool) -> None:
        self.server = server
        self.url = server.url
        self.quick = quick
        self.results: dict[str, Any] = {}
        self.n = 2_000 if quick else 20_000
        self.samples = 50 if quick else 1_000
        self.envs = Environments()
        self.r = client(self.url)
        self.probes: list[dict[str, Any]] = []
        """Every speed probe of the run (``_speed.probe``), labelled with what ran after it."""

    def probe(self, label: str) -> float:
        """The machine's speed now (``_speed.probe``), kept for the run's median."""
        reading = {"before": label, **_speed.probe()}
        self.probes.append(reading)
        return float(reading["units_per_s"])

    async def flush(self) -> None:
        await self.r.flushall()
        await self.r.config_resetstat()

    async def counters(self) -> dict[str, Any]:
        info = await self.r.info("cpu", "stats")
        busy, steal = _speed.cpu_seconds()
        return {"redis_cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                "commands": int(info["total_commands_processed"]),
                # Read events on client sockets: about one per round trip, whoever the
                # client (a request over Redis's 16 KiB read buffer takes more).
                "reads": int(info["total_reads_processed"]),
                "busy": busy, "steal": steal, "t": time.perf_counter()}

    def size(self, system: System, concurrency: int | None) -> int:
        """N for one drain: a few seconds' worth at the rate the system reaches."""
        own = system.env == "main"
        if self.quick:
            return self.n if own else 200
        n = int(system.rates.get(concurrency, 1_000) * DRAIN_SECONDS)
        return max(self.n if own else 200, min(n, 100_000))

    # -- one system, one run -------------------------------------------------------------

    @staticmethod
    def steal(before: dict[str, Any], after: dict[str, Any]) -> float | None:
        """Cores' worth of CPU the hypervisor gave to others between two readings."""
        if before["steal"] is None or after["steal"] is None:
            return None
        return float((after["steal"] - before["steal"]) / (after["t"] - before["t"]))

    def others(self, before: dict[str, Any], after: dict[str, Any], *cpu: float) -> float | None:
        """Cores the rest of the machine kept busy between two readings: all busy CPU less
        Redis's and the given processes'."""
        if before["busy"] is None or after["busy"] is None:
            return None
        own = after["redis_cpu"] - before["redis_cpu"] + sum(cpu)
        return float(max(0.0, after["busy"] - before["busy"] - own) / (after["t"] - before["t"]))

    async def quiet(self, run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """``run()``, again (at most ``RETRIES`` times; never at the smoke size) while the
        rest of the machine kept more than ``DISTURBED`` cores busy; the least disturbed
        run is kept."""
        tries: list[dict[str, Any]] = []
        while True:
            tries.append(await run())
            others = tries[-1].get("other_cpu_cores")
            if "error" in tries[-1] or others is None or others <= DISTURBED:
                break
            if self.quick or len(tries) > RETRIES:
                break
            await anyio.sleep(RETRY_PAUSE)
        ran = [t for t in tries if "error" not in t] or tries
        kept = min(ran, key=lambda t: t.get("other_cpu_cores") or 0.0)
        if len(tries) > 1:
            kept["others_by_attempt"] = [t.get("other_cpu_cores") for t in tries]
        return kept

    @staticmethod
    def redis_work(before: dict[str, Any], after: dict[str, Any], jobs: int) -> dict[str, float]:
        """Redis's CPU, commands and socket reads between two readings, per job."""
        redis_cpu = after["redis_cpu"] - before["redis_cpu"]
        # The runner's own INFO between the two readings is not the system's.
        return {"redis_cpu_us_per_job": redis_cpu / jobs * 1e6,
                "redis_busy": redis_cpu / (after["t"] - before["t"]),
                "commands_per_job": (after["commands"] - before["commands"] - 1) / jobs,
                "redis_reads_per_job": (after["reads"] - before["reads"] - 1) / jobs}

    async def run_drain(self, system: System, concurrency: int | None) -> dict[str, Any]:
        return await self.quiet(lambda: self._drain_once(system, concurrency))

    async def _drain_once(self, system: System, concurrency: int | None) -> dict[str, Any]:
        """N no-op jobs enqueued, then one worker process drains them; Redis's counters
        read between the adapter's "ready" and its report."""
        n = self.size(system, concurrency)
        row: dict[str, Any] = {"name": system.name,
                               "concurrency": concurrency or system.default,
                               "default": concurrency in (None, system.default),
                               "jobs": n, "load_1m": os.getloadavg()[0],
                               "speed": self.probe(f"drain {system.name} @ {concurrency}")}
        try:
            python = await self.envs.python(system.env)
            await self.flush()
            async with adapter(system.argv(python, "drain", self.url, n, concurrency)) as child:
                with anyio.fail_after(CHILD_TIMEOUT):
                    await child.expect("ready")
                    before = await self.counters()
                    await child.go()
                    report = await child.expect("report")
                    after = await self.counters()
                exit_error = await child.finish()
        except Failed as e:
            return {**row, "error": str(e)}
        except TimeoutError:
            return {**row, "error": f"timed out after {CHILD_TIMEOUT:.0f} s"}
        jobs = max(1, report["jobs"])
        row.update(
            jobs=report["jobs"], concurrency=report.get("concurrency", row["concurrency"]),
            jobs_per_s=report["jobs_per_s"], seconds=report["seconds"],
            worker_cpu_us_per_job=report["cpu_s"] / jobs * 1e6,
            worker_busy=report["cpu_s"] / report["seconds"],
            **self.redis_work(before, after, jobs),
            other_cpu_cores=self.others(before, after, report["cpu_s"]),
            steal_cores=self.steal(before, after))
        if "round_trips" in report:
            row["round_trips_per_job"] = report["round_trips"] / jobs
        if "commands" in report:
            row["client_commands_per_job"] = report["commands"] / jobs
        if report["jobs"] < n:
            row["error"] = f"ran {report['jobs']} of {n} jobs"
        if exit_error:
            row["exit_error"] = exit_error
        return row

    async def run_latency(self, system: System) -> dict[str, Any]:
        return await self.quiet(lambda: self._latency_once(system))

    async def _latency_once(self, system: System) -> dict[str, Any]:
        """Enqueue-to-start with an idle worker process at its defaults, while a producer
        process enqueues one job every 5 ms (awaiting each)."""
        samples = self.samples
        out: dict[str, Any] = {"name": system.name, "concurrency": system.default,
                               "load_1m": os.getloadavg()[0],
                               "speed": self.probe(f"latency {system.name}")}
        try:
            python = await self.envs.python(system.env)
            await self.flush()
            work = system.argv(python, "work", self.url, samples, None)
            produce = system.argv(python, "produce", self.url, samples, None)
            async with adapter(work) as worker, adapter(produce) as producer:
                with anyio.fail_after(CHILD_TIMEOUT):
                    await worker.expect("warm")
                    before = await self.counters()
                    await producer.go()
                    sent = await producer.expect("report")
                    report = await worker.expect("report")
                    after = await self.counters()
                exit_error = (await producer.finish()) or (await worker.finish())
        except Failed as e:
            return {**out, "error": str(e)}
        except TimeoutError:
            return {**out, "error": f"timed out after {CHILD_TIMEOUT:.0f} s"}
        lat_ms = sorted(x / 1000 for x in report["latencies_us"])
        if not lat_ms:
            return {**out, "error": "no job carried its enqueue time"}
        offered = sent["produced"] / sent["seconds"]
        out.update(samples=len(lat_ms), concurrency=report.get("concurrency", system.default),
                   p50_ms=statistics.median(lat_ms),
                   p99_ms=lat_ms[max(0, int(len(lat_ms) * 0.99) - 1)], max_ms=lat_ms[-1],
                   offered_per_s=offered, started_per_s=report["jobs_per_s"],
                   # A worker slower than the producer: the latencies are a growing backlog.
                   saturated=report["jobs_per_s"] < 0.9 * offered,
                   other_cpu_cores=self.others(before, after, report["cpu_s"], sent["cpu_s"]),
                   steal_cores=self.steal(before, after),
                   # The producer's enqueues and the idle worker's own calls, per job.
                   **self.redis_work(before, after, max(1, sent["produced"])))
        if exit_error:
            out["exit_error"] = exit_error
        return out

    # -- drain -------------------------------------------------------------------------

    async def floor(self) -> dict[str, Any]:
        """The bare LPUSH/BRPOP loop (no leases, no acks, no reliability) at 1, 10, 50 and
        100 coroutines in one process: the floor is the best of them."""
        rows = [await self.run_drain(BARE, c) for c in BARE.concurrencies]
        top = best(rows)
        return {"rows": rows, "best": top["concurrency"] if top else None}

    async def drain(self) -> dict[str, Any]:
        """leaseq's ``Worker(queue, handlers)`` (its default concurrency: 79 on redis-py's
        default pool) and the same worker at concurrency 10, 100 and 200, each draining N
        no-op jobs in burst mode; then at its default and at 200 on uvloop."""
        rows = [await self.run_drain(LEASEQ, c) for c in LEASEQ.concurrencies]
        rows += [await self.run_drain(LEASEQ_UVLOOP, c) for c in LEASEQ_UVLOOP.concurrencies]
        top = best(rows)
        return {"rows": rows, "best": top["concurrency"] if top else None,
                "default": LEASEQ.default}

    async def peers(self) -> dict[str, Any]:
        """Every peer at its default concurrency and at 50: the same drain, then its
        enqueue-to-start latency at its defaults. A peer that cannot be set up or run
        is reported with the error's first line."""
        rows: list[dict[str, Any]] = []
        latency: dict[str, Any] = {}
        for system in PEERS:
            for c in system.concurrencies:
                if c is not None and system.not_run:
                    rows.append({"name": system.name, "concurrency": c,
                                 "default": False, "not_run": system.not_run})
                else:
                    rows.append(await self.run_drain(system, c))
            latency[system.name] = await self.run_latency(system)
        return {"rows": rows, "latency": latency}

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
        """Enqueue-to-start with an idle worker process, at 200 jobs/s: the bare loop (one
        coroutine) and leaseq's default worker."""
        return {"bare loop": await self.run_latency(BARE),
                "leaseq": await self.run_latency(LEASEQ)}

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
    "peers": Bench.peers,
    "latency": Bench.latency,
    "enqueue": Bench.enqueue,
    "scaling": Bench.scaling,
    "reaper": Bench.reaper,
    "memory": Bench.memory,
    "recovery": Bench.recovery,
    "multiqueue": Bench.multiqueue,
    "profile": Bench.profile,
}


async def run(quick: bool, only: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The results of the cases, and what each case started under (load average) plus
    the environments the systems ran in."""
    with RedisServer() as server:
        bench = Bench(server, quick)
        out: dict[str, Any] = {}
        load: dict[str, float] = {}
        try:
            for name, case in CASES.items():
                if only and name not in only:
                    continue
                load[name] = os.getloadavg()[0]
                bench.probe(name)
                print(f"-- {name} (load {load[name]:.2f})", flush=True)
                t = time.perf_counter()
                out[name] = await case(bench)
                print(f"   {json.dumps(out[name], default=float)[:600]} "
                      f"({time.perf_counter() - t:.1f} s)", flush=True)
        finally:
            await bench.r.aclose()
        bench.probe("the end")
        speeds = [p["units_per_s"] for p in bench.probes]
        speed = {"probes": bench.probes, "median": _speed.median(speeds),
                 "fastest": max(speeds), "slowest": min(speeds)}
        return out, {"load_by_case": load, "environments": bench.envs.report, "speed": speed}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict[str, Any]:
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True, check=False).stdout.strip()
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip() or None
    except OSError:
        node = None
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu_model(),
            "load_average": list(os.getloadavg()),
            "python": platform.python_version(), "node": node, "redis_server": redis_version,
            "redis_py": redis.__version__, "hiredis": _version("hiredis"),
            "anyio": _version("anyio"), "structlog": _version("structlog"),
            "leaseq": leaseq.__version__}


def command() -> str:
    """The command as it was typed, give or take quoting."""
    python = Path(sys.executable)
    if python.is_relative_to(Path.cwd()):
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), "-m", "benchmarks", *sys.argv[1:]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke size (CI)")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(CASES))
    parser.add_argument("--out", default=None, help="results file stem (default: latest)")
    parser.add_argument("--dir", default=str(RESULTS), help="results directory")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    started = time.time()
    load_start = list(os.getloadavg())
    results, context = anyio.run(run, args.quick, args.only)
    doc = {"command": command(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "seconds": round(time.time() - started, 1), "machine": machine(),
           "load": {"start": load_start, "end": list(os.getloadavg()),
                    "by_case": context["load_by_case"]},
           "speed": context["speed"], "environments": context["environments"],
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
