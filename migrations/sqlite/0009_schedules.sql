-- Periodic jobs (issue 12). Every scheduler process (in each worker and server) reads due
-- schedules; a tick becomes a job through a compare-and-set of next_run_at in the same
-- transaction as the insert, and the job's idempotency key names the schedule and the tick,
-- so any number of schedulers make exactly one job per tick.
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    job_type     TEXT NOT NULL,
    -- Exactly one of a cron expression and an interval in seconds.
    cron         TEXT,
    interval     REAL CHECK (interval > 0),
    timezone     TEXT NOT NULL DEFAULT 'UTC',
    request_data TEXT,          -- JSON
    priority     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    timeout      REAL,
    -- What a scheduler does with ticks missed while none ran: 'skip' them, or 'catch_up' once.
    missed       TEXT NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'catch_up')),
    paused       INTEGER NOT NULL DEFAULT 0,
    -- 'code' (declared in a registry, written at worker start) or 'api'.
    source       TEXT NOT NULL DEFAULT 'api',
    next_run_at  REAL NOT NULL,
    last_run_at  REAL,
    last_job_id  TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    CHECK ((cron IS NULL) <> (interval IS NULL))
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE paused = 0;
