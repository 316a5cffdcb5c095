// The jobqueue dashboard: plain JS over the public API, no framework, no build step.
//
// Counts and the job table are fetched once and then refreshed only when the event stream says
// something changed (debounced); progress bars and messages are updated in place from the events
// themselves, so nothing polls.
"use strict";

(() => {
  // Mirrors NOT_STARTED_STATUSES (waiting, and blocked on dependencies) and TERMINAL_STATUSES in
  // jobqueue/models.py; every other status is a running one, so new running statuses need no
  // change here.
  const WAITING = ["queued", "pending", "blocked"];
  const TERMINAL = ["completed", "failed", "cancelled"];
  const RETRYABLE = ["failed", "cancelled"];
  // EventSource only delivers named events to listeners registered by name.
  const EVENT_KINDS = [
    "created", "status", "progress", "requeued", "cancel_requested",
    "retried", "updated", "completed", "failed", "cancelled",
  ];
  const TERMINAL_KINDS = ["completed", "failed", "cancelled"];
  const REFRESH_DELAY_MS = 250;
  // Relative times and running durations are redrawn this often.
  const TICK_MS = 1000;
  const tools = window.jobqueueList;

  const $ = (selector, root = document) => root.querySelector(selector);

  const state = {
    status: "",
    jobType: "",
    // "all", or "failed": the failed jobs with their errors and the retry-all tools.
    view: "all",
    idPrefix: "",
    data: [], // [[field, value]...]: data.<field>=<value> filters on request_data
    limit: 25,
    offset: 0,
    total: 0,
    statuses: [],
    types: new Set(),
  };
  // Job id -> {tr, job, seq}: rows are kept and updated in place, so focus and live values survive
  // a refresh of the page of jobs.
  let rows = new Map();
  // Selection and bulk actions (bulk.js). The refreshers are constants defined further down,
  // hence the arrows.
  const bulk = window.jobqueueBulk({
    api,
    el,
    rows: () => rows,
    applyJob,
    announce,
    showNotice,
    reloadJobs: () => reloadJobs(),
    refreshCounts: () => refreshCounts(),
  });
  const { selected } = bulk;
  // While frozen the page of jobs is not re-read: rows stay where they are, and what happened
  // meanwhile is only counted (ids of jobs created, and of jobs otherwise changed).
  const frozen = { on: false, created: new Set(), changed: new Set() };
  const detail = { jobId: null, job: null, source: null, lastSeq: 0 };

  // -- helpers ---------------------------------------------------------------------------------

  async function api(path, options = {}) {
    const response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
    if (response.status === 401) {
      // The login session ended (or a key is now required): log in again, then come back here.
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    const body = response.status === 204 ? null : await response.json();
    if (!response.ok) {
      throw new Error(body && body.detail ? body.detail : `HTTP ${response.status}`);
    }
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

  const isRunning = (status) => !WAITING.includes(status) && !TERMINAL.includes(status);
  const label = (status) => status.replaceAll("_", " ");
  const shortId = (id) => (id.length > 12 ? id.slice(0, 8) + "…" : id);

  function formatTime(iso) {
    if (!iso) return "—";
    const at = new Date(iso);
    const today = new Date().toDateString() === at.toDateString();
    return today ? at.toLocaleTimeString() : at.toLocaleString();
  }

  function timeElement(iso) {
    return iso ? el("time", { dateTime: iso, title: iso }, formatTime(iso)) : document.createTextNode("—");
  }

  // "3 s ago", the absolute time on hover; ``tick`` keeps the text current.
  function relativeTime(iso) {
    if (!iso) return document.createTextNode("—");
    return el("time", { dateTime: iso, title: formatTime(iso), className: "relative" }, tools.ago(iso));
  }

  function formatJson(value) {
    return value === null || value === undefined ? "—" : JSON.stringify(value, null, 2);
  }

  function showNotice(text) {
    const notice = $("#notice");
    notice.textContent = text;
    notice.hidden = !text;
  }

  function announce(text) {
    $("#announce").textContent = text;
  }

  // Run ``task`` at most once per ``delay`` however often it is asked for, and never two at once:
  // a burst of events costs one request, not one per event.
  function coalesced(task, delay) {
    let timer = null;
    let running = false;
    let again = false;
    const run = async () => {
      timer = null;
      running = true;
      try {
        await task();
      } catch (error) {
        showNotice(error.message);
      } finally {
        running = false;
        if (again) {
          again = false;
          schedule();
        }
      }
    };
    const schedule = () => {
      if (running) again = true;
      else if (timer === null) timer = setTimeout(run, delay);
    };
    return schedule;
  }

  // -- counts ----------------------------------------------------------------------------------

  function groupCounts(byStatus) {
    const sum = (names) => names.reduce((n, s) => n + (byStatus[s] || 0), 0);
    const running = Object.keys(byStatus).filter(isRunning);
    return {
      waiting: sum(WAITING),
      running: sum(running),
      completed: byStatus.completed || 0,
      failed: byStatus.failed || 0,
      cancelled: byStatus.cancelled || 0,
    };
  }

  // Cards and rows are built once and then only their numbers change, so keyboard focus stays put
  // while events stream in.
  function renderStatusCounts(stats) {
    const list = $("#status-counts");
    if (list.children.length === 0) {
      // The running statuses (processing and the generators' own) share one card, whose title
      // lists those that have jobs; the card filters the table by all of them.
      const running = state.statuses.filter(isRunning);
      const cards = [
        ["", "total"],
        ...state.statuses.filter((s) => !isRunning(s) && !TERMINAL.includes(s)).map((s) => [s, label(s)]),
        [running.join(","), "running"],
        ...TERMINAL.map((s) => [s, label(s)]),
      ];
      list.append(
        ...cards.map(([status, text]) => {
          const button = el(
            "button",
            { type: "button", className: "count-card", dataset: { status: status || "all", label: text } },
            el("span", { className: "count" }),
            el("span", { className: "count-label" }, text),
          );
          button.setAttribute("aria-pressed", String(shownStatus() === status));
          // The failed card opens the failed view (errors, finish times, retry-all); the others
          // filter the list.
          button.addEventListener("click", () => setFilters(status === "failed" ? { view: "failed", status: "" } : { view: "all", status }));
          return el("li", {}, button);
        }),
      );
    }
    for (const button of list.querySelectorAll(".count-card")) {
      const status = button.dataset.status;
      const members = status === "all" ? [] : status.split(",");
      const count = status === "all" ? stats.total : members.reduce((n, s) => n + (stats.by_status[s] || 0), 0);
      $(".count", button).textContent = String(count);
      button.setAttribute("aria-label", `${count} ${button.dataset.label}: show these jobs`);
      if (members.length > 1) {
        button.title = members.filter((s) => stats.by_status[s]).map((s) => `${label(s)}: ${stats.by_status[s]}`).join(", ");
      }
      // Statuses with no job collapse out of the way; the total always shows.
      button.parentElement.hidden = count === 0 && status !== "all";
    }
  }

  const typeRows = new Map();

  function renderTypeCounts(perType) {
    const tbody = $("#type-counts tbody");
    perType.forEach((stats, index) => {
      let row = typeRows.get(stats.job_type);
      if (!row) {
        const filter = el("button", { type: "button", className: "link" }, stats.job_type);
        filter.setAttribute("aria-label", `Show ${stats.job_type} jobs`);
        filter.addEventListener("click", () => setFilters({ jobType: stats.job_type }));
        const cells = Array.from({ length: 6 }, () => el("td", { className: "num" }));
        row = { tr: el("tr", { dataset: { jobType: stats.job_type } }, el("th", { scope: "row" }, filter), ...cells), cells };
        typeRows.set(stats.job_type, row);
      }
      const groups = groupCounts(stats.by_status);
      const values = [stats.total, groups.waiting, groups.running, groups.completed, groups.failed, groups.cancelled];
      values.forEach((n, i) => (row.cells[i].textContent = String(n)));
      if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] || null);
    });
    $("#type-counts").hidden = perType.length === 0;
  }

  async function loadCounts() {
    const all = await api("/api/jobs/stats");
    if (state.statuses.length === 0) {
      state.statuses = Object.keys(all.by_status);
      fillStatusFilter();
    }
    renderStatusCounts(all);
    const types = [...state.types].sort();
    const perType = await Promise.all(types.map((t) => api(`/api/jobs/stats/${encodeURIComponent(t)}`)));
    renderTypeCounts(perType);
    bulk.renderRetryFailed(perType);
  }

  function addType(jobType) {
    if (state.types.has(jobType)) return;
    state.types.add(jobType);
    $("#known-types").replaceChildren(...[...state.types].sort().map((t) => el("option", { value: t })));
    refreshCounts();
  }

  // -- filters and paging ----------------------------------------------------------------------

  function fillStatusFilter() {
    const select = $("#filter-status");
    const running = state.statuses.filter(isRunning);
    const groups = el(
      "optgroup",
      { label: "Groups" },
      el("option", { value: WAITING.join(",") }, "waiting"),
      el("option", { value: running.join(",") }, "running"),
      el("option", { value: TERMINAL.join(",") }, "finished"),
    );
    const each = el("optgroup", { label: "Status" }, ...state.statuses.map((s) => el("option", { value: s }, label(s))));
    select.replaceChildren(el("option", { value: "" }, "any"), groups, each);
    select.value = shownStatus();
  }

  // The status the list shows: the failed view is the failed jobs, whatever the filter said.
  const shownStatus = () => (state.view === "failed" ? "failed" : state.status);

  function setFilters(changes) {
    Object.assign(state, changes, { offset: "offset" in changes ? changes.offset : 0 });
    selected.clear();
    showViewAndFilters();
    const query = new URLSearchParams();
    if (state.view === "failed") query.set("view", "failed");
    if (state.status) query.set("status", state.status);
    if (state.jobType) query.set("job_type", state.jobType);
    addSearchParams(query);
    if (state.offset) query.set("offset", String(state.offset));
    if (state.limit !== 25) query.set("limit", String(state.limit));
    const search = query.toString();
    history.replaceState(null, "", search ? `?${search}` : location.pathname);
    for (const card of document.querySelectorAll(".count-card")) {
      card.setAttribute("aria-pressed", String((card.dataset.status === "all" ? "" : card.dataset.status) === shownStatus()));
    }
    loadJobs().catch((error) => showNotice(error.message));
  }

  function addSearchParams(query) {
    if (state.idPrefix) query.set("id_prefix", state.idPrefix);
    for (const [field, value] of state.data) query.set(`data.${field}`, value);
  }

  // The controls show the state (after a change, or as read from the URL).
  function showViewAndFilters() {
    const failed = state.view === "failed";
    $("#filter-status").value = shownStatus();
    $("#filter-status").disabled = failed;
    if ($("#filter-type").value !== state.jobType) $("#filter-type").value = state.jobType;
    $("#jobs").dataset.view = state.view;
    $("#failed-tools").hidden = !failed;
    for (const tab of document.querySelectorAll(".view-tab")) {
      tab.setAttribute("aria-pressed", String(tab.dataset.view === state.view));
    }
  }

  function sameSearch(parsed) {
    return parsed.idPrefix === state.idPrefix && JSON.stringify(parsed.data) === JSON.stringify(state.data);
  }

  function onSearchInput() {
    const parsed = tools.parseSearch($("#search").value);
    $("#search-error").hidden = !parsed.error;
    $("#search-error").textContent = parsed.error || "";
    if (parsed.error || sameSearch(parsed)) return;
    setFilters({ idPrefix: parsed.idPrefix, data: parsed.data });
  }

  function readFiltersFromUrl() {
    const query = new URLSearchParams(location.search);
    state.view = query.get("view") === "failed" ? "failed" : "all";
    state.status = query.get("status") || "";
    state.jobType = query.get("job_type") || "";
    state.idPrefix = query.get("id_prefix") || "";
    state.data = [...query].filter(([name]) => name.startsWith("data.")).map(([name, value]) => [name.slice(5), value]);
    state.offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
    const limit = Number.parseInt(query.get("limit") || "25", 10);
    state.limit = [10, 25, 50, 100].includes(limit) ? limit : 25;
    $("#page-size").value = String(state.limit);
    $("#search").value = tools.searchText({ idPrefix: state.idPrefix, data: state.data });
    showViewAndFilters();
  }

  // -- the job table ---------------------------------------------------------------------------

  let listRequest = 0;

  async function loadJobs() {
    const request = ++listRequest;
    const query = new URLSearchParams({ limit: String(state.limit), offset: String(state.offset) });
    if (shownStatus()) query.set("status", shownStatus());
    if (state.jobType) query.set("job_type", state.jobType);
    addSearchParams(query);
    const page = await api(`/api/jobs?${query}`);
    if (request !== listRequest) return; // a newer request (say, another filter) answers instead
    if (page.items.length === 0 && state.offset > 0 && page.total > 0) {
      // The page emptied under us (jobs deleted): show the last one that has jobs.
      state.offset = Math.max(0, Math.floor((page.total - 1) / state.limit) * state.limit);
      return loadJobs();
    }
    state.total = page.total;
    frozen.created.clear();
    frozen.changed.clear();
    renderFrozen();
    renderJobs(page.items);
    for (const job of page.items) addType(job.job_type);
    if (state.jobType) addType(state.jobType);
    renderPager(page.items.length);
    showNotice("");
  }

  function renderPager(shown) {
    const first = shown ? state.offset + 1 : 0;
    $("#page-info").textContent = `${first}–${state.offset + shown} of ${state.total}`;
    $("#prev-page").disabled = state.offset === 0;
    $("#next-page").disabled = state.offset + state.limit >= state.total;
    $("#empty").hidden = shown !== 0;
  }

  function renderJobs(items) {
    const tbody = $("#jobs tbody");
    const next = new Map();
    items.forEach((job, index) => {
      let entry = rows.get(job.id);
      if (!entry) {
        entry = createRow(job);
      } else if (job.event_seq >= entry.seq) {
        entry.job = job;
        entry.seq = job.event_seq;
      } else {
        // An event already told us something newer than this page knows: keep the live fields.
        const { status, progress, message } = entry.job;
        entry.job = { ...job, status, progress, message };
      }
      updateRow(entry);
      next.set(job.id, entry);
      if (tbody.children[index] !== entry.tr) tbody.insertBefore(entry.tr, tbody.children[index] || null);
    });
    for (const [id, entry] of rows) if (!next.has(id)) entry.tr.remove();
    rows = next;
    bulk.renderSelection();
  }

  function createRow(job) {
    const select = el("input", { type: "checkbox", className: "select", checked: selected.has(job.id) });
    select.setAttribute("aria-label", `Select job ${job.id}`);
    select.addEventListener("change", () => {
      if (select.checked) selected.add(job.id);
      else selected.delete(job.id);
      bulk.renderSelection();
    });
    const open = el("button", { type: "button", className: "link mono", title: job.id }, shortId(job.id));
    open.setAttribute("aria-label", `Show job ${job.id}`);
    open.addEventListener("click", () => openDetail(job.id));
    const page = el("a", { className: "page-link", href: `/dashboard/jobs/${encodeURIComponent(job.id)}` }, "page");
    page.setAttribute("aria-label", `Open the page of job ${job.id}`);
    const progress = el("progress", { max: 100, value: 0 });
    progress.setAttribute("aria-label", `Progress of job ${job.id}`);
    const cells = {
      type: el("td"),
      status: el("td"),
      percent: el("span", { className: "pct" }),
      message: el("td", { className: "message" }),
      attempts: el("td", { className: "num" }),
      created: el("td", { className: "when" }),
      updated: el("td", { className: "when list-only" }),
      finished: el("td", { className: "when failed-only" }),
      waited: el("td", { className: "num took", dataset: { took: "waited" } }),
      ran: el("td", { className: "num took", dataset: { took: "ran" } }),
      actions: el("td", { className: "actions" }),
    };
    const tr = el(
      "tr",
      { dataset: { jobId: job.id } },
      el("th", { scope: "row" }, select, " ", open, " ", page),
      cells.type,
      cells.status,
      el("td", { className: "progress-cell list-only" }, progress, cells.percent),
      cells.message,
      cells.attempts,
      cells.created,
      cells.updated,
      cells.finished,
      cells.waited,
      cells.ran,
      cells.actions,
    );
    return { tr, job, seq: job.event_seq, progress, cells, select };
  }

  // The cells that change with the clock alone: relative times and running durations.
  function updateTimes(entry, now = Date.now()) {
    const { job, cells } = entry;
    for (const time of entry.tr.querySelectorAll("time.relative")) time.textContent = tools.ago(time.dateTime, now);
    cells.waited.textContent = tools.duration(tools.waited(job, now));
    cells.ran.textContent = tools.duration(tools.ran(job, now));
  }

  function tick() {
    const now = Date.now();
    for (const entry of rows.values()) updateTimes(entry, now);
  }

  function statusBadge(status) {
    return el("span", { className: "badge", dataset: { status } }, label(status));
  }

  function updateRow(entry) {
    const { job, tr, cells, progress } = entry;
    tr.dataset.status = job.status;
    progress.value = job.progress;
    cells.percent.textContent = `${job.progress}%`;
    cells.type.textContent = job.job_type;
    cells.status.replaceChildren(statusBadge(job.status));
    if (job.cancel_requested && !TERMINAL.includes(job.status)) {
      cells.status.append(el("span", { className: "hint" }, " cancelling"));
    }
    // A failed job's error says more than its last progress message.
    const showError = job.status === "failed" && Boolean(job.error);
    const text = (showError ? job.error : job.message) || "";
    cells.message.textContent = text;
    cells.message.title = text;
    cells.message.classList.toggle("error", showError);
    cells.attempts.textContent = `${job.attempts} / ${job.max_attempts}`;
    for (const [cell, iso] of [[cells.created, job.created_at], [cells.updated, job.updated_at], [cells.finished, job.completed_at]]) {
      if (cell.dataset.at !== (iso || "")) {
        cell.dataset.at = iso || "";
        cell.replaceChildren(relativeTime(iso));
      }
    }
    entry.select.checked = selected.has(job.id);
    updateTimes(entry);
    const wanted = actionsFor(job).join(" ");
    if (cells.actions.dataset.actions !== wanted) {
      cells.actions.dataset.actions = wanted;
      cells.actions.replaceChildren(...actionButtons(job));
    }
  }

  function actionsFor(job) {
    if (RETRYABLE.includes(job.status)) return ["retry"];
    if (!TERMINAL.includes(job.status) && !job.cancel_requested) return ["cancel"];
    return [];
  }

  function actionButtons(job) {
    return actionsFor(job).map((action) => {
      const button = el("button", { type: "button", className: `action ${action}`, dataset: { action } }, action === "retry" ? "Retry" : "Cancel");
      button.setAttribute("aria-label", `${action === "retry" ? "Retry" : "Cancel"} job ${job.id}`);
      button.addEventListener("click", () => act(job.id, action, button));
      return button;
    });
  }

  async function act(jobId, action, button) {
    button.disabled = true;
    try {
      const job = await api(`/api/jobs/${encodeURIComponent(jobId)}/${action}`, { method: "POST" });
      applyJob(job);
      announce(`Job ${jobId}: ${label(job.status)}${job.cancel_requested && action === "cancel" ? ", cancelling" : ""}`);
      showNotice("");
    } catch (error) {
      showNotice(`Could not ${action} job ${jobId}: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // A job as returned by an action: newer than or equal to what the row knows.
  function applyJob(job) {
    const entry = rows.get(job.id);
    if (entry && job.event_seq >= entry.seq) {
      entry.job = job;
      entry.seq = job.event_seq;
      updateRow(entry);
    }
    if (detail.jobId === job.id) {
      if (job.event_seq >= detail.lastSeq) renderDetail(job);
      if (detail.source === null && job.event_seq > detail.lastSeq) openDetailStream(detail.lastSeq);
    }
  }

  // -- live events -----------------------------------------------------------------------------

  const refreshCounts = coalesced(loadCounts, REFRESH_DELAY_MS);
  // Frozen, the page of jobs is read again only when asked for (Show, a filter, a page).
  const refreshJobs = coalesced(async () => frozen.on || (await loadJobs()), REFRESH_DELAY_MS);
  const reloadJobs = () => loadJobs().catch((error) => showNotice(error.message));

  function onEvent(message) {
    const event = JSON.parse(message.data);
    addType(event.job_type);
    const entry = rows.get(event.job_id);
    if (entry && event.seq > entry.seq) {
      entry.seq = event.seq;
      entry.job = {
        ...entry.job,
        status: event.status,
        progress: event.progress,
        message: event.message,
        error: event.kind === "failed" && event.data ? event.data.error : entry.job.error,
        cancel_requested: event.kind === "cancel_requested" || (entry.job.cancel_requested && isRunning(event.status)),
        // Close enough for the clock columns until the row is read again.
        updated_at: event.at,
        started_at: entry.job.started_at || (isRunning(event.status) ? event.at : null),
        completed_at: TERMINAL.includes(event.status) ? entry.job.completed_at || event.at : null,
      };
      updateRow(entry);
    }
    if (detail.jobId === event.job_id && detail.source === null && event.seq > detail.lastSeq) {
      openDetailStream(detail.lastSeq); // the job came back to life (say, a retry elsewhere)
    }
    refreshCounts();
    // Progress changes nothing the page of jobs is filtered or ordered by; anything else may.
    if (event.kind === "progress") return;
    if (!frozen.on) {
      refreshJobs();
    } else {
      if (event.kind === "created") frozen.created.add(event.job_id);
      else if (!frozen.created.has(event.job_id)) frozen.changed.add(event.job_id);
      renderFrozen();
    }
  }

  let liveSource = null;

  function connect() {
    const connection = $("#connection");
    const source = new EventSource("/api/events");
    liveSource = source;
    for (const kind of EVENT_KINDS) source.addEventListener(kind, onEvent);
    source.addEventListener("open", () => {
      connection.dataset.state = "live";
      connection.textContent = "live";
      // Whatever happened before the stream was (re)connected is in the database: read it once.
      refreshCounts();
      refreshJobs();
    });
    source.addEventListener("error", () => {
      const closed = source.readyState === EventSource.CLOSED;
      connection.dataset.state = closed ? "closed" : "reconnecting";
      connection.textContent = closed ? "disconnected: reload the page" : "reconnecting…";
    });
  }

  // -- freeze / follow -------------------------------------------------------------------------

  function setFrozen(on) {
    frozen.on = on;
    $("#freeze").setAttribute("aria-pressed", String(on));
    $("#jobs").classList.toggle("is-frozen", on);
    renderFrozen();
    if (!on) refreshJobs(); // catch up with what was only counted
  }

  function renderFrozen() {
    const box = $("#frozen");
    box.hidden = !frozen.on;
    const created = frozen.created.size;
    const changed = frozen.changed.size;
    const parts = [created ? `${created} new` : "", changed ? `${changed} changed` : ""].filter(Boolean);
    $("#frozen-count").textContent = parts.length ? parts.join(", ") : "no changes";
    $("#show-changes").disabled = parts.length === 0;
  }

  // -- job detail ------------------------------------------------------------------------------

  function renderDetail(job) {
    detail.job = job;
    const dialog = $("#detail");
    $("#detail-title").textContent = `Job ${job.id}`;
    $("#detail-page").href = `/dashboard/jobs/${encodeURIComponent(job.id)}`;
    for (const node of dialog.querySelectorAll("[data-field]")) {
      const name = node.dataset.field;
      const value = job[name];
      if (name === "status") node.replaceChildren(statusBadge(value));
      else if (name.endsWith("_at")) node.replaceChildren(timeElement(value));
      else if (name.endsWith("_data")) node.textContent = formatJson(value);
      else if (name === "attempts") node.textContent = `${value} / ${job.max_attempts}`;
      else if (name === "depends_on" && value) {
        const policy = job.on_dependency_failure === "run" ? " (runs even if one fails)" : "";
        node.textContent = value.join(", ") + policy;
      }
      else node.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
    }
    $("#detail-progress").value = job.progress;
    dialog.dataset.status = job.status;
    const actions = $("#detail-actions");
    const wanted = actionsFor(job).join(" ");
    if (actions.dataset.actions !== wanted || actions.dataset.jobId !== job.id) {
      actions.dataset.actions = wanted;
      actions.dataset.jobId = job.id;
      actions.replaceChildren(...actionButtons(job));
    }
  }

  function addDetailEvent(event) {
    $("#detail-events tbody").append(
      el(
        "tr",
        { dataset: { kind: event.kind, seq: String(event.seq) } },
        el("td", { className: "num" }, String(event.seq)),
        el("td", {}, timeElement(event.at)),
        el("td", {}, label(event.kind)),
        el("td", {}, statusBadge(event.status)),
        el("td", { className: "num" }, `${event.progress}%`),
        el("td", { className: "message" }, event.message || ""),
      ),
    );
  }

  function closeDetailStream() {
    if (detail.source) detail.source.close();
    detail.source = null;
  }

  function openDetailStream(after) {
    closeDetailStream();
    const jobId = detail.jobId;
    const url = `/api/jobs/${encodeURIComponent(jobId)}/events?last_event_id=${after}`;
    const source = new EventSource(url);
    detail.source = source;
    const onDetailEvent = async (message) => {
      const event = JSON.parse(message.data);
      if (detail.jobId !== jobId || event.seq <= detail.lastSeq) return;
      detail.lastSeq = event.seq;
      addDetailEvent(event);
      renderDetail({ ...detail.job, status: event.status, progress: event.progress, message: event.message, event_seq: event.seq });
      if (!["progress", "status"].includes(event.kind)) {
        // The stream ends after a terminal event; close it before EventSource reconnects, and
        // reopen only if the job went on (a retry) while we were not listening.
        if (TERMINAL_KINDS.includes(event.kind) && detail.source === source) closeDetailStream();
        try {
          const job = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
          if (detail.jobId !== jobId) return;
          if (job.event_seq >= detail.lastSeq) renderDetail(job);
          if (detail.source === null && job.event_seq > detail.lastSeq) openDetailStream(detail.lastSeq);
        } catch (error) {
          showNotice(error.message);
        }
      }
    };
    for (const kind of EVENT_KINDS) source.addEventListener(kind, onDetailEvent);
  }

  async function openDetail(jobId) {
    closeDetailStream();
    detail.jobId = jobId;
    detail.lastSeq = 0;
    $("#detail-events tbody").replaceChildren();
    try {
      renderDetail(await api(`/api/jobs/${encodeURIComponent(jobId)}`));
    } catch (error) {
      showNotice(`Could not load job ${jobId}: ${error.message}`);
      return;
    }
    $("#detail").showModal();
    openDetailStream(0); // from 0: the whole history, then live
  }

  // -- wiring ----------------------------------------------------------------------------------

  function start() {
    readFiltersFromUrl();
    $("#filters").addEventListener("submit", (event) => event.preventDefault());
    $("#filter-status").addEventListener("change", (event) => setFilters({ status: event.target.value }));
    let typing = null;
    $("#filter-type").addEventListener("input", (event) => {
      clearTimeout(typing);
      typing = setTimeout(() => setFilters({ jobType: event.target.value.trim() }), REFRESH_DELAY_MS);
    });
    $("#page-size").addEventListener("change", (event) => setFilters({ limit: Number(event.target.value) }));
    let searching = null;
    $("#search").addEventListener("input", () => {
      clearTimeout(searching);
      searching = setTimeout(onSearchInput, REFRESH_DELAY_MS);
    });
    for (const tab of document.querySelectorAll(".view-tab")) {
      tab.addEventListener("click", () => setFilters({ view: tab.dataset.view }));
    }
    $("#freeze").addEventListener("click", () => setFrozen(!frozen.on));
    $("#follow").addEventListener("click", () => setFrozen(false));
    $("#show-changes").addEventListener("click", reloadJobs);
    bulk.wire();
    setInterval(tick, TICK_MS);
    $("#prev-page").addEventListener("click", () => setFilters({ offset: Math.max(0, state.offset - state.limit) }));
    $("#next-page").addEventListener("click", () => setFilters({ offset: state.offset + state.limit }));
    $("#detail-close").addEventListener("click", () => $("#detail").close());
    $("#detail").addEventListener("close", () => {
      closeDetailStream();
      detail.jobId = null;
    });
    // Close the streams when the page is left: a page kept in the back/forward cache would
    // otherwise hold its connections open and keep the server from shutting down promptly.
    window.addEventListener("pagehide", () => {
      liveSource.close();
      closeDetailStream();
    });
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) connect();
    });
    connect();
    Promise.all([loadCounts(), loadJobs()]).catch((error) => showNotice(error.message));
  }

  start();
})();
