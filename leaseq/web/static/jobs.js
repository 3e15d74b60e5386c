// Finding a job and telling its story: the search box (an exact id in any queue, else
// an id prefix in the queue shown), the job view (fields, attempts, error, payload,
// actions) and the lists of a queue's jobs by state, page by page.
import { renderTrace } from "./trace.js";
import {
  act, api, el, firstLine, go, jobLink, moment, problemText, queuePath, replaceRows,
  seconds, state, toast,
} from "./util.js";

const view = { queue: null, jobId: null, loading: false, reply: null };
const list = { queue: null, state: null, task: "", cursors: [null], page: 0 };

// -- the search box ---------------------------------------------------------------

// The search box: an exact id in any queue opens its view; else the shown queue is
// searched for ids starting with the text.
export async function search(text) {
  const wanted = text.trim();
  if (!wanted) return;
  // The same id in several queues is a 409; the queue shown is then the one meant.
  let reply = await api(`/jobs/${encodeURIComponent(wanted)}`);
  if (reply.status === 409 && state.selected) {
    reply = await api(`/jobs/${encodeURIComponent(wanted)}?queue=${encodeURIComponent(state.selected)}`);
  }
  if (reply.ok) {
    go({ queue: reply.body.queue, job: reply.body.job_id });
    return;
  }
  if (reply.status === 409 || !state.selected) {
    toast(`Search: ${problemText(reply.body.detail, reply.status)}`, true);
    return;
  }
  go({ queue: state.selected, search: wanted });
}

// The jobs of `queue` whose id starts with `prefix` (from `cursor` on: added to those shown).
export async function showMatches(queue, prefix, cursor = null) {
  const section = document.getElementById("found");
  section.hidden = false;
  document.getElementById("found-prefix").textContent = prefix;
  document.getElementById("found-queue").textContent = queue;
  twin("found-json", `${queuePath("/search", queue)}?prefix=${encodeURIComponent(prefix)}`);
  const query = new URLSearchParams({ prefix, limit: "50" });
  if (cursor) query.set("cursor", cursor);
  const reply = await api(`${queuePath("/search", queue)}?${query}`);
  const more = document.getElementById("found-more");
  if (!reply.ok) {
    replaceRows("found-table", [], `Search failed: ${problemText(reply.body.detail, reply.status)}`);
    more.hidden = true;
    return;
  }
  const { jobs, next_cursor: next } = reply.body;
  const rows = jobs.map((j) => el("tr", { "data-job": j.job_id },
    el("td", {}, jobLink(queue, j.job_id)),
    el("td", {}, el("span", { class: "state", "data-state": j.state }, j.state)),
    el("td", {}, j.task),
    el("td", {}, `${j.attempts}${j.max_attempts ? ` / ${j.max_attempts}` : ""}`),
    el("td", {}, moment(j.enqueued_at === null ? null : j.enqueued_at * 1000))));
  const body = document.querySelector("#found-table tbody");
  if (cursor) body.append(...rows);  // "search further" adds to what was found
  else replaceRows("found-table", rows, next ? "" : `No job of ${queue} starts with ${prefix}.`);
  document.getElementById("found-note").textContent = next
    ? "Only part of the queue was searched (each step looks at about 5,000 ids)."
    : "Every state of the queue was searched.";
  more.hidden = !next;
  more.onclick = () => showMatches(queue, prefix, next);
}

// Hide the search's results.
export function hideMatches() {
  document.getElementById("found").hidden = true;
}

// -- the job view -----------------------------------------------------------------

function twin(id, href) {
  const link = document.getElementById(id);
  link.href = href;
}

// Show a job's view, and move the focus to it (keyboard and screen reader users land there).
export function openJob(queue, jobId) {
  const fresh = view.queue !== queue || view.jobId !== jobId;
  if (fresh) view.reply = null;
  view.queue = queue;
  view.jobId = jobId;
  const section = document.getElementById("job");
  section.hidden = false;
  document.getElementById("job-id").textContent = jobId;
  twin("job-json", `${queuePath("/inspect", queue)}?job_id=${encodeURIComponent(jobId)}`);
  // The focus moves only to a job just opened, not on every change of the route (a
  // list's next page) while it stays open.
  refreshJob().then(() => { if (fresh) document.getElementById("job-heading").focus(); });
}

// Hide the job view.
export function closeJob() {
  view.queue = view.jobId = view.reply = null;
  document.getElementById("job").hidden = true;
}

// Read the open job again (each snapshot calls it, so the view follows the job live).
export async function refreshJob() {
  if (view.jobId === null || view.loading) return;
  const { queue, jobId } = view;
  view.loading = true;
  try {
    const reply = await api(`${queuePath("/inspect", queue)}?job_id=${encodeURIComponent(jobId)}`);
    if (view.queue !== queue || view.jobId !== jobId) return;  // another job was opened
    if (reply.ok) renderJob(reply.body);
    else if (reply.status === 404) renderGone(queue, jobId);
    // A 503 keeps what was shown; the banner says why it is not fresh.
  } finally {
    view.loading = false;
  }
}

function renderGone(queue, jobId) {
  document.getElementById("job-state").textContent = "gone";
  document.getElementById("job-state").dataset.state = "gone";
  document.getElementById("job-body").replaceChildren(el("p", { class: "muted" },
    `Queue ${queue} has no job ${jobId} (never enqueued, purged, or a done job the ` +
    "retention forgot)."));
  document.getElementById("job-actions").replaceChildren();
}

function field(name, value) {
  return [el("dt", {}, name), el("dd", { "data-field": name }, value)];
}

function progressText(p) {
  if (!p) return "–";
  const pct = `${Math.round(p.fraction * 100)}%`;
  return p.message ? `${pct} ${p.message}` : pct;
}

function ms(secondsValue) {
  return secondsValue === null || secondsValue === undefined ? null : secondsValue * 1000;
}

function renderJob(detail) {
  const job = detail.job;
  const now = detail.server_time_ms;
  view.reply = detail;
  const badge = document.getElementById("job-state");
  badge.textContent = job.state ?? "no state";
  badge.dataset.state = job.state ?? "none";
  const lease = job.lease_token
    ? `${job.lease_token} (${seconds(job.lease_ttl)} left)` : "none";
  const fields = [
    field("queue", job.queue),
    field("task", job.task ?? "–"),
    field("attempts", `${job.attempts}${job.max_attempts ? ` of ${job.max_attempts}` : ""}` +
      ` · ${job.failures} failed · ${job.lease_expiries} lease expired · ` +
      `${detail.releases} released`),
    field("owner", job.owner ?? "–"),
    field("lease", lease),
    field("enqueued", moment(ms(job.enqueued_at), now)),
    field("finished", moment(ms(job.finished_at), now)),
  ];
  if (job.expires_at !== null) fields.push(field("start by", moment(ms(job.expires_at), now)));
  if (job.priority || job.key) {
    fields.push(field("priority / key", `${job.priority} / ${job.key ?? "none"}`));
  }
  if (job.progress) fields.push(field("progress", progressText(job.progress)));
  if (job.after.length) {
    fields.push(field("after", el("span", {}, job.after.map((id) => jobLink(job.queue, id)),
      job.state === "blocked" ? ` (waiting for ${job.waiting_for})` : "")));
  }
  if (job.cancel_reason) fields.push(field("cancel reason", job.cancel_reason));
  if (job.dead_reason) fields.push(field("dead reason", renderTrace(job.dead_reason)));
  const parts = [el("dl", { class: "fields" }, fields.flat())];
  parts.push(el("h3", {}, "Attempts"), attemptsTable(detail, now));
  if (job.error) {
    parts.push(el("h3", {}, "Last error"), renderTrace(job.error, { id: "job-error" }));
  }
  parts.push(el("h3", {}, "Payload"), preview(detail.payload, "job-payload"));
  if (job.state === "done") parts.push(el("h3", {}, "Result"), preview(detail.result, "job-result"));
  if (detail.timeline.length) parts.push(el("h3", {}, "Events"), timeline(detail, now));
  document.getElementById("job-body").replaceChildren(...parts);
  renderActions(job, detail.actions);
}

const ENDS = {
  running: "running",
  lease_expired: "lease expired (its claimer died, hung or lost Redis)",
  acked: "acked",
  failed: "failed",
  released: "released (given back at a shutdown)",
  buried: "buried",
  cancelled: "cancelled",
  unknown: "–",
};

function attemptsTable(detail, now) {
  if (detail.attempts.length === 0) {
    return el("p", { class: "muted", id: "job-attempts" }, "Not claimed yet.");
  }
  const rows = detail.attempts.map((a) => {
    let end = ENDS[a.end] ?? a.end;
    if (a.end === "running") end = `running (lease ${seconds(a.lease_ttl)} left)`;
    return el("tr", { "data-attempt": a.attempt ?? "", "data-end": a.end },
      el("td", {}, a.attempt ?? "?"),
      el("td", {}, a.owner ?? "–"),
      el("td", {}, moment(a.claimed_at, now)),
      el("td", { class: a.end === "lease_expired" || a.end === "failed" ? "bad" : "" }, end),
      el("td", {}, a.ended_at === null ? "" : moment(a.ended_at, now)),
      el("td", {}, a.outcome ? `→ ${a.outcome}` : ""),
      // The first line only: the whole last error is shown below the table.
      el("td", { class: "reason", title: a.detail ?? "" }, firstLine(a.detail)),
      el("td", { class: "id" }, a.token ?? "–"));
  });
  const note = detail.numbered ? "" : el("p", { class: "muted" },
    "Not every claim is on record (the reaper keeps its last 200 expiries, the job its " +
    "last 8 settlements): rows are in claim order, ? marks an unknown number.");
  return el("div", {},
    el("div", { class: "scroll" },
      el("table", { id: "job-attempts" },
        el("thead", {}, el("tr", {},
          ["attempt", "owner", "claimed", "how it ended", "ended", "then", "detail", "token"]
            .map((h) => el("th", {}, h)))),
        el("tbody", {}, rows))),
    note);
}

function preview(p, id) {
  if (p.text === null) return el("p", { class: "muted", id }, "none");
  return el("div", { id },
    el("pre", { class: "value" }, p.text),
    p.truncated ? el("small", { class: "muted" },
      `Cut at ${p.text.length} of ${p.size} characters; the whole value is in the JSON.`) : "");
}

function timeline(detail, now) {
  return el("div", { class: "scroll" }, el("table", { id: "job-timeline" },
    el("thead", {}, el("tr", {}, ["when", "event", "what it says"].map((h) => el("th", {}, h)))),
    el("tbody", {}, detail.timeline.map((e) => el("tr", {},
      el("td", {}, moment(e.at, now)),
      el("td", {}, e.type),
      el("td", { class: "reason" },
        Object.entries(e.data).map(([k, v]) => `${k}=${firstLine(v)}`).join(" ")))))));
}

function renderActions(job, actions) {
  const buttons = [];
  const q = job.queue;
  const id = job.job_id;
  if (actions.includes("requeue")) {
    buttons.push(el("button", { type: "button", class: "requeue", onclick: async () => {
      if (!confirm(`Requeue dead job ${id} with fresh attempts?`)) return;
      if (await act(queuePath("/dead/requeue", q), { job_ids: [id] }, "Requeued")) refreshJob();
    } }, "Requeue"));
  }
  if (actions.includes("purge")) {
    buttons.push(el("button", { type: "button", class: "purge", onclick: async () => {
      if (!confirm(`Delete dead job ${id} for good? This cannot be undone.`)) return;
      if (await act(queuePath("/dead/purge", q), { job_ids: [id] }, "Purged")) refreshJob();
    } }, "Purge"));
  }
  if (actions.includes("cancel")) {
    const running = job.state === "in_progress";
    buttons.push(el("button", { type: "button", class: "cancel", onclick: async () => {
      const what = running ? "Its worker stops it, and it ends cancelled."
        : "It will not run.";
      if (!confirm(`Cancel job ${id}? ${what}`)) return;
      const reply = await act(queuePath("/cancel", q),
        { job_id: id, reason: "cancelled from the dashboard" }, `Cancel of ${id}`);
      if (reply) {
        toast(`Cancel of ${id}: ${reply.outcome}`);
        refreshJob();
      }
    } }, running ? "Cancel (stop it)" : "Cancel"));
  }
  document.getElementById("job-actions").replaceChildren(...buttons);
}

// -- the lists of jobs by state ---------------------------------------------------

const NOTES = {
  dead: (j) => firstLine(j.dead_reason),
  cancelled: (j) => firstLine(j.cancel_reason),
  blocked: (j) => `waiting for ${j.waiting_for} of ${j.after.length}`,
  in_progress: (j) => `${j.owner ?? "?"}${j.lease_ttl === null ? " (lease expired)" : ""}`,
};

// One page of the jobs of `queue` in state `wanted` (of `task` only, when given).
export async function showList(queue, wanted, task = "", { page = 0, cursor = null } = {}) {
  if (list.queue !== queue || list.state !== wanted || list.task !== task || page === 0) {
    Object.assign(list, { queue, state: wanted, task, cursors: [null], page: 0 });
  }
  list.page = page;
  list.cursors[page] = cursor;
  for (const tab of document.querySelectorAll("#state-tabs button")) {
    tab.setAttribute("aria-pressed", String(tab.dataset.state === wanted));
  }
  document.getElementById("task-filter").value = task;
  document.getElementById("jobs-panel").hidden = false;
  const query = new URLSearchParams({ state: wanted, limit: "50" });
  if (task) query.set("task", task);
  twin("jobs-json", `${queuePath("/jobs", queue)}?${query}`);
  if (cursor) query.set("cursor", cursor);
  const reply = await api(`${queuePath("/jobs", queue)}?${query}`);
  const next = document.getElementById("jobs-next");
  const first = document.getElementById("jobs-first");
  if (!reply.ok) {
    replaceRows("jobs", [], `Could not list: ${problemText(reply.body.detail, reply.status)}`);
    next.hidden = true;
    return;
  }
  const { jobs, next_cursor: following } = reply.body;
  const note = NOTES[wanted] ?? ((j) => firstLine(j.error));
  replaceRows("jobs", jobs.map((j) => el("tr", { "data-job": j.job_id },
    el("td", {}, jobLink(queue, j.job_id)),
    el("td", {}, j.task),
    el("td", {}, `${j.attempts}${j.max_attempts ? ` / ${j.max_attempts}` : ""}`),
    el("td", {}, moment(ms(j.enqueued_at))),
    el("td", {}, moment(ms(j.finished_at))),
    el("td", { class: "reason" }, note(j)))),
  following ? "None on this page; more may follow." : `No ${wanted} jobs${task ? ` of ${task}` : ""}.`);
  document.getElementById("jobs-page").textContent = `page ${page + 1}`;
  next.hidden = !following;
  next.onclick = () => go({ queue, state: wanted, task, page: page + 1, cursor: following });
  first.hidden = page === 0;
}

// Hide the list by state.
export function hideList() {
  document.getElementById("jobs-panel").hidden = true;
  for (const tab of document.querySelectorAll("#state-tabs button")) {
    tab.setAttribute("aria-pressed", "false");
  }
}

// The counts on the state tabs, from each snapshot's summary.
export function renderTabs(summary) {
  const counts = { todo: summary.todos, delayed: summary.delayed,
    in_progress: summary.in_progress, done: summary.done, dead: summary.dead,
    cancelled: summary.cancelled, blocked: summary.blocked };
  for (const tab of document.querySelectorAll("#state-tabs button")) {
    tab.querySelector(".count").textContent = counts[tab.dataset.state];
  }
}

// What the list by state shows now: queue, state, task, page and its cursors.
export function currentList() {
  return list;
}
