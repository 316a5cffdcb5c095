-- Worker pools you can see (issue 12), as SQLite's 0010.
CREATE TABLE workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    job_types    jsonb NOT NULL,
    concurrency  integer NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX workers_expires ON workers (expires_at);
