-- Dependencies between jobs and unique keys (issue 12).

-- A job with unfinished dependencies waits in status 'blocked' (not claimable, not in the
-- claim index) until all of them completed; on_dependency_failure says what happens when one
-- fails or is cancelled: 'cancel' (the default) or 'run'.
ALTER TABLE jobs ADD COLUMN on_dependency_failure TEXT;
-- The ids it waits for (JSON array; NULL: none), so every read of the job shows them at no
-- cost; job_dependencies below is the same list indexed the other way, for finishing a job.
ALTER TABLE jobs ADD COLUMN depends_on TEXT;
-- Set on a job that others depend on, so finishing a job without dependents (nearly all of
-- them) costs no lookup of its dependents.
ALTER TABLE jobs ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0;

CREATE TABLE job_dependencies (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (job_id, depends_on)
) WITHOUT ROWID;
CREATE INDEX job_dependencies_depends_on ON job_dependencies (depends_on);

-- At most one unfinished job per unique_key: a repeat returns the existing job.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
