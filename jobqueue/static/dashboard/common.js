// Helpers shared by the dashboard's ES-module pages (charts.js, workers.js): the API call that
// sends an expired login back to the login page, element building, and durations people read
// at a glance.

export const $ = (selector, root = document) => root.querySelector(selector);

export async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    // The login session ended (or a key is now required): log in again, then come back here.
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body && body.detail ? body.detail : `HTTP ${response.status}`);
  return body;
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

// An SVG element: every prop is an attribute (SVG has few writable DOM properties).
export function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

// "850 ms", "1.2 s", "3 min 4 s", "2 h 5 min".
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

// A <time> relative to now ("3 s ago"), with the absolute time on hover.
export function ago(iso) {
  const seconds = Math.max(0, (Date.now() - new Date(iso)) / 1000);
  return el("time", { dateTime: iso, title: new Date(iso).toLocaleString() }, `${duration(seconds)} ago`);
}

// Run ``task`` every ``interval`` ms while the page is visible (and at once when it shows again).
export function everyWhileVisible(task, interval) {
  let timer = null;
  const run = async () => {
    clearTimeout(timer);
    if (!document.hidden) await task();
    timer = setTimeout(run, interval);
  };
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) run();
  });
  window.addEventListener("pagehide", () => clearTimeout(timer));
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) run();
  });
  run();
}
