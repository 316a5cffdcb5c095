// Live worker pools (GET /api/workers), and the job types that have waiting jobs but no live
// worker serving them. On the Workers page (/dashboard/workers) it fills the pools' table; on
// every page that has an #unserved element (the dashboard too) it flags those types, and marks
// their rows in the dashboard's "Jobs by type" table. Pools are not on the job event stream,
// so it polls every POLL_MS while the page is visible.
import { $, ago, api, el, everyWhileVisible } from "./common.js";

const POLL_MS = 2000;

const table = $("#workers");
const unserved = $("#unserved");
const connection = $("#connection");

function typeLink(jobType) {
  const link = el("a", { href: `/dashboard?job_type=${encodeURIComponent(jobType)}` }, jobType);
  link.dataset.jobType = jobType;
  return link;
}

function renderUnserved(types) {
  const wanted = types.join("\n");
  if (unserved.dataset.types === wanted) return; // unchanged: the alert is not announced again
  unserved.dataset.types = wanted;
  unserved.hidden = types.length === 0;
  const links = types.flatMap((type, i) => (i ? [", ", typeLink(type)] : [typeLink(type)]));
  unserved.replaceChildren(
    `No live worker serves ${types.length === 1 ? "job type" : "job types"} `,
    ...links,
    ": their waiting jobs will not start.",
  );
}

// The dashboard's own type rows (built by dashboard.js) get a badge while their type is unserved.
function markTypeRows(types) {
  for (const row of document.querySelectorAll("#type-counts tbody tr[data-job-type]")) {
    const flagged = types.includes(row.dataset.jobType);
    const badge = row.querySelector(".unserved-badge");
    if (flagged && !badge) row.cells[0].append(el("span", { className: "unserved-badge" }, "no live worker"));
    if (!flagged && badge) badge.remove();
    row.dataset.unserved = String(flagged);
  }
}

function heldCell(worker) {
  const cell = el("td", { className: "held" }, String(worker.held_jobs));
  if (worker.held_job_ids.length) {
    cell.append(": ");
    for (const id of worker.held_job_ids) {
      cell.append(el("a", { href: `/dashboard/jobs/${encodeURIComponent(id)}`, className: "mono", title: id }, id.slice(0, 8)));
    }
    if (worker.held_jobs > worker.held_job_ids.length) cell.append(`and ${worker.held_jobs - worker.held_job_ids.length} more`);
  }
  return cell;
}

function renderWorkers(workers) {
  table.querySelector("tbody").replaceChildren(
    ...workers.map((worker) =>
      el(
        "tr",
        { dataset: { workerId: worker.id } },
        el("th", { scope: "row", className: "mono" }, worker.id),
        el("td", {}, worker.host),
        el("td", { className: "num" }, String(worker.pid)),
        el("td", { className: "types" }, worker.job_types.join(", ")),
        el("td", { className: "num" }, String(worker.concurrency)),
        el("td", {}, ago(worker.started_at)),
        el("td", { className: "heartbeat" }, ago(worker.heartbeat_at)),
        heldCell(worker),
      ),
    ),
  );
  $("#workers-empty").hidden = workers.length > 0;
  table.hidden = workers.length === 0;
}

async function refresh() {
  try {
    const { items, unserved_types: types } = await api("/api/workers");
    if (table) renderWorkers(items);
    renderUnserved(types);
    markTypeRows(types);
    if (table) {
      connection.dataset.state = "live";
      connection.textContent = `updated ${new Date().toLocaleTimeString()}`;
    }
  } catch (error) {
    if (table) {
      connection.dataset.state = "reconnecting";
      connection.textContent = `could not load the workers: ${error.message}`;
    }
  }
}

everyWhileVisible(refresh, POLL_MS);
