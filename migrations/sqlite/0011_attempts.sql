-- The history of a job's attempts (issue 13): each attempt that ended other than by completing
-- (failed, lease expired, cancelled) becomes a row with its worker, times, error and traceback.
-- A completed attempt is the job row itself, and a handed-back one (graceful stop) did not count.

-- When the current attempt was claimed (started_at keeps the first attempt's start).
ALTER TABLE jobs ADD COLUMN attempt_started_at REAL;
-- The traceback of the last attempt that failed with one; every other way of ending an attempt
-- sets it NULL, so the trigger below never copies an older attempt's traceback.
ALTER TABLE jobs ADD COLUMN traceback TEXT;

CREATE TABLE job_attempts (
    id         INTEGER PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- The job's attempt number; a retried job counts from 1 again, so (job_id, attempt) repeats.
    attempt    INTEGER NOT NULL,
    worker_id  TEXT,
    started_at REAL,
    ended_at   REAL NOT NULL,
    -- 'failed' (retried or not: the job's status says) or 'cancelled'.
    outcome    TEXT NOT NULL,
    error      TEXT,
    traceback  TEXT
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, id);

-- A trigger, not a statement in each write: every path that ends an attempt (a worker's fail,
-- the reaper, a cancel acknowledged, an operator's forced PUT) is recorded the same way, from
-- the row before and after, in the same transaction. A completion (status 'completed') and a
-- hand-back (attempts decremented) are not attempts that ended badly and are left out; the
-- WHEN clause is all they cost.
CREATE TRIGGER jobs_attempt_ended AFTER UPDATE OF lease_expires_at ON jobs
WHEN OLD.lease_expires_at IS NOT NULL AND NEW.lease_expires_at IS NULL
     AND NEW.status <> 'completed' AND NEW.attempts = OLD.attempts
BEGIN
    INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, ended_at, outcome, error, traceback)
    VALUES (OLD.id, OLD.attempts, OLD.worker_id, OLD.attempt_started_at, NEW.updated_at,
            CASE WHEN NEW.status = 'cancelled' THEN 'cancelled' ELSE 'failed' END,
            NEW.error, NEW.traceback);
END;
