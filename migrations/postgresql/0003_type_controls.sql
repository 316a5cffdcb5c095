-- Flow control per job type (issue 12), as SQLite's 0007: pause, a global concurrency limit, a
-- limit per concurrency key and a rate limit. A claim of a limited type first locks the type's
-- row here (FOR UPDATE), so claims of that type from every host take turns and each counts the
-- jobs the previous one committed; claims of types without limits take no lock.
CREATE TABLE job_type_controls (
    job_type            text PRIMARY KEY,
    paused              boolean NOT NULL DEFAULT false,
    max_running         integer CHECK (max_running >= 0),
    max_running_per_key integer CHECK (max_running_per_key >= 1),
    rate_limit          integer CHECK (rate_limit >= 1),
    rate_period         double precision CHECK (rate_period > 0),
    updated_at          timestamptz NOT NULL,
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);

-- The starts of rate-limited types within their window (a sliding window log).
CREATE TABLE job_type_starts (
    job_type text NOT NULL,
    at       timestamptz NOT NULL
);
CREATE INDEX job_type_starts_type_at ON job_type_starts (job_type, at);

ALTER TABLE jobs ADD COLUMN concurrency_key text;
CREATE INDEX jobs_held_by_type ON jobs (job_type, concurrency_key) WHERE lease_expires_at IS NOT NULL;
