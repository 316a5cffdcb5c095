-- Every visible change of a job becomes an event, written in the same transaction as the change:
-- the database is the source of truth for live progress (Redis only delivers it faster).
ALTER TABLE jobs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;

CREATE TABLE job_events (
    -- Global order. AUTOINCREMENT so an id is never reused after pruning: a dashboard resuming
    -- the all-jobs stream with Last-Event-ID can never be handed somebody else's old id.
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Per-job sequence 1, 2, 3... (jobs.event_seq at the time): the SSE id of a job's stream.
    seq      INTEGER NOT NULL,
    job_type TEXT NOT NULL,
    kind     TEXT NOT NULL,
    status   TEXT NOT NULL,
    progress INTEGER NOT NULL,
    message  TEXT,
    data     TEXT,          -- JSON: the result on completion, the error on failure
    at       REAL NOT NULL
);
CREATE UNIQUE INDEX job_events_job_seq ON job_events (job_id, seq);
