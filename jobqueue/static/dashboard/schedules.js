// The dashboard's Schedules panel: periodic jobs (GET /api/schedules), what type each queues,
// when it ticks and when it runs next. Its own script, apart from dashboard.js: schedules are
// not on the job event stream, so the panel reloads on a timer while the page is visible.
"use strict";

(() => {
  const RELOAD_MS = 5000;
  const panel = document.querySelector("#schedules");
  const body = panel.querySelector("tbody");
  const empty = panel.querySelector("#schedules-empty");

  function cell(text, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (title) td.title = title;
    return td;
  }

  function when(schedule) {
    const timing = schedule.cron !== null ? schedule.cron : `every ${schedule.every}s`;
    return schedule.timezone === "UTC" ? timing : `${timing} (${schedule.timezone})`;
  }

  function nextRun(schedule) {
    if (schedule.paused) return "paused";
    return new Date(schedule.next_run_at).toLocaleString();
  }

  function render(items) {
    body.replaceChildren(
      ...items.map((schedule) => {
        const tr = document.createElement("tr");
        tr.dataset.schedule = schedule.name;
        tr.append(
          cell(schedule.name),
          cell(schedule.job_type),
          cell(when(schedule)),
          cell(nextRun(schedule), schedule.next_run_at),
          cell(schedule.last_run_at ? new Date(schedule.last_run_at).toLocaleString() : "—", schedule.last_run_at || ""),
        );
        return tr;
      }),
    );
    empty.hidden = items.length > 0;
  }

  async function load() {
    if (document.visibilityState === "hidden") return;
    const response = await fetch("/api/schedules", { headers: { Accept: "application/json" } });
    if (!response.ok) return; // dashboard.js reports errors and expired logins
    render((await response.json()).items);
  }

  load();
  setInterval(load, RELOAD_MS);
  document.addEventListener("visibilitychange", load);
})();
