// The status page of `chassis serve`: polls the service's JSON routes
// (v1/swarms, v1/audit and, on a worker of a NATS fleet, v1/fleet) and
// renders them. Every value from the server is
// put in the page as a text node or an attribute value, never as markup,
// and control and bidirectional characters are shown as escapes: guest
// text (error messages, names) is shown, not run.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `value` as safe, bounded text: unsafe characters as \u{..} escapes. */
function shown(value, max = 240) {
  let text = typeof value === "string" ? value : JSON.stringify(value);
  if (text === undefined) text = String(value);
  text = text.replace(UNSAFE, (c) => "\\u{" + c.codePointAt(0).toString(16) + "}");
  return text.length > max ? text.slice(0, max) + "…" : text;
}

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== undefined && c !== null) e.append(c);
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function badge(text, cls) {
  return el("span", { class: "badge " + (cls || "") }, text);
}

function num(x, digits) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–";
}

/**
 * A small line chart of `values` (oldest first) between 0 and `top`, with
 * a dashed line at `target` and a red dot on each index in `marks`.
 */
function chart(values, top, target, marks, label) {
  const w = 180, h = 40, pad = 3;
  const s = svg("svg", { class: "chart", width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" });
  s.append(Object.assign(svg("title", {}), { textContent: label }));
  const x = (i) => pad + (values.length < 2 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (values.length - 1));
  const y = (v) => h - pad - (Math.min(v, top) / top) * (h - 2 * pad);
  if (target !== null && target <= top) {
    s.append(svg("line", { class: "target", x1: 0, x2: w, y1: y(target), y2: y(target) }));
  }
  if (values.length > 0) {
    const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    s.append(svg("polyline", { points: values.length === 1 ? `${pad},${y(values[0])} ${w - pad},${y(values[0])}` : pts }));
  }
  for (const i of marks) s.append(svg("circle", { class: "failed", cx: x(i), cy: y(values[i]), r: 2.5 }));
  return s;
}

/** A budget's figure in its unit: seconds, bytes or tasks. */
function budgetFigure(kind, v) {
  if (kind === "cpu_seconds") return `${num(v, 1)} s`;
  if (kind === "network_bytes") return v >= 1048576 ? `${num(v / 1048576, 1)} MiB` : `${num(v, 0)} B`;
  return num(v, 0);
}

/** What a swarm's budgets have left this period, and when they renew. */
function budgetLines(budgets) {
  return (budgets || []).map((b) => {
    const left = Math.max(0, (b.limit || 0) - (b.spent || 0));
    const mins = Math.max(0, Math.ceil(((b.renews_at_ms || 0) - Date.now()) / 60000));
    const spent = left <= 0;
    return el("div", { class: "small" + (spent ? "" : " muted"), "data-budget": shown(b.budget, 40) },
      spent ? badge("budget spent", "bad") : "",
      ` ${shown(b.budget, 40)}: ${budgetFigure(b.budget, left)} of ${budgetFigure(b.budget, b.limit)} left, renews in ${mins} min`);
  });
}

/** What the governor's throttle does to a swarm: its slots, its circuit. */
function throttleLines(t) {
  if (!t) return [];
  const lines = [];
  if (t.concurrency < t.max_concurrency) {
    lines.push(el("div", { class: "small", "data-throttle": "concurrency" },
      badge("throttled", "warn"), ` to ${num(t.concurrency, 0)} of ${num(t.max_concurrency, 0)} slots`));
  }
  if (t.circuit && t.circuit !== "closed") {
    const open = t.circuit === "open";
    const when = open && typeof t.probe_in_ms === "number" ? `, probe in ${num(Math.ceil(t.probe_in_ms / 1000), 0)} s` : "";
    lines.push(el("div", { class: "small", "data-circuit": shown(t.circuit, 16) },
      badge(open ? "circuit open" : "circuit half open", "bad"),
      ` ${num(t.openings, 0)} opening${t.openings === 1 ? "" : "s"}${when}`));
  }
  return lines;
}

const SLO_TEXT = {
  response_time: (c) => `p95 ${num(c.actual, 1)} ms (≤ ${c.target})`,
  error_rate: (c) => `errors ${num(c.actual, 1)} % (≤ ${c.target})`,
  availability: (c) => `up ${num(c.actual, 2)} % (≥ ${c.target})`,
};

function swarmRow(s) {
  const rep = s.reputation || {};
  const slo = s.slo || {};
  const checks = slo.compliance || [];
  const missed = checks.filter((c) => !c.compliant);
  const bad = s.quarantined || missed.length > 0;
  const usage = s.usage || {};
  const limits = s.resource_limits || {};
  const recent = s.recent || { tasks: [], reputation: [] };

  const tasks = recent.tasks.map((t) => t.wall_ms);
  const target = (s.slo_targets || {}).response_time_p95_ms ?? null;
  const top = Math.max(1, ...tasks, target ? target * 1.2 : 0);
  const failed = recent.tasks.flatMap((t, i) => (t.ok ? [] : [i]));
  const latency = chart(tasks, top, target, failed,
    `latency of the latest ${tasks.length} tasks, ms; dashed: the p95 target`);

  const scores = recent.reputation.map((p) => p.score);
  if (typeof rep.score === "number") scores.push(rep.score);
  const first = scores.length > 0 ? scores[0] : rep.score;
  const trend = rep.score > first + 0.005 ? ["▲", "trend-up"] : rep.score < first - 0.005 ? ["▼", "trend-down"] : ["▬", "muted"];
  const repChart = chart(scores, 1, rep.threshold ?? null, [],
    "reputation after each recent move; dashed: the quarantine threshold");

  const circuit = (usage.throttle || {}).circuit || "closed";
  const state = s.quarantined
    ? el("div", {}, badge("quarantined", "bad"), el("div", { class: "small reason" }, shown(rep.quarantine_reason || "", 400)))
    : circuit !== "closed" ? badge(circuit === "open" ? "circuit open" : "probing", "bad")
    : missed.length > 0 ? badge("SLO missed", "bad") : badge("serving", "ok");

  return el("tr", { "data-swarm": shown(s.swarm_id, 80), class: "swarm" + (bad ? " bad" : " ok") + (s.quarantined ? " quarantined" : "") },
    el("td", {},
      el("div", { class: "name" }, shown(s.swarm_id)),
      el("div", { class: "small muted" }, `v${shown(s.version || "?")} · `, el("span", { class: "mono", title: shown(s.digest || "") }, shown((s.digest || "").slice(0, 12)))),
      el("div", { class: "small muted" }, shown((s.task_types || []).join(", "), 160))),
    el("td", { class: "nowrap" },
      el("div", {}, `${slo.tasks ?? 0} task${slo.tasks === 1 ? "" : "s"}`),
      el("div", { class: "small muted" }, `${slo.failed ?? 0} failed`)),
    el("td", { class: "nowrap" },
      el("div", {}, `${usage.tasks_running ?? 0} / ${(usage.throttle || {}).concurrency ?? limits.max_concurrent_tasks ?? "?"} in use`),
      el("div", { class: "small muted" }, `${usage.tasks_queued ?? 0} queued`),
      ...throttleLines(usage.throttle),
      ...budgetLines(usage.budgets)),
    el("td", { class: "slo" }, ...checks.map((c) =>
      el("div", {}, badge((SLO_TEXT[c.metric] || ((c) => `${c.metric} ${c.actual}`))(c), c.compliant ? "ok" : "bad")))),
    el("td", {}, latency, el("div", { class: "small muted" }, `p50 ${num(slo.p50_ms, 1)} · p99 ${num(slo.p99_ms, 1)} ms`)),
    el("td", {},
      el("div", {}, el("span", { class: "score" }, num(rep.score, 2)), " ", el("span", { class: trend[1] }, trend[0]),
        el("span", { class: "small muted" }, ` quarantine under ${num(rep.threshold, 2)}`)),
      repChart),
    el("td", { class: "state" }, state));
}

const BAD_OPS = /denied|violation|exceeded|failed|quarantined|rejected|abandoned|rate_limited|circuit_changed/;
const WARN_OPS = /redacted|repeated|released|unloaded|replaced|concurrency_changed/;

function details(params) {
  if (params === undefined || params === null) return "";
  if (typeof params !== "object") return shown(params);
  // Figures to three decimals for reading; /v1/audit has them whole.
  const figure = (v) => (typeof v === "number" && !Number.isInteger(v) ? +v.toFixed(3) : v);
  return Object.entries(params).map(([k, v]) => `${shown(k, 40)}=${shown(figure(v), 500)}`).join("  ");
}

function eventRow(r) {
  const op = typeof r.operation === "string" ? r.operation : "";
  const cls = BAD_OPS.test(op) ? "bad" : WARN_OPS.test(op) ? "warn" : "";
  const full = details(r.params);
  return el("tr", { "data-seq": String(r.seq), "data-operation": shown(op, 64), class: cls },
    el("td", { class: "mono" }, String(r.seq)),
    el("td", { class: "mono small nowrap", title: shown(r.ts || "", 40) }, shown(r.ts || "", 40).replace("T", " ").replace(/(\.\d{3})\d*Z$/, "$1")),
    el("td", {}, shown(r.swarm_id ?? "", 80)),
    el("td", { class: "op" }, shown(op, 64)),
    el("td", { class: "mono small" }, shown(r.task_id ?? "", 80)),
    el("td", { class: "details small", title: full.length > 1000 ? full.slice(0, 4000) : null }, full.length > 1000 ? full.slice(0, 1000) + "…" : full));
}

function renderAudit(a) {
  const dl = document.getElementById("audit-summary");
  const rows = [];
  if (!a.enabled) {
    rows.push(["log", badge("off", "warn")], ["", "chassis serve runs without an audit log ([audit] path)."]);
  } else {
    rows.push(["health", a.healthy ? badge("healthy", "ok") : badge("failing", "bad")]);
    if (a.failure) rows.push(["failure", shown(a.failure, 400)]);
    rows.push(["chain head", a.head
      ? el("span", { class: "mono" }, `${shown(a.head.seq, 24)}:${shown(a.head.hash, 80)}`)
      : a.chain === "linked" ? "empty log" : "unknown (the last line is not a record)"]);
    rows.push(["chain (tail)", a.chain === "linked"
      ? el("span", {}, badge("linked", "ok"), ` over the last ${a.scanned_bytes} bytes`)
      : el("span", {}, badge("broken", "bad"), " " + shown(a.chain, 300))]);
  }
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  dl.dataset.healthy = a.enabled && a.healthy ? "true" : "false";

  const body = document.querySelector("#events tbody");
  const records = a.records || [];
  body.replaceChildren(...records.map(eventRow));
  document.getElementById("no-events").hidden = records.length > 0;
}

function renderSwarms(list) {
  const body = document.querySelector("#swarms tbody");
  body.replaceChildren(...list.map(swarmRow));
  document.getElementById("no-swarms").hidden = list.length > 0;
  // The filter's choices, rebuilt only when the swarms change (not under
  // an operator who has the list open).
  const select = document.getElementById("swarm-filter");
  const chosen = select.value;
  const ids = list.map((s) => String(s.swarm_id));
  if (chosen && !ids.includes(chosen)) ids.push(chosen);
  const now = ids.join("\n");
  if (select.dataset.ids !== now) {
    select.replaceChildren(el("option", { value: "" }, "every swarm"),
      ...ids.map((id) => el("option", { value: id }, shown(id, 80))));
    select.value = chosen;
    select.dataset.ids = now;
  }
}

function deploymentRow(d) {
  const names = (list) => (list || []).map((w) => shown(w, 64)).join(", ");
  const parts = [];
  if ((d.serving || []).length) parts.push(`serving on ${names(d.serving)}`);
  if ((d.undeployed || []).length) parts.push(`unloaded on ${names(d.undeployed)}`);
  if ((d.not_placed || []).length) parts.push(`not placed on ${names(d.not_placed)}`);
  if ((d.shadowed || []).length) parts.push(`a local contract file takes its place on ${names(d.shadowed)}`);
  if ((d.pending || []).length) parts.push(`pending on ${names(d.pending)}`);
  const refused = (d.refused || []).map(([w, why]) => el("div", { class: "small reason" }, `refused on ${shown(w, 64)}: ${shown(why, 400)}`));
  const bundle = d.bundle ? shown(d.bundle).slice(0, 12) : "";
  return el("tr", { "data-deployment": shown(d.swarm_id, 80), class: d.converged ? "ok" : "bad" },
    el("td", {}, el("div", { class: "name" }, shown(d.swarm_id)),
      el("div", { class: "small muted" }, d.action === "undeploy" ? "undeployed" : `v${shown(d.version || "?")}`)),
    el("td", {}, el("span", { class: "mono", title: shown(d.bundle || "") }, bundle),
      el("div", { class: "small muted" }, `${shown(d.action)} · generation ${shown(d.generation)}`)),
    el("td", { class: "mono small", title: shown(d.deployer || "") }, shown(d.deployer || "").slice(0, 12)),
    el("td", {}, d.converged ? badge("converged", "ok") : badge("not converged", "bad"),
      el("div", { class: "small muted" }, parts.join("; ")), ...refused));
}

function workerRow(w) {
  const swarms = (w.swarms || []).map((s) => el("div", { class: "small" },
    `${shown(s.swarm_id, 80)} v${shown(s.version, 40)} · ${shown(s.free_slots)}/${shown(s.slots)} free`,
    s.bundle ? el("span", { class: "muted mono" }, ` · deployed ${shown(s.bundle).slice(0, 12)}`) : "",
    s.quarantined ? badge("quarantined", "bad") : ""));
  return el("tr", { "data-worker": shown(w.worker, 80) },
    el("td", {}, el("div", { class: "name" }, shown(w.worker, 80)),
      el("div", { class: "small muted" }, w.deployments ? "serves deployments" : "contract files only")),
    el("td", { class: "small" }, (w.labels || []).map((l) => shown(l, 64)).join(", ")),
    el("td", {}, ...swarms));
}

function renderFleet(fleet) {
  const section = document.getElementById("fleet");
  section.hidden = false;
  const deployments = fleet.deployments || [];
  document.querySelector("#deployments tbody").replaceChildren(...deployments.map(deploymentRow));
  document.getElementById("deployments").hidden = deployments.length === 0;
  document.querySelector("#workers tbody").replaceChildren(...(fleet.workers || []).map(workerRow));
}

// Whether this server is a worker of a fleet: asked until it says 404.
let fleetKnown = true;

async function refreshFleet() {
  if (!fleetKnown) return;
  const error = document.getElementById("fleet-error");
  try {
    const response = await fetch("v1/fleet", {
      headers: { accept: "application/json" },
      cache: "no-store",
      signal: AbortSignal.timeout(10000),
    });
    if (response.status === 404) {
      fleetKnown = false;
      return;
    }
    if (!response.ok) throw new Error(`v1/fleet: HTTP ${response.status}`);
    renderFleet(await response.json());
    error.hidden = true;
  } catch (e) {
    error.hidden = false;
    error.textContent = shown(String(e), 300);
  }
}

async function getJSON(url) {
  const response = await fetch(url, {
    headers: { accept: "application/json" },
    cache: "no-store",
    signal: AbortSignal.timeout(10000),
  });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function auditUrl() {
  const q = new URLSearchParams({ limit: "50" });
  const swarm = document.getElementById("swarm-filter").value;
  if (swarm) q.set("swarm_id", swarm);
  q.set("operations", document.getElementById("all-records").checked ? "all" : "notable");
  return "v1/audit?" + q;
}

let timer = null;
// Each refresh's number: an answer to an older one (a filter changed
// while it was on its way) is dropped.
let generation = 0;

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const connection = document.getElementById("connection");
  try {
    const [swarms, audit] = await Promise.all([getJSON("v1/swarms"), getJSON(auditUrl()), refreshFleet()]);
    if (mine !== generation) return;
    renderSwarms(swarms.swarms || []);
    renderAudit(audit);
    document.body.dataset.state = "live";
    connection.textContent = "live";
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (mine !== generation) return;
    document.body.dataset.state = "error";
    connection.textContent = "no answer from the server";
    connection.title = shown(String(e), 300);
  } finally {
    if (mine === generation) timer = setTimeout(refresh, POLL_MS);
  }
}

document.getElementById("swarm-filter").addEventListener("change", refresh);
document.getElementById("all-records").addEventListener("change", refresh);
document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
refresh();
