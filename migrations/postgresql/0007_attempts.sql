-- The history of a job's attempts (issue 13), as SQLite's 0011: a row per attempt that ended
-- other than by completing, written by a trigger from the row before and after the change.
ALTER TABLE jobs ADD COLUMN attempt_started_at timestamptz;
ALTER TABLE jobs ADD COLUMN traceback text;

CREATE TABLE job_attempts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    integer NOT NULL,
    worker_id  text,
    started_at timestamptz,
    ended_at   timestamptz NOT NULL,
    outcome    text NOT NULL,
    error      text,
    traceback  text
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, id);

CREATE FUNCTION jobqueue_attempt_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, ended_at, outcome, error, traceback)
    VALUES (OLD.id, OLD.attempts, OLD.worker_id, OLD.attempt_started_at, NEW.updated_at,
            CASE WHEN NEW.status = 'cancelled' THEN 'cancelled' ELSE 'failed' END,
            NEW.error, NEW.traceback);
    RETURN NULL;
END
$$;

-- The WHEN clause is evaluated without calling the function: a completion costs only that.
CREATE TRIGGER jobs_attempt_ended AFTER UPDATE OF lease_expires_at ON jobs
FOR EACH ROW
WHEN (OLD.lease_expires_at IS NOT NULL AND NEW.lease_expires_at IS NULL
      AND NEW.status <> 'completed' AND NEW.attempts = OLD.attempts)
EXECUTE FUNCTION jobqueue_attempt_ended();
