// The Charts page (/dashboard/charts): throughput and wait/run time percentiles, drawn as
// hand-written SVG with the figures in a table beside each chart (the text alternative).
//
// Throughput is counted from the live event stream (/api/events): one bucket per second for
// the last WINDOW_SECONDS, keyed by the event's own time. The percentiles come from
// GET /api/stats/timings, read again when jobs finish (coalesced) and every TIMINGS_MS.
import { $, api, duration, el, everyWhileVisible, svg } from "./common.js";

const WINDOW_SECONDS = 300;
const SPANS = [10, 60, 300]; // the table's columns, in seconds
const SERIES = [
  ["enqueued", "created"], // series name, the event kind counted
  ["completed", "completed"],
  ["failed", "failed"],
];
const TERMINAL_KINDS = ["completed", "failed", "cancelled"];
const DRAW_MS = 1000; // the chart slides once a second even when nothing happens
const DRAW_DELAY_MS = 100;
const TIMINGS_MS = 10000;
const TIMINGS_DELAY_MS = 1000;
const PERCENTILES = ["p50", "p95", "p99"];

// -- throughput ------------------------------------------------------------------------------

// Epoch second -> {enqueued, completed, failed}.
const buckets = new Map();
let lastEventId = 0;

const nowSecond = () => Math.floor(Date.now() / 1000);

function count(message) {
  // EventSource resends Last-Event-ID on reconnect, so nothing is replayed twice; this guards
  // against counting an event again should the server replay from an older id.
  const id = Number(message.lastEventId);
  if (id && id <= lastEventId) return;
  if (id) lastEventId = id;
  const event = JSON.parse(message.data);
  const series = SERIES.find(([, kind]) => kind === event.kind);
  if (series) {
    const second = Math.min(nowSecond(), Math.floor(Date.parse(event.at) / 1000));
    if (second > nowSecond() - WINDOW_SECONDS) {
      const bucket = buckets.get(second) || { enqueued: 0, completed: 0, failed: 0 };
      bucket[series[0]] += 1;
      buckets.set(second, bucket);
    }
  }
  drawSoon();
  if (TERMINAL_KINDS.includes(event.kind)) timingsSoon();
}

// The last WINDOW_SECONDS of one series, oldest first.
function perSecond(name, now) {
  const values = [];
  for (let second = now - WINDOW_SECONDS + 1; second <= now; second += 1) {
    const bucket = buckets.get(second);
    values.push(bucket ? bucket[name] : 0);
  }
  return values;
}

// A round axis maximum at or above ``value``: 1, 2, 5, 10, 20, 50...
function niceMax(value) {
  let step = 1;
  while (true) {
    for (const factor of [1, 2, 5]) if (step * factor >= value) return step * factor;
    step *= 10;
  }
}

const sum = (values) => values.reduce((total, n) => total + n, 0);
const rate = (n, seconds) => (n / seconds).toFixed(2).replace(/\.?0+$/, "");

function drawThroughput() {
  const now = nowSecond();
  for (const second of buckets.keys()) if (second <= now - WINDOW_SECONDS) buckets.delete(second);
  const data = Object.fromEntries(SERIES.map(([name]) => [name, perSecond(name, now)]));
  const top = niceMax(Math.max(1, ...Object.values(data).flat()));
  const [width, height] = [760, 220];
  const box = { left: 44, right: 12, top: 12, bottom: 30 };
  const plotWidth = width - box.left - box.right;
  const plotHeight = height - box.top - box.bottom;
  const x = (i) => box.left + (i / (WINDOW_SECONDS - 1)) * plotWidth;
  const y = (n) => box.top + plotHeight - (n / top) * plotHeight;

  const parts = [];
  for (const n of [0, top / 2, top]) {
    parts.push(svg("line", { class: "grid", x1: box.left, x2: width - box.right, y1: y(n), y2: y(n) }));
    parts.push(svg("text", { class: "axis", x: box.left - 6, y: y(n) + 4, "text-anchor": "end" }, String(n)));
  }
  for (let minutes = WINDOW_SECONDS / 60; minutes >= 0; minutes -= 1) {
    const at = x(WINDOW_SECONDS - 1 - minutes * 60);
    const text = minutes === 0 ? "now" : `−${minutes} min`;
    parts.push(svg("text", { class: "axis", x: at, y: height - 10, "text-anchor": minutes === 0 ? "end" : "middle" }, text));
  }
  for (const [name] of SERIES) {
    const points = data[name].map((n, i) => `${x(i).toFixed(1)},${y(n).toFixed(1)}`).join(" ");
    parts.push(svg("polyline", { class: "series", "data-series": name, points }));
  }
  $("#throughput-chart").replaceChildren(svg("title", {}, "Jobs per second, last 5 minutes"), ...parts);

  const lastMinute = SERIES.map(([name]) => `${sum(data[name].slice(-60))} ${name}`).join(", ");
  $("#throughput-summary").textContent = `Last minute: ${lastMinute}. Scale: 0 to ${top} per second.`;
  renderThroughputTable(data);
}

function renderThroughputTable(data) {
  const tbody = $("#throughput-table tbody");
  for (const [name] of SERIES) {
    let row = tbody.querySelector(`tr[data-series="${name}"]`);
    if (!row) {
      row = el(
        "tr",
        { dataset: { series: name } },
        el("th", { scope: "row" }, el("span", { className: "swatch", dataset: { series: name } }), name),
        ...SPANS.map((span) => el("td", { className: "num", dataset: { span: String(span) } })),
        el("td", { className: "num", dataset: { span: "rate" } }),
      );
      tbody.append(row);
    }
    for (const span of SPANS) {
      const cell = row.querySelector(`td[data-span="${span}"]`);
      const value = String(sum(data[name].slice(-span)));
      if (cell.textContent !== value) cell.textContent = value;
    }
    const perSecondCell = row.querySelector('td[data-span="rate"]');
    const value = rate(sum(data[name].slice(-60)), 60);
    if (perSecondCell.textContent !== value) perSecondCell.textContent = value;
  }
}

// Redraw shortly after events arrive: a burst of them costs one drawing.
let drawTimer = null;
function drawSoon() {
  if (drawTimer !== null) return;
  drawTimer = setTimeout(() => {
    drawTimer = null;
    drawThroughput();
  }, DRAW_DELAY_MS);
}

// -- wait and run time percentiles ------------------------------------------------------------

function drawTimingBars(target, items, field) {
  const rowHeight = 26;
  const box = { left: 120, right: 16, top: 6, bottom: 24 };
  const width = 380;
  const height = box.top + box.bottom + Math.max(1, items.length) * rowHeight;
  const top = Math.max(0, ...items.map((item) => item[field].p99));
  const scale = top > 0 ? (width - box.left - box.right) / top : 0;
  const parts = [];
  items.forEach((item, index) => {
    const y = box.top + index * rowHeight;
    const name = item.job_type.length > 16 ? `${item.job_type.slice(0, 15)}…` : item.job_type;
    parts.push(svg("text", { class: "label", x: box.left - 8, y: y + rowHeight / 2 + 4, "text-anchor": "end" }, name));
    // p99 first and widest, p50 last, on top.
    for (const p of [...PERCENTILES].reverse()) {
      const value = item[field][p];
      parts.push(
        svg(
          "rect",
          { class: `bar ${p}`, x: box.left, y: y + 4, width: Math.max(1, value * scale), height: rowHeight - 8 },
          svg("title", {}, `${item.job_type} ${field} ${p}: ${duration(value)}`),
        ),
      );
    }
  });
  const axisY = height - 8;
  parts.push(svg("text", { class: "axis", x: box.left, y: axisY, "text-anchor": "start" }, "0"));
  parts.push(svg("text", { class: "axis", x: width - box.right, y: axisY, "text-anchor": "end" }, duration(top)));
  target.setAttribute("viewBox", `0 0 ${width} ${height}`);
  target.replaceChildren(...parts);
}

function renderTimings(body) {
  const items = body.items;
  const tbody = $("#timings-table tbody");
  tbody.replaceChildren(
    ...items.map((item) =>
      el(
        "tr",
        { dataset: { jobType: item.job_type } },
        el("th", { scope: "row" }, item.job_type),
        el("td", { className: "num", dataset: { field: "count" } }, String(item.count)),
        ...["wait", "run"].flatMap((field) =>
          PERCENTILES.map((p) =>
            el("td", { className: "num", dataset: { field: `${field}-${p}`, seconds: String(item[field][p]) } }, duration(item[field][p])),
          ),
        ),
      ),
    ),
  );
  $("#timings-empty").hidden = items.length > 0;
  $("#timings-table").hidden = items.length === 0;
  const sampled = $("#timings-sampled");
  sampled.hidden = !body.sampled;
  sampled.textContent = body.sampled ? "Many jobs finished in this window: the figures are of the most recent ones." : "";
  drawTimingBars($("#wait-chart"), items, "wait");
  drawTimingBars($("#run-chart"), items, "run");
}

async function loadTimings() {
  try {
    renderTimings(await api(`/api/stats/timings?window=${$("#timings-window").value}`));
    showNotice("");
  } catch (error) {
    showNotice(`Could not load the timings: ${error.message}`);
  }
}

// Read the percentiles again after jobs finish, once per burst of finishes.
let timingsTimer = null;
function timingsSoon() {
  if (timingsTimer !== null) return;
  timingsTimer = setTimeout(() => {
    timingsTimer = null;
    loadTimings();
  }, TIMINGS_DELAY_MS);
}

// -- wiring ----------------------------------------------------------------------------------

function showNotice(text) {
  const notice = $("#notice");
  notice.textContent = text;
  notice.hidden = !text;
}

let source = null;

function connect() {
  const connection = $("#connection");
  source = new EventSource("/api/events");
  // EventSource only delivers named events to listeners registered by name.
  for (const kind of new Set([...SERIES.map(([, kind]) => kind), ...TERMINAL_KINDS])) {
    source.addEventListener(kind, count);
  }
  source.addEventListener("open", () => {
    connection.dataset.state = "live";
    connection.textContent = "live";
  });
  source.addEventListener("error", () => {
    const closed = source.readyState === EventSource.CLOSED;
    connection.dataset.state = closed ? "closed" : "reconnecting";
    connection.textContent = closed ? "disconnected: reload the page" : "reconnecting…";
  });
}

// Close the stream when the page is left: a page kept in the back/forward cache would otherwise
// hold its connection open.
window.addEventListener("pagehide", () => source.close());
window.addEventListener("pageshow", (event) => {
  if (event.persisted) connect();
});
$("#timings-form").addEventListener("submit", (event) => event.preventDefault());
$("#timings-window").addEventListener("change", loadTimings);
connect();
everyWhileVisible(drawThroughput, DRAW_MS);
everyWhileVisible(loadTimings, TIMINGS_MS);
