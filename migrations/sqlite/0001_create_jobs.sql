-- The jobs table of the seed service. Timestamps are Unix epoch seconds (REAL, UTC): cheap to
-- compare and to add leases and delays to in SQL; the API renders them as ISO 8601.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    status       TEXT NOT NULL DEFAULT 'queued',
    progress     INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    job_type     TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    request_data TEXT,          -- JSON
    result_data  TEXT,          -- JSON
    message      TEXT,
    error        TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    started_at   REAL,
    completed_at REAL,
    worker_id    TEXT
);

-- Listing: newest first, optionally narrowed by status, type or worker.
CREATE INDEX jobs_created ON jobs (created_at DESC);
CREATE INDEX jobs_status_created ON jobs (status, created_at DESC);
CREATE INDEX jobs_type_created ON jobs (job_type, created_at DESC);
CREATE INDEX jobs_worker ON jobs (worker_id) WHERE worker_id IS NOT NULL;
