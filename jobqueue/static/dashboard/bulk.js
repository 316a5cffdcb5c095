// Bulk actions of the dashboard's job list (dashboard.js creates one with its page's helpers):
// the selection (a checkbox per row, one for the page), Retry / Cancel / Delete on the selected
// jobs, and the failed view's "Retry all N failed <type>". Each asks first, naming how many, then
// sends the existing per-job requests through the page's api() helper (its session cookie and
// same-origin rules), a few at a time, and lists every job it could not change with the reason.
"use strict";

// page: {api, el, rows() (job id -> row entry), applyJob, announce, showNotice, reloadJobs,
// refreshCounts}
window.jobqueueBulk = (page) => {
  // Requests one bulk action keeps in flight: enough to be quick, few enough to leave the
  // server's other clients (and the browser's six connections per host) room.
  const BULK_CONCURRENCY = 4;
  const BULK_ACTIONS = {
    retry: { verb: "Retry", method: "POST", path: (id) => `/api/jobs/${encodeURIComponent(id)}/retry` },
    cancel: { verb: "Cancel", method: "POST", path: (id) => `/api/jobs/${encodeURIComponent(id)}/cancel` },
    delete: { verb: "Delete", method: "DELETE", path: (id) => `/api/jobs/${encodeURIComponent(id)}` },
  };
  const $ = (selector) => document.querySelector(selector);
  const { api, el } = page;
  // Ids of the selected jobs; kept while the page of jobs re-renders, emptied (by the list) when
  // the filters or the page change.
  const selected = new Set();

  function renderSelection() {
    const count = selected.size;
    $("#bulk-bar").hidden = count === 0;
    $("#bulk-count").textContent = `${count} selected`;
    const rows = page.rows();
    const onPage = [...rows.keys()];
    const all = $("#select-page");
    const picked = onPage.filter((id) => selected.has(id)).length;
    all.checked = onPage.length > 0 && picked === onPage.length;
    all.indeterminate = picked > 0 && picked < onPage.length;
    for (const entry of rows.values()) entry.tr.classList.toggle("selected", selected.has(entry.job.id));
  }

  function clearSelection() {
    selected.clear();
    for (const entry of page.rows().values()) entry.select.checked = false;
    renderSelection();
  }

  function selectPage(on) {
    for (const [id, entry] of page.rows()) {
      if (on) selected.add(id);
      else selected.delete(id);
      entry.select.checked = on;
    }
    renderSelection();
  }

  // Ask first, naming what and how many; resolves true for Yes.
  function confirmDialog(question, yes) {
    const dialog = $("#bulk-confirm");
    $("#bulk-question").textContent = question;
    $("#bulk-yes").textContent = yes;
    return new Promise((resolve) => {
      const answer = (value) => () => {
        $("#bulk-yes").onclick = $("#bulk-no").onclick = dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(value);
      };
      $("#bulk-yes").onclick = answer(true);
      $("#bulk-no").onclick = answer(false);
      dialog.onclose = answer(false); // Escape
      dialog.showModal();
      $("#bulk-no").focus();
    });
  }

  function showBulkResult(summary, failures) {
    $("#bulk-result").hidden = false;
    $("#bulk-summary").textContent = summary;
    $("#bulk-failures").replaceChildren(
      ...failures.map(({ item, error }) =>
        el("li", { dataset: { jobId: item } }, el("a", { href: `/dashboard/jobs/${encodeURIComponent(item)}`, className: "mono" }, item), `: ${error.message}`),
      ),
    );
  }

  async function bulk(action) {
    const { verb, method, path } = BULK_ACTIONS[action];
    const ids = [...selected];
    const noun = ids.length === 1 ? "job" : "jobs";
    if (!(await confirmDialog(`${verb} ${ids.length} selected ${noun}?`, `${verb} ${ids.length} ${noun}`))) return;
    for (const button of document.querySelectorAll("[data-bulk]")) button.disabled = true;
    try {
      const results = await window.jobqueueList.runBounded(ids, BULK_CONCURRENCY, (id) => api(path(id), { method }));
      const failures = results.filter((r) => !r.ok);
      for (const result of results) {
        if (!result.ok) continue;
        selected.delete(result.item);
        if (result.value) page.applyJob(result.value);
      }
      const done = results.length - failures.length;
      const past = { retry: "retried", cancel: "cancelled", delete: "deleted" }[action];
      const summary = `${done} of ${results.length} ${noun} ${past}` + (failures.length ? `; ${failures.length} could not be:` : ".");
      showBulkResult(summary, failures);
      page.announce(summary);
      renderSelection();
      // Deleted rows are gone however the list is set; read it again even while frozen.
      if (action === "delete") page.reloadJobs();
    } finally {
      for (const button of document.querySelectorAll("[data-bulk]")) button.disabled = false;
    }
  }

  // One "Retry all N failed" button per type that has failed jobs (from the per-type counts).
  function renderRetryFailed(perType) {
    const list = $("#retry-failed");
    const failing = perType.filter((stats) => (stats.by_status.failed || 0) > 0);
    list.replaceChildren(
      ...failing.map((stats) => {
        const count = stats.by_status.failed;
        const button = el("button", { type: "button", className: "action retry", dataset: { jobType: stats.job_type } },
          `Retry all ${count} failed ${stats.job_type}`);
        button.addEventListener("click", () => retryFailed(stats.job_type, count, button));
        return el("li", {}, button);
      }),
    );
    if (failing.length === 0) list.append(el("li", { className: "hint" }, "No failed jobs."));
  }

  async function retryFailed(jobType, count, button) {
    const noun = count === 1 ? "job" : "jobs";
    if (!(await confirmDialog(`Retry all ${count} failed ${noun} of type ${jobType}?`, `Retry ${count} ${noun}`))) return;
    button.disabled = true;
    try {
      let retried = 0;
      let result;
      do {
        result = await api(`/api/job-types/${encodeURIComponent(jobType)}/retry-failed`, { method: "POST" });
        retried += result.affected;
      } while (result.more && result.affected > 0);
      showBulkResult(`${retried} failed ${jobType} ${retried === 1 ? "job" : "jobs"} retried.`, []);
      page.announce(`${retried} failed ${jobType} jobs retried`);
      page.reloadJobs();
      page.refreshCounts();
    } catch (error) {
      page.showNotice(`Could not retry the failed ${jobType} jobs: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  function wire() {
    $("#select-page").addEventListener("change", (event) => selectPage(event.target.checked));
    for (const button of document.querySelectorAll("[data-bulk]")) {
      button.addEventListener("click", () => bulk(button.dataset.bulk));
    }
    $("#bulk-clear").addEventListener("click", clearSelection);
  }

  return { selected, renderSelection, renderRetryFailed, wire };
};
