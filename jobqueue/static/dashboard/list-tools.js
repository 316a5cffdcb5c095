// Pure helpers of the dashboard's job list (dashboard.js): relative times and durations (the job
// page, job.js, shows its times with them too), the search box's grammar, and bounded
// concurrency for bulk actions. No DOM and no requests here.
"use strict";

window.jobqueueList = (() => {
  // "1.2 s", "3 min 4 s", "2 h 5 min": durations read at a glance (as on the job page).
  function duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  }

  // "3 s ago", "5 min ago", "2 h ago", "4 d ago": one unit, whole numbers, so a column of them
  // changes only when a number does.
  function ago(iso, now = Date.now()) {
    const seconds = Math.max(0, Math.floor((now - new Date(iso)) / 1000));
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  const seconds = (from, to) => (new Date(to) - new Date(from)) / 1000;

  // How long the job waited for its first start, and how long it ran: up to now while it still
  // waits or runs, null when it never started (or never will: cancelled while waiting).
  function waited(job, now = Date.now()) {
    if (job.started_at) return seconds(job.created_at, job.started_at);
    return job.completed_at ? null : seconds(job.created_at, now);
  }

  function ran(job, now = Date.now()) {
    if (!job.started_at) return null;
    return seconds(job.started_at, job.completed_at || now);
  }

  // The search box: an id prefix and/or `field=value` filters on request_data, e.g.
  // "3f2a9c", "user=ann", "3f2a user=ann n=7". A filter's value runs up to the next
  // `field=`, so it may hold spaces ("title=rain on a roof").
  const FIELD = /^([A-Za-z_][A-Za-z0-9_]{0,63})=(.*)$/s;
  const ID_PREFIX = /^[A-Za-z0-9_.:-]{4,64}$/;
  const MAX_FILTERS = 4;

  // -> {idPrefix, data: [[field, value]...]} or {error}
  function parseSearch(text) {
    const parsed = { idPrefix: "", data: [] };
    const tokens = text.trim().split(/\s+(?=[A-Za-z_][A-Za-z0-9_]*=)/).filter(Boolean);
    for (const token of tokens) {
      const filter = FIELD.exec(token);
      if (filter) {
        const value = filter[2].trim();
        if (!value) return { error: `${filter[1]}= needs a value` };
        if (parsed.data.some(([field]) => field === filter[1])) return { error: `${filter[1]} is given twice` };
        parsed.data.push([filter[1], value]);
      } else if (!parsed.idPrefix && ID_PREFIX.test(token)) {
        parsed.idPrefix = token;
      } else {
        return { error: `not understood: "${token}" (an id prefix of 4 or more characters, or field=value)` };
      }
    }
    if (parsed.data.length > MAX_FILTERS) return { error: `at most ${MAX_FILTERS} field=value filters` };
    return parsed;
  }

  // The search as text again (the URL keeps it as id_prefix and data.<field> parameters).
  function searchText({ idPrefix, data }) {
    return [idPrefix, ...data.map(([field, value]) => `${field}=${value}`)].filter(Boolean).join(" ");
  }

  // Run ``task`` on every item, at most ``limit`` at a time; resolves to one
  // {item, ok, value | error} per item, in order. Nothing is thrown.
  async function runBounded(items, limit, task) {
    const results = new Array(items.length);
    let next = 0;
    const lane = async () => {
      while (next < items.length) {
        const index = next++;
        try {
          results[index] = { item: items[index], ok: true, value: await task(items[index]) };
        } catch (error) {
          results[index] = { item: items[index], ok: false, error };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
    return results;
  }

  return { duration, ago, waited, ran, parseSearch, searchText, runBounded };
})();
