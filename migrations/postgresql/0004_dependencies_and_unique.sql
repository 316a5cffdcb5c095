-- Dependencies between jobs and unique keys (issue 12), as SQLite's 0008.
ALTER TABLE jobs ADD COLUMN on_dependency_failure text;
ALTER TABLE jobs ADD COLUMN depends_on jsonb;
ALTER TABLE jobs ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;

CREATE TABLE job_dependencies (
    job_id     text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    depends_on text NOT NULL,
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX job_dependencies_depends_on ON job_dependencies (depends_on);

ALTER TABLE jobs ADD COLUMN unique_key text;
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
