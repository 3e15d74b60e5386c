'use strict';
// BullMQ on Node: `node bullmq_adapter.js MODE URL N [CONCURRENCY]`, after `npm ci` in this
// folder. The modes, the protocol lines and the start record are those of ../_clock.py:
// every processor call first records its start (and, in the latency run, how long after
// the enqueue time its payload carries, in microseconds of CLOCK_MONOTONIC, which
// process.hrtime reads as Python's time.monotonic does). CONCURRENCY is the worker's
// `concurrency` (default 1). Connections go through ioredis, BullMQ's default client.

const { Queue, Worker } = require('bullmq');

const PRODUCE_INTERVAL_MS = 5;

const [mode, url, nText, concurrencyText] = process.argv.slice(2);
if (!['drain', 'work', 'produce'].includes(mode)) {
  throw new Error(`unknown mode ${mode}`);
}
const n = Number(nText);
const concurrency = concurrencyText === undefined ? undefined : Number(concurrencyText);
const { hostname, port } = new URL(url);
const connection = { host: hostname, port: Number(port || 6379) };

function nowUs() {
  return Number(process.hrtime.bigint() / 1000n);
}

function emit(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function waitForGo() {
  return new Promise((resolve) => {
    process.stdin.once('data', () => {
      process.stdin.pause();
      resolve();
    });
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class Clock {
  constructor(count, warmup) {
    this.n = count;
    this.warmup = warmup;
    this.calls = 0;
    this.first = 0;
    this.last = 0;
    this.latenciesUs = [];
    this.go();
    this.finished = new Promise((resolve) => {
      this.finish = resolve;
    });
  }

  go() {
    this.cpu0 = process.cpuUsage();
    this.t0 = process.hrtime.bigint();
  }

  tick(stamp) {
    const now = nowUs();
    if (this.warmup) {
      this.warmup = false;
      emit({ warm: true });
      this.go();
      return;
    }
    if (Number.isInteger(stamp) && stamp > 0) {
      this.latenciesUs.push(now - stamp);
    }
    if (this.calls === 0) {
      this.first = now;
    }
    this.calls += 1;
    this.last = now;
    if (this.calls >= this.n) {
      this.finish();
    }
  }

  report(name, extra) {
    const cpu = process.cpuUsage(this.cpu0);
    const seconds = Number(process.hrtime.bigint() - this.t0) / 1e9;
    const span = (this.last - this.first) / 1e6;
    const rate = this.calls > 1 && span > 0 ? (this.calls - 1) / span : 0;
    emit({
      report: {
        name,
        jobs: this.calls,
        jobs_per_s: rate,
        cpu_s: (cpu.user + cpu.system) / 1e6,
        seconds,
        latencies_us: this.latenciesUs,
        ...extra,
      },
    });
  }
}

async function main() {
  const queue = new Queue('bench', { connection });
  if (mode === 'produce') {
    await queue.add('noop', { stamp: nowUs() }); // the warm-up
    await waitForGo();
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < n; i += 1) {
      await queue.add('noop', { stamp: nowUs() });
      await sleep(PRODUCE_INTERVAL_MS);
    }
    const cpu = process.cpuUsage(cpu0);
    emit({
      report: {
        produced: n,
        seconds: Number(process.hrtime.bigint() - t0) / 1e9,
        cpu_s: (cpu.user + cpu.system) / 1e6,
      },
    });
    await queue.close();
    return;
  }
  const clock = new Clock(n, mode === 'work');
  if (mode === 'drain') {
    for (let offset = 0; offset < n; offset += 1000) {
      const size = Math.min(1000, n - offset);
      await queue.addBulk(Array.from({ length: size }, () => ({ name: 'noop', data: { stamp: 0 } })));
    }
    emit({ ready: true });
    await waitForGo();
    clock.go();
  }
  const options = concurrency === undefined ? {} : { concurrency };
  const worker = new Worker('bench', async (job) => clock.tick(job.data.stamp), {
    connection,
    ...options,
  });
  await clock.finished;
  clock.report('bullmq (node)', { concurrency: worker.opts.concurrency });
  await worker.close();
  await queue.close();
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
    process.exit(1);
  },
);
