-- Flow control per job type (issue 12): pause, a global concurrency limit, a limit per
-- concurrency key and a rate limit. The claim reads this table in its own statement, so every
-- process and host sees the same controls; a type without a row has none.
CREATE TABLE job_type_controls (
    job_type            TEXT PRIMARY KEY,
    -- A paused type is not claimed; its running jobs finish. Survives restarts (it is a row).
    paused              INTEGER NOT NULL DEFAULT 0,
    -- At most this many jobs of the type held at once, across all workers; NULL: no limit.
    max_running         INTEGER CHECK (max_running >= 0),
    -- At most this many held jobs per jobs.concurrency_key of the type; NULL: no limit.
    max_running_per_key INTEGER CHECK (max_running_per_key >= 1),
    -- At most rate_limit starts (claims) in any window of rate_period seconds; NULL: no limit.
    rate_limit          INTEGER CHECK (rate_limit >= 1),
    rate_period         REAL CHECK (rate_period > 0),
    updated_at          REAL NOT NULL,
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);

-- The starts of rate-limited types within their window (a sliding window log: exact, and only
-- rate-limited types write it). The claim deletes entries older than the window.
CREATE TABLE job_type_starts (
    job_type TEXT NOT NULL,
    at       REAL NOT NULL
);
CREATE INDEX job_type_starts_type_at ON job_type_starts (job_type, at);

-- A tenant, user or any other partition of a type's jobs, for max_running_per_key.
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;
-- The claim counts held jobs of a limited type (and of one key) through this index.
CREATE INDEX jobs_held_by_type ON jobs (job_type, concurrency_key) WHERE lease_expires_at IS NOT NULL;
