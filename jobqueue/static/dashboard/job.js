// The page of one job (/dashboard/jobs/<id>): shareable, and live while the job runs.
//
// It reads the public API only: the job, its attempts, and the job's event stream from event 0
// (the whole history, then live), so the timeline is exactly what any client would replay.
"use strict";

(() => {
  const TERMINAL = ["completed", "failed", "cancelled"];
  const RETRYABLE = ["failed", "cancelled"];
  // EventSource only delivers named events to listeners registered by name.
  const EVENT_KINDS = [
    "created", "status", "progress", "requeued", "cancel_requested",
    "retried", "updated", "completed", "failed", "cancelled",
  ];

  const $ = (selector, root = document) => root.querySelector(selector);
  const jobId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const jobPath = `/api/jobs/${encodeURIComponent(jobId)}`;
  const page = { job: null, source: null, lastSeq: 0, createdAt: null };

  async function api(path, options = {}) {
    const response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
    if (response.status === 401) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    }
    const body = response.status === 204 ? null : await response.json();
    if (!response.ok) throw new Error(body && body.detail ? body.detail : `HTTP ${response.status}`);
    return body;
  }

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  const label = (status) => status.replaceAll("_", " ");
  const json = (value) => (value === null || value === undefined ? "—" : JSON.stringify(value, null, 2));

  // The list's formats (list-tools.js), so a job reads the same on both pages.
  const { duration } = window.jobqueueList;

  const between = (from, to) => (from && to ? (new Date(to) - new Date(from)) / 1000 : null);

  // A time relative to now ("3 s ago"), with the absolute time on hover.
  function ago(iso) {
    if (!iso) return document.createTextNode("—");
    return el("time", { dateTime: iso, title: new Date(iso).toLocaleString() }, window.jobqueueList.ago(iso));
  }

  function showNotice(text) {
    const notice = $("#notice");
    notice.textContent = text;
    notice.hidden = !text;
  }

  function field(name, value) {
    const node = $(`[data-field='${name}']`);
    if (value instanceof Node) node.replaceChildren(value);
    else node.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function render(job) {
    page.job = job;
    page.createdAt = job.created_at;
    document.title = `jobqueue: job ${job.id}`;
    $("#title").textContent = `Job ${job.id}`;
    field("job_type", job.job_type);
    field("status", el("span", { className: "badge", dataset: { status: job.status } }, label(job.status)));
    field("progress", job.progress);
    $("#progress").value = job.progress;
    field("message", job.message);
    field("priority", job.priority);
    field("attempts", `${job.attempts} of ${job.max_attempts}`);
    field("created_at", ago(job.created_at));
    field("waited", duration(between(job.created_at, job.started_at)));
    field("ran", duration(between(job.started_at, job.completed_at)));
    field("request_data", json(job.request_data));
    field("result_data", json(job.result_data));
    renderActions(job);
  }

  function renderActions(job) {
    const actions = [];
    if (!TERMINAL.includes(job.status) && !job.cancel_requested) actions.push(["cancel", "Cancel"]);
    if (RETRYABLE.includes(job.status)) actions.push(["retry", "Retry"]);
    if (TERMINAL.includes(job.status)) actions.push(["delete", "Delete"]);
    $("#actions").replaceChildren(
      ...actions.map(([action, text]) => el("button", { type: "button", dataset: { action } }, text)),
    );
  }

  async function renderAttempts() {
    const { attempts } = await api(`${jobPath}/attempts`);
    $("#attempts tbody").replaceChildren(
      ...attempts.map((attempt) => {
        const error = attempt.error === null ? "—" : attempt.error;
        const cell = attempt.traceback
          ? el("td", {}, el("details", {}, el("summary", {}, error), el("pre", {}, attempt.traceback)))
          : el("td", {}, error);
        return el(
          "tr",
          { dataset: { attempt: String(attempt.attempt), outcome: attempt.outcome } },
          el("td", { className: "num" }, String(attempt.attempt)),
          el("td", {}, el("span", { className: "badge", dataset: { status: attempt.outcome } }, attempt.outcome)),
          el("td", {}, attempt.worker_id || "—"),
          el("td", {}, ago(attempt.started_at)),
          el("td", { className: "num took" }, duration(between(attempt.started_at, attempt.ended_at))),
          cell,
        );
      }),
    );
  }

  function addEvent(event) {
    const since = between(page.createdAt, event.at);
    const when = el("time", { dateTime: event.at, title: new Date(event.at).toLocaleString() },
      since === null ? "—" : `+${duration(since)}`);
    $("#timeline tbody").append(
      el(
        "tr",
        { dataset: { seq: String(event.seq), kind: event.kind } },
        el("td", { className: "num" }, String(event.seq)),
        el("td", {}, when),
        el("td", {}, event.kind.replaceAll("_", " ")),
        el("td", {}, label(event.status)),
        el("td", { className: "num" }, String(event.progress)),
        el("td", {}, event.message || ""),
      ),
    );
  }

  function follow() {
    if (page.source) page.source.close();
    const source = new EventSource(`${jobPath}/events?last_event_id=${page.lastSeq}`);
    page.source = source;
    source.addEventListener("open", () => setConnection("live", "live"));
    source.addEventListener("error", () => setConnection("connecting", "reconnecting…"));
    const onEvent = async (message) => {
      const event = JSON.parse(message.data);
      if (event.seq <= page.lastSeq) return;
      page.lastSeq = event.seq;
      addEvent(event);
      render({ ...page.job, status: event.status, progress: event.progress, message: event.message });
      if (event.kind !== "progress") {
        // A status change: the job and its attempts changed in more ways than the event says.
        if (TERMINAL.includes(event.status) && page.source === source) {
          source.close(); // the stream ends after a terminal event; a retry reopens it
          page.source = null;
          setConnection("done", "finished");
        }
        await refresh();
      }
    };
    for (const kind of EVENT_KINDS) source.addEventListener(kind, onEvent);
  }

  function setConnection(state, text) {
    const node = $("#connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  async function refresh() {
    try {
      render(await api(jobPath));
      await renderAttempts();
    } catch (error) {
      showNotice(error.message);
    }
  }

  // A confirmation in the page (not window.confirm, which blocks and cannot be styled).
  function confirmAction(text) {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = text;
    dialog.showModal();
    return new Promise((resolve) => {
      const answer = (yes) => () => {
        dialog.close();
        resolve(yes);
      };
      $("#confirm-yes").onclick = answer(true);
      $("#confirm-no").onclick = answer(false);
    });
  }

  const QUESTIONS = {
    cancel: "Cancel this job? A running job is stopped by its worker.",
    retry: "Queue this job again with a fresh set of attempts?",
    delete: "Delete this job and its history? This cannot be undone.",
  };

  async function act(action) {
    if (!(await confirmAction(QUESTIONS[action]))) return;
    try {
      if (action === "delete") {
        await api(jobPath, { method: "DELETE" });
        if (page.source) page.source.close();
        showNotice(`Job ${jobId} was deleted.`);
        $("#actions").replaceChildren();
        setConnection("done", "deleted");
        return;
      }
      render(await api(`${jobPath}/${action}`, { method: "POST" }));
      if (action === "retry" && page.source === null) follow();
      await renderAttempts();
    } catch (error) {
      showNotice(`${action} failed: ${error.message}`);
    }
  }

  async function copy(name, button) {
    const text = json(page.job ? page.job[name] : null);
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // No clipboard permission (an http:// origin other than localhost): select it instead.
      getSelection().selectAllChildren($(`[data-field='${name}']`));
      button.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  }

  async function start() {
    $("#actions").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) act(button.dataset.action);
    });
    for (const button of document.querySelectorAll("button[data-copy]")) {
      button.addEventListener("click", () => copy(button.dataset.copy, button));
    }
    try {
      render(await api(jobPath));
    } catch (error) {
      showNotice(`Could not load job ${jobId}: ${error.message}`);
      setConnection("done", "not found");
      return;
    }
    await renderAttempts();
    follow(); // from event 0: the whole history, then live
    // Relative times ("3 s ago") age while the page is open.
    setInterval(() => {
      if (page.job) field("created_at", ago(page.job.created_at));
    }, 1000);
  }

  start();
})();
