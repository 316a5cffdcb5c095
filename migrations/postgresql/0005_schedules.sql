-- Periodic jobs (issue 12), as SQLite's 0009.
CREATE TABLE schedules (
    name         text PRIMARY KEY,
    job_type     text NOT NULL,
    cron         text,
    "interval"   double precision CHECK ("interval" > 0),
    timezone     text NOT NULL DEFAULT 'UTC',
    request_data jsonb,
    priority     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3,
    timeout      double precision,
    missed       text NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'catch_up')),
    paused       boolean NOT NULL DEFAULT false,
    source       text NOT NULL DEFAULT 'api',
    next_run_at  timestamptz NOT NULL,
    last_run_at  timestamptz,
    last_job_id  text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CHECK ((cron IS NULL) <> ("interval" IS NULL))
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE NOT paused;
