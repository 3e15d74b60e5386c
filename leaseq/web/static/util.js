// What every part of the dashboard shares: building DOM nodes (never innerHTML: job ids,
// task names and reasons are user data), formatting times, calling the API, the toast,
// and the banner shown while Redis does not answer.

export const state = {
  selected: null,     // the queue shown
  serverOffset: 0,    // Redis's clock minus the browser's, from the latest snapshot (ms)
  lastAnswer: null,   // the browser's time (ms) Redis last answered a read of the page
  outage: null,       // why Redis does not answer, while it does not
};

// An HTML element: attributes (on* ones become listeners; false and null are left out)
// and children (strings become text nodes, so user data is never parsed as markup).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

// An SVG element, as el() makes HTML ones.
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A duration for people: "850 ms", "12.5 s", "3 min 20 s", "2 h 5 min", "3 days".
export function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  if (value < 172800) return `${Math.floor(value / 3600)} h ${Math.round((value % 3600) / 60)} min`;
  return `${Math.floor(value / 86400)} days`;
}

// Redis's clock now, as the page best knows it.
export function serverNow() {
  return Date.now() + state.serverOffset;
}

// "12.5 s ago" (or "in 3 s") for a moment in Redis ms.
export function ago(ms, nowMs = serverNow()) {
  if (ms === null || ms === undefined) return "never";
  const delta = (nowMs - ms) / 1000;
  return delta >= 0 ? `${seconds(delta)} ago` : `in ${seconds(-delta)}`;
}

const two = (n) => String(n).padStart(2, "0");

// A moment in the browser's local time: "2026-11-30 14:03:07".
export function localTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

// A <time> in local time with its age by Redis's clock; the title says it in UTC.
export function moment(ms, nowMs = serverNow()) {
  if (ms === null || ms === undefined) return el("span", { class: "muted" }, "–");
  const iso = new Date(ms).toISOString();
  return el("time", { datetime: iso, title: iso.replace("T", " ").slice(0, 23) + " UTC" },
    `${localTime(ms)} `, el("span", { class: "muted" }, `(${ago(ms, nowMs)})`));
}

// A problem body's detail in one line: refused input comes as a list of what was wrong.
export function problemText(detail, status) {
  if (detail === undefined || detail === null) return `HTTP ${status}`;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => {
      const where = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body").join(".") : "";
      return where ? `${where}: ${e.msg}` : String(e.msg ?? JSON.stringify(e));
    }).join("; ");
  }
  return JSON.stringify(detail);
}

// Redis answered (a snapshot or a read): the banner goes.
export function redisAnswered() {
  state.lastAnswer = Date.now();
  state.outage = null;
  renderBanner();
}

// Redis did not answer: the banner says why.
export function redisFailed(detail) {
  state.outage = detail || "Redis does not answer";
  renderBanner();
}

// The banner as the outage stands: hidden, or the reason and when Redis last answered.
// It is an alert (read out when it appears); the age that ticks every second is hidden
// from screen readers, so they do not read it out again and again.
export function renderBanner() {
  const banner = document.getElementById("banner");
  if (state.outage === null) {
    banner.hidden = true;
    banner.replaceChildren();
    return;
  }
  const reason = document.getElementById("banner-reason");
  if (banner.hidden || !reason || reason.textContent !== state.outage) {
    const since = state.lastAnswer === null
      ? "It has not answered since this page was opened"
      : `It last answered at ${localTime(state.lastAnswer)}`;
    banner.replaceChildren(
      el("strong", {}, "Redis is not answering. "),
      el("span", { id: "banner-reason" }, state.outage), " ",
      el("span", { id: "banner-since" }, since,
        el("span", { id: "banner-age", "aria-hidden": "true" }), "."),
      " The page goes on trying; what it shows is as of then.");
    banner.hidden = false;
  }
  const age = document.getElementById("banner-age");
  if (state.lastAnswer !== null) {
    age.textContent = ` (${seconds((Date.now() - state.lastAnswer) / 1000)} ago)`;
  }
}

// GET or POST the API; resolves to {ok, status, body}. A 503 (Redis down) shows the
// banner, a success clears it; a network failure is status 0.
export async function api(path, { method = "GET", body } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    return { ok: false, status: 0, body: { detail: `the dashboard does not answer: ${error}` } };
  }
  const reply = await response.json().catch(() => ({}));
  // Only a success proves Redis answered (a 422 may be refused before any Redis call).
  if (response.status === 503) redisFailed(problemText(reply.detail, 503));
  else if (response.ok) redisAnswered();
  return { ok: response.ok, status: response.status, body: reply };
}

// A short message in the corner, gone after 4 s (a status region: screen readers say it).
export function toast(message, bad = false) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.className = bad ? "bad" : "";
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 4000);
}

// Resolves to the reply on success, null on failure (said in a toast either way). A
// reply with a count says how many jobs moved; others (pause, resume) just what happened.
export async function act(path, body, what) {
  const reply = await api(path, { method: "POST", body });
  if (!reply.ok) {
    toast(`${what} failed: ${problemText(reply.body.detail, reply.status)}`, true);
    return null;
  }
  toast(typeof reply.body.count === "number" ? `${what}: ${reply.body.count} job(s)` : what);
  return reply.body;
}

// An API path under a queue (the shown one by default).
export function queuePath(suffix, name = state.selected) {
  return `/queues/${encodeURIComponent(name)}${suffix}`;
}

// A table's body replaced by rows, or by one row saying `empty` when there are none.
export function replaceRows(table, rows, empty) {
  const body = document.querySelector(`#${table} tbody`);
  if (rows.length === 0 && empty) {
    const columns = document.querySelectorAll(`#${table} thead th`).length;
    rows = [el("tr", { class: "empty" }, el("td", { colspan: columns, class: "muted" }, empty))];
  }
  body.replaceChildren(...rows);
}

// The page's place, kept in the URL's fragment: #queue=NAME[&job=ID|&state=S[&task=T]|
// &search=PREFIX]. Each has its JSON twin in the API (see routeTwin).
export function readRoute() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return Object.fromEntries(params.entries());
}

// Move to a place on the page (a new history entry unless `replace`); the hashchange
// listener shows it.
export function go(route, { replace = false } = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(route)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const hash = `#${params.toString()}`;
  if (hash === location.hash) return;
  if (replace) {
    history.replaceState(null, "", hash);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = hash;
  }
}

// A button that reads as a link: opens a job's view (a list or search shown stays).
export function jobLink(queue, jobId) {
  return el("button", {
    type: "button", class: "link id", title: `Open job ${jobId}`,
    onclick: () => {
      const route = readRoute();
      go(route.queue === queue ? { ...route, job: jobId } : { queue, job: jobId });
    },
  }, jobId);
}

// The first line of a text, for table cells (the job view shows all of it).
export function firstLine(text) {
  if (!text) return "";
  const line = String(text).split("\n")[0];
  return line.length > 160 ? `${line.slice(0, 157)}…` : line;
}
