// The status page's script: polls status?cluster=1 every second and redraws the tables in place.
//
// Every string from the server (queue and client names are chosen by users) goes into the page as
// textContent, never as HTML. Rates and sparklines are computed here from successive polls, using
// each task's own clock ("time" in its status) so a skewed browser clock does not distort them.
"use strict";

const POLL_MS = 1000;
const HISTORY = 60;                      // sparkline points kept per queue (one per poll)
const TOKEN_KEY = "queueserver-token";
const PHASES = ["wait_data_s", "pull_params_s", "compute_s", "push_grads_s"];

const previous = new Map();              // "task|queue" or "task" -> last counters and their time
const rateHistory = new Map();             // "task|queue" -> [{enq, deq}] rates, oldest first
let polls = 0;
let lastTasks = null;                    // the last poll's tasks, redrawn when "show internal" changes

// A token given in the address (?token=...) is moved to sessionStorage and out of the address bar.
(function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
})();


function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function num(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "";
  return Number(value).toFixed(digits);
}

function cell(field, value, text, cls = "num") {
  return el("td", {"class": cls, "data-field": field, "data-value": String(value), text: text ?? String(value)});
}

function qname(q) {
  return q.container ? `${q.container}/${q.name}` : q.name;
}

// The trainers' coordination resources (containers "coord-<scope>", "<container>-coord-<scope>"
// and the chief's lock beside them) are hidden unless "show internal" is ticked; as the CLI's --all.
function internal(r) {
  return r.container.startsWith("coord-") || r.container.includes("-coord-");
}

function showInternal() {
  return document.getElementById("show-internal").checked;
}

function visible(resources, hidden) {
  const shown = resources.filter(r => showInternal() || !internal(r));
  hidden.count += resources.length - shown.length;
  return shown;
}

function noteHidden(id, hidden, tasks, kind) {
  // A big server's status lists at most 10,000 resources of each kind: say how many it left out.
  const omitted = tasks.filter(t => t.up).reduce((n, t) => n + ((t.omitted || {})[kind] || 0), 0);
  const parts = [];
  if (hidden.count) parts.push(`${hidden.count} internal hidden (tick "show internal" to see them)`);
  if (omitted) parts.push(`${omitted} more not listed (a status lists at most 10,000 of each kind per task)`);
  const note = document.getElementById(id);
  note.hidden = parts.length === 0;
  note.textContent = parts.join("; ");
}

function containerCell(r) {
  return el("td", {"class": "muted", "data-field": "container", "data-value": r.container, text: r.container || "''"});
}

function rate(key, now, counters) {
  // Per-second rates of each counter since the last poll of the same key (null on the first).
  const before = previous.get(key);
  previous.set(key, {now, counters});
  if (!before || now <= before.now) return null;
  const dt = now - before.now;
  const out = {};
  for (const [name, value] of Object.entries(counters)) out[name] = Math.max(0, (value - before.counters[name]) / dt);
  return out;
}

function sparkline(points) {
  const w = 150, h = 26, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("data-points", String(points.length));
  const top = Math.max(1, ...points.map(p => Math.max(p.enq, p.deq)));
  for (const series of ["enq", "deq"]) {
    const line = document.createElementNS(ns, "polyline");
    // Until a minute of points has come in, the ones there are spread over the whole width.
    const step = w / Math.max(1, Math.min(HISTORY, points.length) - 1);
    const offset = points.length > 1 ? 0 : w;
    line.setAttribute("points", points.map((p, i) =>
      `${(offset + i * step).toFixed(1)},${(h - 2 - (p[series] / top) * (h - 4)).toFixed(1)}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("class", series);
    svg.append(line);
  }
  const title = document.createElementNS(ns, "title");
  title.textContent = `elements/s, blue: enqueued, orange: dequeued (peak ${top.toFixed(0)})`;
  svg.append(title);
  return svg;
}

function gauge(size, capacity) {
  const frac = capacity ? size / capacity : 0;
  const fill = el("div", {"class": "fill" + (frac >= 1 ? " full" : frac >= 0.8 ? " high" : "")});
  fill.style.width = `${Math.min(100, frac * 100).toFixed(1)}%`;
  return el("div", {"class": "gauge", "data-fraction": frac.toFixed(4), title: `${size} of ${capacity}`},
            fill, el("div", {"class": "label", text: `${(frac * 100).toFixed(0)}%`}));
}

function replaceRows(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
}

function renderTasks(tasks) {
  replaceRows("tasks", tasks.map(t => {
    const io = t.up ? rate(t.task, t.time, {in: t.bytes_in || 0, out: t.bytes_out || 0}) : null;
    return el("tr", {"data-key": t.task},
      el("td", {text: t.task}),
      el("td", {"data-field": "up", "data-value": String(t.up)},
         el("span", {"class": "badge " + (t.up ? "up" : "down"), text: t.up ? "up" : "down"}),
         t.up ? "" : el("span", {"class": "muted", text: " " + (t.error || "")})),
      cell("uptime_s", t.uptime_s ?? "", t.up ? `${num(t.uptime_s)} s` : ""),
      cell("connections", t.connections ?? "", t.up ? String(t.connections) : ""),
      cell("in_bytes_per_s", io ? io.in : "", io && t.metrics ? num(io.in / 1e6, 1) : ""),
      cell("out_bytes_per_s", io ? io.out : "", io && t.metrics ? num(io.out / 1e6, 1) : ""),
      el("td", {"class": "muted", text: t.version || ""}));
  }));
}

function renderQueues(tasks) {
  const rows = [];
  const hidden = {count: 0};
  for (const t of tasks.filter(t => t.up)) {
    for (const q of visible(t.queues, hidden)) {
      const key = `${t.task}|${qname(q)}`;
      const r = rate(key, t.time, {enq: q.enqueued, deq: q.dequeued});
      const points = rateHistory.get(key) || [];
      if (r) {
        points.push(r);
        if (points.length > HISTORY) points.shift();
      }
      rateHistory.set(key, points);
      rows.push(el("tr", {"data-key": key, "data-queue": q.name, "data-container": q.container, "data-task": t.task},
        containerCell(q),
        el("td", {"data-field": "name", "data-value": q.name}, q.name,
           q.closed ? el("span", {"class": "badge closed", text: " closed"}) : ""),
        el("td", {"class": "muted", text: t.task}),
        el("td", {text: q.type}),
        el("td", {"data-field": "fraction_full", "data-value": String(q.fraction_full)}, gauge(q.size, q.capacity)),
        cell("size", q.size),
        cell("capacity", q.capacity),
        cell("enqueue_rate", r ? r.enq : "", r ? num(r.enq) : "…"),
        cell("dequeue_rate", r ? r.deq : "", r ? num(r.deq) : "…"),
        cell("waiting", `${q.waiting_enqueues}/${q.waiting_dequeues}`),
        cell("blocked_s", `${q.enqueue_blocked_s}/${q.dequeue_blocked_s}`,
             `${num(q.enqueue_blocked_s, 1)} / ${num(q.dequeue_blocked_s, 1)}`),
        cell("enqueued", q.enqueued),
        cell("dequeued", q.dequeued),
        el("td", {"data-field": "sparkline"}, sparkline(points))));
    }
  }
  replaceRows("queues", rows);
  document.getElementById("no-queues").hidden = rows.length > 0;
  noteHidden("queues-hidden", hidden, tasks, "queues");
}

function split(figures) {
  const parts = PHASES.filter(p => typeof figures[p] === "number" && figures[p] > 0);
  if (!parts.length) return "";
  const total = parts.reduce((sum, p) => sum + figures[p], 0);
  const bar = el("div", {"class": "split"});
  for (const p of parts) {
    const share = figures[p] / total;
    const seg = el("span", {"class": `phase-${p}`, "data-phase": p, "data-share": share.toFixed(4),
                            title: `${p}: ${(figures[p] * 1000).toFixed(1)} ms per step (${(share * 100).toFixed(0)}%)`});
    seg.style.width = `${(share * 100).toFixed(2)}%`;
    bar.append(seg);
  }
  const words = {wait_data_s: "data", pull_params_s: "pull", compute_s: "compute", push_grads_s: "push"};
  const legend = el("div", {"class": "split-text muted",
                            text: parts.map(p => `${words[p]} ${(figures[p] / total * 100).toFixed(0)}%`).join(" · ")});
  return el("div", {"class": "split-cell"}, bar, legend);
}

function renderClients(tasks) {
  const rows = [];
  for (const t of tasks.filter(t => t.up)) {
    for (const c of t.clients || []) {
      const report = c.report;
      const figures = report ? report.figures : {};
      const shown = Object.entries(figures).filter(([k]) => !PHASES.includes(k));
      const blocked = c.blocked.map(b => b.queue
        ? `${b.op} ${b.queue}${b.for_s ? ` (${num(b.for_s, 1)} s)` : ""}` : b.op).join(", ");
      rows.push(el("tr", {"data-client": c.client, "data-task": t.task, "data-role": report ? report.role : ""},
        el("td", {text: c.client}),
        el("td", {"class": "muted", text: t.task}),
        el("td", {"data-field": "role", text: report ? report.role : ""}),
        el("td", {"class": "figures", "data-field": "figures"},
           ...shown.map(([k, v]) => el("span", {"data-figure": k, "data-value": String(v),
                                               text: `${k} ${Number.isInteger(v) ? v : Number(v).toPrecision(4)}`}))),
        el("td", {"data-field": "split"}, split(figures)),
        el("td", {"data-field": "blocked", "data-value": String(c.blocked.length), text: blocked}),
        el("td", {"class": "num muted", text: report ? `${num(report.age_s, 1)} s` : ""})));
    }
  }
  replaceRows("clients", rows);
}

function age(now, then) {
  if (then === null || then === undefined) return "never";
  const s = Math.max(0, now - then);
  return s < 120 ? `${s.toFixed(1)} s ago` : s < 7200 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}

function renderVariables(tasks) {
  const rows = [];
  const hidden = {count: 0};
  for (const t of tasks.filter(t => t.up)) {
    for (const v of visible(t.variables, hidden)) {
      rows.push(el("tr", {"data-key": `${t.task}|${qname(v)}`, "data-variable": v.name, "data-container": v.container},
        containerCell(v),
        el("td", {"data-field": "name", "data-value": v.name, text: v.name}),
        el("td", {"class": "muted", text: t.task}),
        el("td", {text: v.dtype}),
        el("td", {text: `[${v.shape.join(", ")}]`}),
        cell("nbytes", v.nbytes),
        cell("reads", v.reads),
        cell("updates", v.updates),
        el("td", {"data-field": "updated_at", "data-value": String(v.updated_at), text: age(t.time, v.updated_at)})));
    }
  }
  replaceRows("variables", rows);
  noteHidden("variables-hidden", hidden, tasks, "variables");
}

function renderAccumulators(tasks) {
  const rows = [];
  const hidden = {count: 0};
  for (const t of tasks.filter(t => t.up)) {
    for (const a of visible(t.accumulators || [], hidden)) {
      rows.push(el("tr", {"data-key": `${t.task}|${qname(a)}`, "data-accumulator": a.name, "data-container": a.container},
        containerCell(a), el("td", {"data-field": "name", "data-value": a.name, text: a.name}),
        el("td", {"class": "muted", text: t.task}),
        el("td", {text: `[${a.shape.join(", ")}]`}), cell("accumulated", a.accumulated),
        cell("global_step", a.global_step), cell("applied", a.applied), cell("dropped_stale", a.dropped_stale)));
    }
  }
  replaceRows("accumulators", rows);
  document.getElementById("no-accumulators").hidden = rows.length > 0;
  noteHidden("accumulators-hidden", hidden, tasks, "accumulators");
}

function showLogin(message) {
  // Nothing of the server's state stays on the page without the token.
  document.getElementById("content").hidden = true;
  for (const body of document.querySelectorAll("#content tbody")) body.replaceChildren();
  previous.clear();
  rateHistory.clear();
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("task").textContent = "";
}

async function poll() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? {"Authorization": `Bearer ${token}`} : {};
  try {
    const response = await fetch("status?cluster=1", {headers, cache: "no-store"});
    if (response.status === 401) {
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      showLogin(token ? "That token was refused." : "");
      return;  // polling resumes when a token is entered
    }
    if (!response.ok) throw new Error(`status ${response.status}`);
    const status = await response.json();
    const tasks = status.cluster || [{up: true, ...status}];
    lastTasks = tasks;
    document.getElementById("login").hidden = true;
    document.getElementById("content").hidden = false;
    document.getElementById("task").textContent = `${status.task} · version ${status.version}`;
    renderTasks(tasks);
    renderQueues(tasks);
    renderClients(tasks);
    renderVariables(tasks);
    renderAccumulators(tasks);
    polls += 1;
    document.body.dataset.polls = String(polls);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.getElementById("error").textContent = "";
  } catch (err) {
    document.getElementById("error").textContent = `cannot reach the server: ${err.message}`;
  }
  setTimeout(poll, POLL_MS);
}

document.getElementById("login").addEventListener("submit", event => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
  document.getElementById("token").value = "";
  poll();
});

document.getElementById("show-internal").addEventListener("change", () => {
  if (!lastTasks) return;
  // Redrawn from the last poll; the rates of rows shown again restart at the next poll.
  renderQueues(lastTasks);
  renderVariables(lastTasks);
  renderAccumulators(lastTasks);
});

poll();
