// Job types panel of the dashboard: each type's flow controls (paused, max running, per key,
// rate, next allowed start) with Pause / Resume buttons. Controls are not jobs and have no
// events, so this panel polls GET /api/job-types (every POLL_MS while the page is visible);
// it is independent of dashboard.js.
"use strict";

(() => {
  const POLL_MS = 2000;
  const section = document.querySelector("#job-types");
  const tbody = section.querySelector("tbody");
  const notice = section.querySelector(".types-notice");
  let timer = null;

  async function call(path, method = "GET") {
    const response = await fetch(path, { method, headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
    return body;
  }

  function cell(text, className = "") {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function limitText(value) {
    return value === null ? "–" : String(value);
  }

  function nextStartText(iso) {
    return iso === null ? "now" : new Date(iso).toLocaleTimeString();
  }

  function row(item) {
    const tr = document.createElement("tr");
    tr.dataset.jobType = item.job_type;
    tr.dataset.paused = String(item.paused);
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = item.job_type;
    const rate = item.rate === null ? "–" : `${item.rate.limit} / ${item.rate.period}s`;
    const action = item.paused ? "resume" : "pause";
    const button = document.createElement("button");
    button.type = "button";
    button.className = `action ${action}`;
    button.dataset.action = action;
    button.textContent = item.paused ? "Resume" : "Pause";
    button.setAttribute("aria-label", `${button.textContent} job type ${item.job_type}`);
    button.addEventListener("click", () => toggle(item.job_type, action, button));
    const buttons = document.createElement("td");
    buttons.append(button);
    tr.append(
      name,
      cell(item.paused ? "paused" : "active", item.paused ? "type-state paused" : "type-state"),
      cell(String(item.running), "num"),
      cell(limitText(item.max_running), "num"),
      cell(limitText(item.max_running_per_key), "num"),
      cell(rate),
      cell(nextStartText(item.next_start_at)),
      buttons,
    );
    return tr;
  }

  async function refresh() {
    try {
      const { items } = await call("/api/job-types");
      tbody.replaceChildren(...items.map(row));
      section.hidden = items.length === 0;
    } catch (error) {
      notice.textContent = `Could not load job types: ${error.message}`;
      notice.hidden = false;
    }
  }

  async function toggle(jobType, action, button) {
    button.disabled = true;
    try {
      await call(`/api/job-types/${encodeURIComponent(jobType)}/${action}`, "POST");
      notice.hidden = true;
      await refresh();
    } catch (error) {
      notice.textContent = `Could not ${action} ${jobType}: ${error.message}`;
      notice.hidden = false;
      button.disabled = false;
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!document.hidden) await refresh();
      schedule();
    }, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
  });
  window.addEventListener("pagehide", () => clearTimeout(timer));
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) schedule();
  });
  refresh();
  schedule();
})();
