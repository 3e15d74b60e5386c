// The leaseq dashboard: one EventSource stream of snapshots, rendered with DOM nodes
// (never innerHTML: job ids, task names and reasons are user data).
"use strict";

const state = { selected: null, source: null, lastSnapshot: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

function ago(ms, nowMs) {
  if (ms === null || ms === undefined) return "never";
  return `${seconds(Math.max(0, nowMs - ms) / 1000)} ago`;
}

function clock(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function replaceRows(table, rows, empty) {
  const body = document.querySelector(`#${table} tbody`);
  if (rows.length === 0 && empty) {
    const columns = document.querySelectorAll(`#${table} thead th`).length;
    rows = [el("tr", { class: "empty" }, el("td", { colspan: columns, class: "muted" }, empty))];
  }
  body.replaceChildren(...rows);
}

function toast(message, bad = false) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.className = bad ? "bad" : "";
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 4000);
}

function renderOverview(overview) {
  const now = overview.server_time_ms;
  document.getElementById("clock").textContent = `Redis time ${clock(now)}`;
  document.getElementById("no-queues").hidden = overview.queues.length > 0;
  replaceRows("queues", overview.queues.map((q) => {
    // A reaper sweeps every second by default; a minute of silence means none is running.
    const reaperLate = q.reaper_seen_ms === null || now - q.reaper_seen_ms > 60000;
    return el("tr", {
      "data-queue": q.name,
      class: q.name === state.selected ? "selected" : "",
      onclick: () => select(q.name),
    },
      el("td", {}, el("a", { href: `#queue=${encodeURIComponent(q.name)}` }, q.name),
        q.paused ? el("span", { class: "paused-tag" }, "paused") : ""),
      el("td", { "data-col": "todos" }, q.todos),
      el("td", { "data-col": "in_progress" }, q.in_progress),
      el("td", { "data-col": "delayed" }, q.delayed),
      el("td", { "data-col": "done" }, q.done),
      el("td", { "data-col": "dead", class: q.dead ? "bad" : "" }, q.dead),
      el("td", { "data-col": "done_last_minute" }, q.done_last_minute),
      el("td", { class: reaperLate ? "bad" : "muted" }, ago(q.reaper_seen_ms, now)));
  }));
  if (state.selected === null && overview.queues.length > 0) select(overview.queues[0].name);
}

function renderChart(counts) {
  const svg = document.getElementById("chart");
  const ns = "http://www.w3.org/2000/svg";
  const max = Math.max(1, ...counts);
  const width = 600 / counts.length;
  const bars = counts.map((count, i) => {
    const h = (count / max) * 100;
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", String(i * width + 2));
    bar.setAttribute("y", String(110 - h));
    bar.setAttribute("width", String(width - 4));
    bar.setAttribute("height", String(Math.max(h, 0.5)));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${counts.length - i} min ago: ${count} acks`;
    bar.append(title);
    return bar;
  });
  svg.replaceChildren(...bars);
  document.getElementById("chart-max").textContent =
    `${counts[counts.length - 1]} in the last minute, peak ${Math.max(...counts)}`;
}

function renderDetail(detail) {
  const s = detail.summary;
  const now = detail.server_time_ms;
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-name").textContent = s.name;
  for (const node of document.querySelectorAll("#detail [data-count]")) {
    node.textContent = s[node.dataset.count];
  }
  document.getElementById("detail-paused").hidden = !s.paused;
  const toggle = document.getElementById("pause-toggle");
  toggle.textContent = s.paused ? "Resume" : "Pause";
  toggle.dataset.paused = String(s.paused);
  document.getElementById("limits").textContent = limitsText(s);
  renderChart(detail.throughput);
  document.getElementById("leases-note").textContent =
    s.in_progress > detail.leases.length ? `(showing ${detail.leases.length} of ${s.in_progress})` : "";
  replaceRows("leases", detail.leases.map((l) => el("tr", { "data-job": l.job_id },
    el("td", { class: "id" }, l.job_id),
    el("td", {}, l.task),
    el("td", {}, `${l.attempt}${l.max_attempts ? ` / ${l.max_attempts}` : ""}`),
    el("td", {}, l.owner),
    el("td", {}, seconds(l.age)),
    el("td", { class: l.time_left === null ? "bad" : "" },
      l.time_left === null ? "expired" : seconds(l.time_left)),
    el("td", { class: "progress" }, progressText(l.progress)),
    el("td", { class: l.lease_expiries ? "bad" : "muted" },
      l.lease_expiries ? `${l.lease_expiries}× (poison?)` : "0"),
    el("td", {}, l.cancel_pending
      ? el("span", { class: "muted" }, "cancelling…")
      : el("button", { type: "button", class: "cancel", onclick: () => cancelJob(l.job_id) },
        "Cancel")))), "Nothing in progress.");
  replaceRows("dead", detail.dead.map((j) => el("tr", { "data-job": j.job_id },
    el("td", { class: "id" }, j.job_id),
    el("td", {}, j.task),
    el("td", {}, j.attempts),
    el("td", { class: "reason" }, j.dead_reason),
    el("td", {}, j.finished_at ? ago(j.finished_at * 1000, now) : "–"),
    el("td", {},
      el("button", { type: "button", class: "requeue", onclick: () => requeue([j.job_id]) },
        "Requeue"),
      el("button", { type: "button", class: "purge", onclick: () => purge(j.job_id) },
        "Purge")))), "No dead jobs.");
  document.getElementById("requeue-all").disabled = s.dead === 0;
  replaceRows("events", detail.events.map((e) => el("tr", { "data-job": e.job_id },
    el("td", {}, ago(e.at, now)),
    el("td", { class: "id" }, e.job_id),
    el("td", {}, e.task),
    el("td", {}, e.attempt),
    el("td", {}, e.owner),
    el("td", { class: e.outcome === "dead" ? "bad" : "" },
      e.outcome === "dead" ? `dead: ${e.reason}` : "requeued"))),
    "No lease has expired (among the last 200 the reaper recorded).");
  replaceRows("schedules", detail.schedules.map((c) => el("tr", { "data-schedule": c.name },
    el("td", { class: "id" }, c.name),
    el("td", {}, c.task),
    el("td", {}, c.spec),
    el("td", { class: c.stale ? "bad" : "" },
      c.stale ? "stale: no scheduler runs it" : c.next_tick === null ? "–"
        : `in ${seconds(Math.max(0, c.next_tick - now / 1000))}`),
    el("td", { class: "id" }, c.last_job || "–"),
    el("td", {}, c.last_job_state || "–"),
    el("td", {}, c.enqueued),
    el("td", { class: c.skipped_overlap + c.skipped_missed ? "bad" : "muted" },
      `${c.skipped_overlap} overlap, ${c.skipped_missed} missed`))),
    "No schedules: give a worker schedules= or run leaseq scheduler.");
}

// "40% copying" from a stored progress ({fraction, message, data, at}); "–" for none.
function progressText(p) {
  if (!p) return "–";
  const pct = `${Math.round(p.fraction * 100)}%`;
  return p.message ? `${pct} ${p.message}` : pct;
}

function limitsText(s) {
  const limit = (value) => (value === null || value === undefined ? "none" : value);
  const parts = [
    `ordering ${s.ordering}`,
    `max in flight ${limit(s.max_in_flight)}` +
      (s.max_in_flight !== null || s.key_concurrency !== null ? ` (${s.holding} holding)` : ""),
    `key concurrency ${limit(s.key_concurrency)}`,
    `rate ${limit(s.rate_limit)}`,
    `key rate ${limit(s.key_rate)}`,
  ];
  if (s.ordering === "fifo") parts.push(`keys ${s.keys_waiting} ready, ${s.keys_parked} parked`);
  return `Limits: ${parts.join(" · ")}`;
}

// Resolves to the reply on success, null on failure (said in a toast either way). A
// reply with a count says how many jobs moved; others (pause, resume) just what happened.
async function act(path, body, what) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) {
    toast(`${what} failed: ${reply.detail ? JSON.stringify(reply.detail) : response.status}`, true);
    return null;
  }
  toast(typeof reply.count === "number" ? `${what}: ${reply.count} job(s)` : what);
  return reply;
}

function queuePath(suffix) {
  return `/queues/${encodeURIComponent(state.selected)}${suffix}`;
}

function requeue(ids) {
  if (!confirm(`Requeue dead job ${ids[0]} with fresh attempts?`)) return;
  act(queuePath("/dead/requeue"), { job_ids: ids }, "Requeued");
}

function purge(id) {
  if (!confirm(`Delete dead job ${id} for good? This cannot be undone.`)) return;
  act(queuePath("/dead/purge"), { job_ids: [id] }, "Purged");
}

function cancelJob(id) {
  if (!confirm(`Cancel running job ${id}? Its worker stops it, and it ends cancelled.`)) return;
  act(queuePath("/cancel"), { job_id: id, reason: "cancelled from the dashboard" },
    `Cancel of ${id}`).then((reply) => { if (reply) toast(`Cancel of ${id}: ${reply.outcome}`); });
}

function requeueAll() {
  if (!confirm(`Requeue every dead job of ${state.selected} with fresh attempts?`)) return;
  act(queuePath("/dead/requeue"), { all: true }, "Requeued");
}

async function togglePause() {
  const name = state.selected;
  const button = document.getElementById("pause-toggle");
  const paused = button.dataset.paused === "true";
  if (!paused && !confirm(`Pause queue ${name}? No worker claims from it until it is ` +
      "resumed; running jobs finish.")) return;
  button.disabled = true;
  try {
    const reply = await act(queuePath(paused ? "/resume" : "/pause"),
      paused ? {} : { confirm: true }, `${paused ? "Resumed" : "Paused"} queue ${name}`);
    if (reply) showPaused(reply.queue, reply.paused);
  } finally {
    button.disabled = false;
  }
}

// Show the state a pause or resume reply gave at once, not a second later with the
// next snapshot.
function showPaused(name, paused) {
  const snapshot = state.lastSnapshot;
  if (!snapshot) return;
  for (const q of snapshot.overview.queues) if (q.name === name) q.paused = paused;
  renderOverview(snapshot.overview);
  if (snapshot.detail && snapshot.detail.summary.name === name) {
    snapshot.detail.summary.paused = paused;
    renderDetail(snapshot.detail);
  }
}

function select(name) {
  if (name === state.selected) return;
  state.selected = name;
  if (location.hash !== `#queue=${encodeURIComponent(name)}`) {
    history.replaceState(null, "", `#queue=${encodeURIComponent(name)}`);
  }
  connect();
}

function setStatus(kind, text) {
  const node = document.getElementById("status");
  node.dataset.state = kind;
  node.textContent = text;
}

function connect() {
  if (state.source) state.source.close();
  const query = state.selected ? `?queue=${encodeURIComponent(state.selected)}` : "";
  const source = new EventSource(`/live${query}`);
  state.source = source;
  source.addEventListener("snapshot", (ev) => {
    const data = JSON.parse(ev.data);
    state.lastSnapshot = data;
    setStatus("live", "live");
    renderOverview(data.overview);
    if (data.detail) renderDetail(data.detail);
  });
  source.addEventListener("problem", (ev) => {
    setStatus("problem", `Redis problem: ${JSON.parse(ev.data).detail}`);
  });
  // EventSource reconnects by itself; say so meanwhile.
  source.onerror = () => setStatus("problem", "reconnecting…");
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("requeue-all").addEventListener("click", requeueAll);
  document.getElementById("pause-toggle").addEventListener("click", togglePause);
  const match = location.hash.match(/^#queue=(.+)$/);
  if (match) state.selected = decodeURIComponent(match[1]);
  connect();
});
