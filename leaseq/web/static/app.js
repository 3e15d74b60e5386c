// The leaseq dashboard: one EventSource stream of snapshots (the queues' counts and the
// shown queue's detail), the job search and view, and the lists by state. The place on
// the page is the URL's fragment, so every view can be bookmarked and has a JSON twin.
import { renderChart, watchChartSize } from "./chart.js";
import {
  closeJob, currentList, hideList, hideMatches, openJob, refreshJob, renderTabs, search,
  showList, showMatches,
} from "./jobs.js";
import { renderTrace } from "./trace.js";
import {
  act, ago, api, el, go, jobLink, localTime, moment, problemText, queuePath,
  readRoute, redisAnswered, redisFailed, renderBanner, replaceRows, seconds, state, toast,
} from "./util.js";

const stream = { source: null, queue: undefined, retry: 1000, timer: null, last: null };

function renderOverview(overview) {
  const now = overview.server_time_ms;
  document.getElementById("clock").textContent = `Redis time ${localTime(now)}`;
  document.getElementById("no-queues").hidden = overview.queues.length > 0;
  replaceRows("queues", overview.queues.map((q) => {
    // A reaper sweeps every second by default; a minute of silence means none is running.
    const reaperLate = q.reaper_seen_ms === null || now - q.reaper_seen_ms > 60000;
    return el("tr", {
      "data-queue": q.name,
      class: q.name === state.selected ? "selected" : "",
      onclick: (ev) => { if (!ev.target.closest("a, button")) go({ queue: q.name }); },
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
  if (state.selected === null && overview.queues.length > 0) {
    go({ ...readRoute(), queue: overview.queues[0].name }, { replace: true });
  }
}

function renderDetail(detail) {
  const s = detail.summary;
  const now = detail.server_time_ms;
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-name").textContent = s.name;
  document.getElementById("detail-json").href = queuePath("", s.name);
  for (const node of document.querySelectorAll("#detail [data-count]")) {
    node.textContent = s[node.dataset.count];
  }
  document.getElementById("detail-paused").hidden = !s.paused;
  const toggle = document.getElementById("pause-toggle");
  toggle.textContent = s.paused ? "Resume" : "Pause";
  toggle.dataset.paused = String(s.paused);
  document.getElementById("limits").textContent = limitsText(s);
  renderTabs(s);
  renderChart(detail.rates);
  renderWorkers(detail, now);
  document.getElementById("leases-note").textContent =
    s.in_progress > detail.leases.length ? `(showing ${detail.leases.length} of ${s.in_progress})` : "";
  replaceRows("leases", detail.leases.map((l) => el("tr", { "data-job": l.job_id },
    el("td", {}, jobLink(s.name, l.job_id)),
    el("td", {}, l.task),
    el("td", {}, `${l.attempt}${l.max_attempts ? ` / ${l.max_attempts}` : ""}`),
    el("td", {}, l.owner),
    el("td", {}, seconds(l.age)),
    el("td", { class: l.time_left === null ? "bad" : "" },
      l.time_left === null ? "expired" : seconds(l.time_left)),
    el("td", { class: "progress" }, progressText(l.progress)),
    el("td", { class: l.lease_expiries ? "bad" : "" },
      l.lease_expiries ? `${l.lease_expiries}× (poison?)` : "0"),
    el("td", {}, l.cancel_pending
      ? el("span", { class: "muted" }, "cancelling…")
      : el("button", { type: "button", class: "cancel", onclick: () => cancelJob(l.job_id) },
        "Cancel")))), "Nothing in progress.");
  replaceRows("dead", detail.dead.map((j) => el("tr", { "data-job": j.job_id },
    el("td", {}, jobLink(s.name, j.job_id)),
    el("td", {}, j.task),
    el("td", {}, j.attempts),
    el("td", { class: "reason" }, renderTrace(j.dead_reason)),
    el("td", {}, j.finished_at ? ago(j.finished_at * 1000, now) : "–"),
    el("td", { class: "actions" },
      el("button", { type: "button", class: "requeue", onclick: () => requeue([j.job_id]) },
        "Requeue"),
      el("button", { type: "button", class: "purge", onclick: () => purge(j.job_id) },
        "Purge")))), "No dead jobs.");
  document.getElementById("requeue-all").disabled = s.dead === 0;
  replaceRows("events", detail.events.map((e) => el("tr", { "data-job": e.job_id },
    el("td", {}, ago(e.at, now)),
    el("td", {}, jobLink(s.name, e.job_id)),
    el("td", {}, e.task),
    el("td", {}, e.attempt),
    el("td", {}, e.owner),
    el("td", { class: e.outcome === "requeued" ? "" : "bad" },
      e.outcome === "requeued" ? "requeued" : `${e.outcome}: ${e.reason}`))),
  "No lease has expired (among the last 200 the reaper recorded).");
  replaceRows("schedules", detail.schedules.map((c) => el("tr", { "data-schedule": c.name },
    el("td", { class: "id" }, c.name),
    el("td", {}, c.task),
    el("td", {}, c.spec),
    el("td", { class: c.stale ? "bad" : "" },
      c.stale ? "stale: no scheduler runs it" : c.next_tick === null ? "–"
        : `in ${seconds(Math.max(0, c.next_tick - now / 1000))}`),
    el("td", {}, c.last_job ? jobLink(s.name, c.last_job) : "–"),
    el("td", {}, c.last_job_state || "–"),
    el("td", {}, c.enqueued),
    el("td", { class: c.skipped_overlap + c.skipped_missed ? "bad" : "" },
      `${c.skipped_overlap} overlap, ${c.skipped_missed} missed`))),
  "No schedules: give a worker schedules= or run leaseq scheduler.");
}

function renderWorkers(detail, now) {
  const shown = detail.workers.length;
  document.getElementById("workers-note").textContent = detail.workers_total > shown
    ? `(showing ${shown} of ${detail.workers_total})` : `(${detail.workers_total} live)`;
  replaceRows("workers", detail.workers.map((w) => el("tr", { "data-worker": w.id, "data-pid": w.pid },
    el("td", { class: "id" }, `${w.host}:${w.pid}`),
    el("td", {}, w.queues.join(", ")),
    el("td", {}, `${w.in_flight} / ${w.concurrency}`),
    el("td", {}, ago(w.last_seen * 1000, now)),
    el("td", {}, moment(w.started_at * 1000, now)),
    el("td", {}, `${w.counters.acked ?? 0} acked, ${w.counters.failed ?? 0} failed, ` +
      `${w.counters.lease_lost ?? 0} leases lost`),
    el("td", {}, w.version))),
  "No live worker: nothing claims this queue's jobs (a worker that died drops out once " +
    "its heartbeat expires).");
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
  parts.push(`${s.waiting_on_limits} job${s.waiting_on_limits === 1 ? "" : "s"} held back` +
    (s.paused ? " by the pause" : " by a limit"));
  return `Limits: ${parts.join(" · ")}`;
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
  const snapshot = stream.last;
  if (!snapshot) return;
  for (const q of snapshot.overview.queues) if (q.name === name) q.paused = paused;
  renderOverview(snapshot.overview);
  if (snapshot.detail && snapshot.detail.summary.name === name) {
    snapshot.detail.summary.paused = paused;
    renderDetail(snapshot.detail);
  }
}

// -- the live stream --------------------------------------------------------------

function setStatus(kind, text) {
  const node = document.getElementById("status");
  node.dataset.state = kind;
  node.textContent = text;
}

function connect(queue) {
  if (stream.source && stream.queue === queue && stream.source.readyState !== EventSource.CLOSED) {
    return;
  }
  if (stream.source) stream.source.close();
  clearTimeout(stream.timer);
  stream.queue = queue;
  const query = queue ? `?queue=${encodeURIComponent(queue)}` : "";
  const source = new EventSource(`/live${query}`);
  stream.source = source;
  source.addEventListener("snapshot", (ev) => {
    const data = JSON.parse(ev.data);
    stream.last = data;
    stream.retry = 1000;
    state.serverOffset = data.overview.server_time_ms - Date.now();
    redisAnswered();
    setStatus("live", "live");
    renderOverview(data.overview);
    if (data.detail) renderDetail(data.detail);
    refreshJob();
  });
  source.addEventListener("problem", (ev) => {
    const { detail } = JSON.parse(ev.data);
    redisFailed(detail);
    setStatus("problem", "Redis down");
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CONNECTING) {
      // The browser reconnects by itself (the dashboard's server went away).
      setStatus("problem", "reconnecting…");
      return;
    }
    // Closed: the server refused the stream (Redis down when it began: a 503). Ask the
    // API why, and try again, less and less often.
    setStatus("problem", "reconnecting…");
    api("/queues").then((reply) => {
      // A 503 shows the banner (api() does); anything else (a token gone stale) is
      // not Redis's doing, and is said where the status is.
      if (!reply.ok && reply.status !== 503) {
        setStatus("problem", problemText(reply.body.detail, reply.status));
      }
    });
    stream.timer = setTimeout(() => connect(stream.queue), stream.retry);
    stream.retry = Math.min(stream.retry * 2, 15000);
  };
}

// -- the route --------------------------------------------------------------------

// What each part of the page last showed, so a change of one part of the route does not
// read the others again.
const shown = { search: null, list: null };

function applyRoute() {
  const route = readRoute();
  const queue = route.queue ?? null;
  if (queue !== state.selected) {
    state.selected = queue;
    document.getElementById("detail").hidden = true;
    for (const row of document.querySelectorAll("#queues tbody tr[data-queue]")) {
      row.classList.toggle("selected", row.dataset.queue === queue);
    }
  }
  connect(queue);
  if (queue !== null && route.job) openJob(queue, route.job);
  else closeJob();
  const searchKey = queue !== null && route.search ? JSON.stringify([queue, route.search]) : null;
  if (searchKey === null) hideMatches();
  else if (searchKey !== shown.search) showMatches(queue, route.search);
  shown.search = searchKey;
  const listKey = queue !== null && route.state
    ? JSON.stringify([queue, route.state, route.task, route.page, route.cursor]) : null;
  if (listKey === null) {
    hideList();
  } else if (listKey !== shown.list) {
    const page = Number.parseInt(route.page ?? "0", 10) || 0;
    showList(queue, route.state, route.task ?? "", { page, cursor: route.cursor ?? null });
  }
  shown.list = listKey;
}

document.addEventListener("DOMContentLoaded", () => {
  renderChart();  // the empty axes at once: no blank frame before the first snapshot
  watchChartSize();
  document.getElementById("requeue-all").addEventListener("click", requeueAll);
  document.getElementById("pause-toggle").addEventListener("click", togglePause);
  document.getElementById("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    search(document.getElementById("search-text").value);
  });
  document.getElementById("job-close").addEventListener("click", () => {
    const { job, ...rest } = readRoute();
    go(rest);
  });
  document.getElementById("found-close").addEventListener("click", () => {
    const { search: _, ...rest } = readRoute();
    go(rest);
  });
  for (const tab of document.querySelectorAll("#state-tabs button")) {
    tab.addEventListener("click", () => go({ queue: state.selected, state: tab.dataset.state,
      task: document.getElementById("task-filter").value.trim() }));
  }
  document.getElementById("task-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const wanted = currentList().state ?? "todo";
    go({ queue: state.selected, state: wanted,
      task: document.getElementById("task-filter").value.trim() });
  });
  document.getElementById("jobs-first").addEventListener("click", () => {
    const { state: wanted, task } = currentList();
    go({ queue: state.selected, state: wanted, task });
  });
  document.getElementById("jobs-refresh").addEventListener("click", () => {
    const { state: wanted, task, page, cursors } = currentList();
    if (wanted) showList(state.selected, wanted, task, { page, cursor: cursors[page] });
  });
  window.addEventListener("hashchange", applyRoute);
  // The banner's "last answered ... ago" keeps counting while Redis stays down.
  setInterval(() => { if (state.outage !== null) renderBanner(); }, 1000);
  applyRoute();
});
