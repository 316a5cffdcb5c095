-- Every statement jobqueue runs against SQLite. Blocks start with "-- name: <query>" and a line
-- saying what they do; store.py loads them once at import. Values are always bound
-- parameters. Invariant used throughout: a job is held by a worker exactly when
-- lease_expires_at IS NOT NULL, and the holder is whoever presents claim_token.

-- name: insert_job
-- Create a job; with an idempotency key already used, or a unique key held by an unfinished job,
-- nothing is written and no row returns. :status is 'queued', or 'blocked' for a job whose
-- dependencies (:depends_on, a JSON array) have not all finished.
INSERT INTO jobs (id, status, progress, job_type, priority, request_data, created_at, updated_at,
                  max_attempts, run_at, timeout, idempotency_key, idempotency_fingerprint, event_seq,
                  concurrency_key, depends_on, on_dependency_failure, unique_key, trace_context)
VALUES (:id, :status, 0, :job_type, :priority, :request_data, :now, :now,
        :max_attempts, :run_at, :timeout, :idempotency_key, :fingerprint, 1,
        :concurrency_key, :depends_on, :on_dependency_failure, :unique_key, :trace_context)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: insert_dependencies
-- Record a new job's dependencies (the JSON array :depends_on), indexed by the job depended on.
INSERT INTO job_dependencies (job_id, depends_on)
SELECT :id, value FROM json_each(:depends_on);

-- name: known_jobs
-- Which of the ids in the JSON array :ids exist (a new job's dependencies must).
SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: mark_dependencies
-- Flag the jobs a new job depends on, so finishing them looks for their dependents; returns
-- their statuses, which decide the new job's own.
UPDATE jobs SET has_dependents = 1
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, status;

-- name: cancel_dependents
-- A job that did not complete cancels its blocked dependents whose policy is 'cancel'; :reason
-- names it. (Their own dependents follow: the store walks the cascade.)
UPDATE jobs SET event_seq = event_seq + 1, status = 'cancelled', completed_at = :now,
    updated_at = :now, message = :reason, error = :reason
WHERE status = 'blocked' AND on_dependency_failure = 'cancel'
  AND id IN (SELECT job_id FROM job_dependencies WHERE depends_on = :id)
RETURNING *;

-- name: cancel_blocked_job
-- A new job whose dependency had already failed (policy 'cancel'): cancelled at once.
UPDATE jobs SET event_seq = event_seq + 1, status = 'cancelled', completed_at = :now,
    updated_at = :now, message = :reason, error = :reason
WHERE id = :id
RETURNING *;

-- name: release_dependents
-- Blocked dependents of a job that just finished, whose dependencies have all finished now
-- (all completed, under the policy 'cancel'), join the queue. A deleted dependency counts as
-- finished. run_at is kept: a dependent created with a delay still waits for it.
UPDATE jobs SET event_seq = event_seq + 1, status = 'queued', updated_at = :now
WHERE status = 'blocked'
  AND id IN (SELECT job_id FROM job_dependencies WHERE depends_on = :id)
  AND NOT EXISTS (
      SELECT 1 FROM job_dependencies d JOIN jobs j ON j.id = d.depends_on
      WHERE d.job_id = jobs.id
        AND (j.status NOT IN ('completed', 'failed', 'cancelled')
             OR (j.status <> 'completed' AND jobs.on_dependency_failure = 'cancel'))
  )
RETURNING *;

-- name: get_unfinished_job_by_unique_key
-- The unfinished job holding a unique key.
SELECT * FROM jobs WHERE unique_key = :key AND status NOT IN ('completed', 'failed', 'cancelled');

-- name: debounce_job
-- A debounced repeat of a unique key while its job still waits (not claimed): the newer request
-- data replaces the old, and the job waits :run_at again.
UPDATE jobs SET event_seq = event_seq + 1, request_data = :request_data, run_at = :run_at,
    updated_at = :now
WHERE unique_key = :key AND status IN ('queued', 'pending', 'blocked')
RETURNING *;

-- name: insert_new_jobs
-- Create jobs without an idempotency key: every new job of one transaction in one executemany,
-- just before its events. Nothing can conflict (fresh ids), so nothing needs to come back: the
-- repository builds the returned jobs from these values and the defaults of the columns.
-- Positional, plain ? (sqlite3 deprecates numbered ?NNN with a sequence since Python 3.12):
-- (id, job_type, priority, request_data, now, now, max_attempts, run_at, timeout, concurrency_key,
-- trace_context).
INSERT INTO jobs (id, status, progress, job_type, priority, request_data, created_at, updated_at,
                  max_attempts, run_at, timeout, event_seq, concurrency_key, trace_context)
VALUES (?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?);

-- name: get_job
-- One job by id.
SELECT * FROM jobs WHERE id = :id;

-- name: get_job_status
-- The status of one job (why a change was refused).
SELECT status FROM jobs WHERE id = :id;

-- name: get_job_by_idempotency_key
-- The job created earlier with this idempotency key.
SELECT * FROM jobs WHERE idempotency_key = :key;

-- name: update_job
-- Apply a validated change (rules.plan_update); NULL parameters leave a column as it is (the *_set
-- flags allow clearing). Leaving the active statuses drops the lease; entering one starts a lease
-- without a claim token (nobody holds a job started this way). Only the holder's own update keeps
-- its claim: any other change, a forced one included, clears the token and so fences it out.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = coalesce(:status, status),
    progress = coalesce(:progress, progress),
    message = CASE WHEN :message_set THEN :message ELSE message END,
    result_data = CASE WHEN :result_set THEN :result_data ELSE result_data END,
    error = CASE WHEN :error_set THEN :error ELSE error END,
    worker_id = CASE WHEN :worker_set THEN :worker_id
                     WHEN :becomes_waiting THEN NULL ELSE worker_id END,
    started_at = CASE WHEN :becomes_active THEN coalesce(started_at, :now) ELSE started_at END,
    attempt_started_at = CASE WHEN :becomes_active THEN :now ELSE attempt_started_at END,
    traceback = CASE WHEN :leaves_active THEN NULL ELSE traceback END,
    completed_at = CASE WHEN :becomes_terminal THEN :now ELSE completed_at END,
    lease_expires_at = CASE WHEN :becomes_active THEN :now + :lease
                            WHEN :leaves_active THEN NULL
                            WHEN lease_expires_at IS NOT NULL THEN :now + :lease
                            ELSE NULL END,
    claim_token = CASE WHEN :keeps_claim THEN claim_token ELSE NULL END,
    run_at = CASE WHEN :becomes_waiting THEN :now ELSE run_at END,
    updated_at = :now
WHERE id = :id
RETURNING *;

-- name: report_progress
-- Progress (and optionally a running status) from the holder of the claim; counts as a heartbeat.
UPDATE jobs SET
    event_seq = event_seq + 1,
    progress = :progress,
    message = coalesce(:message, message),
    status = coalesce(:status, status),
    lease_expires_at = :now + :lease,
    updated_at = :now
WHERE id = :id AND claim_token = :token AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: claim_jobs
-- Atomically claim up to :limit due waiting jobs of any type, best priority then oldest first.
-- INDEXED BY: without statistics the planner prefers jobs_status_created and sorts every
-- waiting job on each claim (O(queue) per claim, ~0.2 s with 40k queued); jobs_claim is
-- already in claim order, so the scan stops after :limit rows.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'processing',
    worker_id = :worker_id,
    attempts = attempts + 1,
    claim_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease,
    started_at = coalesce(started_at, :now),
    attempt_started_at = :now,
    updated_at = :now
WHERE id IN (
    SELECT id FROM jobs INDEXED BY jobs_claim
    WHERE status IN ('queued', 'pending') AND run_at <= :now
    ORDER BY priority DESC, created_at
    LIMIT :limit
)
RETURNING *;

-- name: claim_jobs_of_type
-- The claim restricted to one job type (a worker's usual claim): it walks that type's range of
-- jobs_claim_by_type, already in claim order, so other types' backlog is never read.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'processing',
    worker_id = :worker_id,
    attempts = attempts + 1,
    claim_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease,
    started_at = coalesce(started_at, :now),
    attempt_started_at = :now,
    updated_at = :now
WHERE id IN (
    SELECT id FROM jobs INDEXED BY jobs_claim_by_type
    WHERE job_type = :job_type AND status IN ('queued', 'pending') AND run_at <= :now
    ORDER BY priority DESC, created_at
    LIMIT :limit
)
RETURNING *;

-- name: claim_candidates_of_type
-- The first :limit due waiting jobs of one type in claim order: one arm of a claim of several
-- types (the arms' candidates are merged in claim order, then claimed by rowid).
SELECT rowid, priority, created_at FROM jobs INDEXED BY jobs_claim_by_type
WHERE job_type = :job_type AND status IN ('queued', 'pending') AND run_at <= :now
ORDER BY priority DESC, created_at
LIMIT :limit;

-- name: claim_jobs_by_rowid
-- Claim the jobs whose rowids are in the JSON array :rowids: candidates chosen in the same
-- write transaction. By rowid, so each is one lookup: with "id IN (...) AND status IN (...)"
-- the planner walked the whole jobs_claim index instead (O(queue) per claim).
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'processing',
    worker_id = :worker_id,
    attempts = attempts + 1,
    claim_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease,
    started_at = coalesce(started_at, :now),
    attempt_started_at = :now,
    updated_at = :now
WHERE rowid IN (SELECT value FROM json_each(:rowids))
RETURNING *;

-- name: claim_candidates_except
-- The first :limit due waiting jobs of any type but those in the JSON array :excluded (paused and
-- limited types, whose candidates are chosen apart), in claim order: the claim of any type once
-- some type has controls. It walks jobs_claim past the excluded types' waiting jobs, so a
-- backlog of a paused type costs each such claim a scan of it (workers that name their types,
-- the usual case, walk only their own types' ranges).
SELECT rowid, priority, created_at FROM jobs INDEXED BY jobs_claim
WHERE status IN ('queued', 'pending') AND run_at <= :now
  AND job_type NOT IN (SELECT value FROM json_each(:excluded))
ORDER BY priority DESC, created_at
LIMIT :limit;

-- name: waiting_of_type
-- Every due waiting job of one type in claim order, with its concurrency key: read lazily by the
-- claim of a type with max_running_per_key, which stops as soon as it has what it may start.
SELECT rowid, priority, created_at, concurrency_key FROM jobs INDEXED BY jobs_claim_by_type
WHERE job_type = :job_type AND status IN ('queued', 'pending') AND run_at <= :now
ORDER BY priority DESC, created_at;

-- name: heartbeat
-- Extend the lease of a held job; returns whether a cancel was requested meanwhile.
UPDATE jobs SET lease_expires_at = :now + :lease
WHERE id = :id AND claim_token = :token AND lease_expires_at IS NOT NULL
RETURNING cancel_requested;

-- name: complete_job
-- The holder finishes the job successfully.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'completed',
    progress = 100,
    result_data = :result_data,
    message = coalesce(:message, message),
    error = NULL,
    completed_at = :now,
    updated_at = :now,
    lease_expires_at = NULL
WHERE id = :id AND claim_token = :token AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: fail_job
-- The holder's attempt failed: back to the queue at :retry_at while attempts remain (and
-- :retry is true), otherwise failed for good. The error is kept either way. A job whose cancel
-- was requested is not retried: running it again is what the cancel asked to prevent.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = CASE WHEN :retry AND NOT cancel_requested AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
    run_at = CASE WHEN :retry AND NOT cancel_requested AND attempts < max_attempts THEN :retry_at ELSE run_at END,
    completed_at = CASE WHEN :retry AND NOT cancel_requested AND attempts < max_attempts THEN NULL ELSE :now END,
    claim_token = CASE WHEN :retry AND NOT cancel_requested AND attempts < max_attempts THEN NULL ELSE claim_token END,
    worker_id = CASE WHEN :retry AND NOT cancel_requested AND attempts < max_attempts THEN NULL ELSE worker_id END,
    error = :error,
    traceback = :traceback,
    message = coalesce(:message, message),
    updated_at = :now,
    lease_expires_at = NULL
WHERE id = :id AND claim_token = :token AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: cancel_held_job
-- The holder acknowledges a cancel request: the job ends cancelled.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'cancelled',
    traceback = NULL,
    message = coalesce(:message, message),
    completed_at = :now,
    updated_at = :now,
    lease_expires_at = NULL
WHERE id = :id AND claim_token = :token AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: release_job
-- The holder hands the job back unfinished (graceful shutdown): queued again, attempt not counted.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'queued',
    attempts = max(attempts - 1, 0),
    run_at = :now,
    worker_id = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    message = coalesce(:message, message),
    updated_at = :now
WHERE id = :id AND claim_token = :token AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: cancel_waiting_job
-- Cancel a job no worker holds (waiting or blocked): it ends at once.
UPDATE jobs SET event_seq = event_seq + 1, status = 'cancelled', completed_at = :now, updated_at = :now,
    message = coalesce(:message, message)
WHERE id = :id AND status IN ('queued', 'pending', 'blocked')
RETURNING *;

-- name: request_cancel
-- Ask the holder of a running job to stop; it answers by ending the job cancelled.
UPDATE jobs SET event_seq = event_seq + 1, cancel_requested = 1, updated_at = :now
WHERE id = :id AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: cancel_requested_for_worker
-- Held jobs of one worker whose cancel was requested.
SELECT id FROM jobs WHERE cancel_requested = 1 AND worker_id = :worker_id
    AND lease_expires_at IS NOT NULL;

-- name: retry_job
-- Put a failed or cancelled job back in the queue with a fresh set of attempts.
UPDATE jobs SET event_seq = event_seq + 1, status = 'queued', progress = 0, attempts = 0, run_at = :now,
    result_data = NULL, error = NULL, message = NULL, worker_id = NULL, claim_token = NULL,
    lease_expires_at = NULL, cancel_requested = 0, completed_at = NULL, updated_at = :now
WHERE id = :id AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: reap_expired
-- Jobs whose lease lapsed (worker died or froze): requeued while attempts remain, otherwise
-- failed; a job whose cancel was requested ends cancelled.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
    error = CASE WHEN cancel_requested THEN error
                 WHEN attempts < max_attempts THEN
                     'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped heartbeating'
                 ELSE 'lease expired on all ' || attempts || ' attempts (last worker '
                      || coalesce(worker_id, '?') || '): the job may be crashing its worker' END,
    completed_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN :now ELSE NULL END,
    run_at = :now,
    worker_id = CASE WHEN cancel_requested OR attempts >= max_attempts THEN worker_id ELSE NULL END,
    claim_token = NULL,
    lease_expires_at = NULL,
    traceback = NULL,
    updated_at = :now
WHERE id IN (SELECT id FROM jobs WHERE lease_expires_at < :now ORDER BY lease_expires_at LIMIT :limit)
RETURNING *;

-- name: delete_terminal_job
-- Delete a finished job.
DELETE FROM jobs WHERE id = :id AND status IN ('completed', 'failed', 'cancelled') RETURNING id;

-- name: list_jobs
-- A page of jobs, newest first, optionally filtered (JSON array of statuses, type, worker, id
-- prefix, fields of request_data).
SELECT * FROM jobs
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:worker_id IS NULL OR worker_id = :worker_id)
  -- :data is a JSON array of {field, value, number}; a job matches when no filter fails. The
  -- field is an identifier (checked above the store), so '$.' || field is a plain JSON path.
  AND (:data IS NULL OR NOT EXISTS (
    SELECT 1 FROM json_each(:data) AS f
    WHERE (CASE json_type(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
      WHEN 'text' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.value')
      WHEN 'integer' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.number')
      WHEN 'real' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.number')
    END) IS NOT TRUE
  ))
ORDER BY created_at DESC
LIMIT :limit OFFSET :offset;

-- name: count_jobs
-- How many jobs the same filters match.
SELECT count(*) FROM jobs
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:worker_id IS NULL OR worker_id = :worker_id)
  -- :data is a JSON array of {field, value, number}; a job matches when no filter fails. The
  -- field is an identifier (checked above the store), so '$.' || field is a plain JSON path.
  AND (:data IS NULL OR NOT EXISTS (
    SELECT 1 FROM json_each(:data) AS f
    WHERE (CASE json_type(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
      WHEN 'text' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.value')
      WHEN 'integer' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.number')
      WHEN 'real' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.number')
    END) IS NOT TRUE
  ));

-- name: list_jobs_by_id_prefix
-- list_jobs of the jobs whose id starts with :id_prefix, a query of its own so the planner reads
-- them from the primary key: inside "IS NULL OR" it would scan every job. A range rather than
-- LIKE, which ignores case here: BINARY order is code point order, so the range holds exactly the
-- ids starting with the prefix.
SELECT * FROM jobs
WHERE id >= :id_prefix AND id < :id_prefix_end
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:worker_id IS NULL OR worker_id = :worker_id)
  -- :data is a JSON array of {field, value, number}; a job matches when no filter fails. The
  -- field is an identifier (checked above the store), so '$.' || field is a plain JSON path.
  AND (:data IS NULL OR NOT EXISTS (
    SELECT 1 FROM json_each(:data) AS f
    WHERE (CASE json_type(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
      WHEN 'text' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.value')
      WHEN 'integer' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.number')
      WHEN 'real' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.number')
    END) IS NOT TRUE
  ))
ORDER BY created_at DESC
LIMIT :limit OFFSET :offset;

-- name: count_jobs_by_id_prefix
-- How many jobs list_jobs_by_id_prefix matches.
SELECT count(*) FROM jobs
WHERE id >= :id_prefix AND id < :id_prefix_end
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:worker_id IS NULL OR worker_id = :worker_id)
  -- :data is a JSON array of {field, value, number}; a job matches when no filter fails. The
  -- field is an identifier (checked above the store), so '$.' || field is a plain JSON path.
  AND (:data IS NULL OR NOT EXISTS (
    SELECT 1 FROM json_each(:data) AS f
    WHERE (CASE json_type(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
      WHEN 'text' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.value')
      WHEN 'integer' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.number')
      WHEN 'real' THEN json_extract(jobs.request_data, '$.' || json_extract(f.value, '$.field'))
        = json_extract(f.value, '$.number')
    END) IS NOT TRUE
  ));

-- name: count_by_status
-- Jobs per status, optionally of one type.
SELECT status, count(*) FROM jobs
WHERE (:job_type IS NULL OR job_type = :job_type)
GROUP BY status;

-- name: waiting_summary
-- Waiting jobs due now, scheduled for later, and the oldest creation time among them.
SELECT
    coalesce(sum(run_at <= :now), 0),
    coalesce(sum(run_at > :now), 0),
    min(created_at)
FROM jobs
WHERE status IN ('queued', 'pending') AND (:job_type IS NULL OR job_type = :job_type);

-- name: recent_timings
-- Mean wait (creation to start) and run (start to finish) time of jobs finished since :since.
SELECT avg(started_at - created_at), avg(completed_at - started_at)
FROM jobs
WHERE completed_at >= :since AND started_at IS NOT NULL
  AND (:job_type IS NULL OR job_type = :job_type);

-- name: timings
-- Per job type, by name: how many of the :sample jobs finished most recently since :since had
-- started, and each percentile in the JSON array :percentiles of their wait (creation to start)
-- and run (start to finish) seconds: one row per type and percentile, in the array's order.
-- SQLite has no percentile aggregate, so window functions rank each type's values (from 0) and
-- a percentile p is interpolated between the values ranked floor(p * (n - 1)) and the next, as
-- PostgreSQL's percentile_cont does: both backends answer the same figures. The read is
-- bounded by :sample and walks the jobs_completed index newest first.
WITH finished AS (
    SELECT job_type, started_at - created_at AS wait, completed_at - started_at AS run
    FROM jobs
    WHERE completed_at >= :since AND started_at IS NOT NULL
    ORDER BY completed_at DESC
    LIMIT :sample
),
ranked AS (
    SELECT job_type, wait, run,
           row_number() OVER (PARTITION BY job_type ORDER BY wait) - 1 AS wait_rank,
           row_number() OVER (PARTITION BY job_type ORDER BY run) - 1 AS run_rank,
           count(*) OVER (PARTITION BY job_type) AS n
    FROM finished
),
points AS (
    SELECT key AS position, value * (n - 1) AS at, CAST(value * (n - 1) AS INTEGER) AS below,
           job_type, wait, run, wait_rank, run_rank, n
    FROM ranked, json_each(:percentiles)
)
SELECT job_type, position, max(n) AS count,
       sum(CASE wait_rank WHEN below THEN wait * (1 - (at - below))
                          WHEN below + 1 THEN wait * (at - below) ELSE 0 END) AS wait,
       sum(CASE run_rank WHEN below THEN run * (1 - (at - below))
                         WHEN below + 1 THEN run * (at - below) ELSE 0 END) AS run
FROM points
GROUP BY job_type, position
ORDER BY job_type, position;

-- name: ping
-- Cheap check that the database answers.
SELECT count(*) FROM schema_migrations;

-- name: any_lease_expired
-- Whether the reaper has work (a cheap read before taking the write lock).
SELECT 1 FROM jobs WHERE lease_expires_at < :now LIMIT 1;

-- name: next_event_id
-- The first free global event id: above every id ever used (AUTOINCREMENT keeps that in
-- sqlite_sequence, pruning included). Read once per write transaction, which holds the lock.
SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'job_events'), 0) + 1;

-- name: insert_event
-- Record changes of jobs, all events of one transaction in one executemany, just before COMMIT.
-- Positional: (id, job_id, seq, job_type, kind, status, progress, message, data, at).
INSERT INTO job_events (id, job_id, seq, job_type, kind, status, progress, message, data, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: job_events_after
-- A job's events after a per-job sequence number, in order (SSE replay with Last-Event-ID).
SELECT * FROM job_events WHERE job_id = :job_id AND seq > :after ORDER BY seq LIMIT :limit;

-- name: events_after
-- All jobs' events after a global id, in order (the all-jobs stream and cross-process polling).
SELECT * FROM job_events WHERE id > :after ORDER BY id LIMIT :limit;

-- name: event_ids_after
-- The ids of all jobs' events after a global id (the poll: most are this process's own, already
-- delivered, and need no more than their id).
SELECT id FROM job_events WHERE id > :after ORDER BY id LIMIT :limit;

-- name: events_by_ids
-- The events whose ids are in the JSON array :ids, in order.
SELECT * FROM job_events WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: new_work_events_by_ids
-- Of the events whose ids are in the JSON array :ids, those that put a job in the queue: the
-- same test as JobEvent.signals_new_work (created, retried, requeued, or unblocked: a status
-- event to queued).
SELECT * FROM job_events
WHERE id IN (SELECT value FROM json_each(:ids))
  AND (kind IN ('created', 'retried', 'requeued') OR (kind = 'status' AND status = 'queued'))
ORDER BY id;

-- name: last_event_id
-- The newest global event id (where a fresh poller starts).
SELECT coalesce(max(id), 0) FROM job_events;

-- name: prune_jobs
-- Delete up to :limit jobs in one status finished before :cutoff (their events go with them).
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE completed_at < :cutoff AND status = :status LIMIT :limit
)
RETURNING id;

-- name: incremental_vacuum
-- Return free pages to the file system (the database uses auto_vacuum = INCREMENTAL). Each step
-- of this statement frees one page, and Python's sqlite3 steps it once per execute.
PRAGMA incremental_vacuum;

-- name: freelist_count
-- Pages of the file that are free (left by deletes, not yet handed back).
PRAGMA freelist_count;

-- name: create_migrations_table
-- The migration runner's bookkeeping: one row per applied file.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- name: applied_migrations
-- The applied files, in order.
SELECT version, name, checksum FROM schema_migrations ORDER BY version;

-- name: record_migration
-- Record an applied file, in the same transaction as its statements.
INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?);

-- name: insert_api_key
-- A new API key; nothing when a key in use already has the name (api_keys_active_name).
INSERT INTO api_keys (id, name, key_hash, scopes, job_types, created_at)
VALUES (:id, :name, :key_hash, :scopes, :job_types, :now)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: get_api_key
-- One API key by id, with its hash (authentication).
SELECT * FROM api_keys WHERE id = :id;

-- name: list_api_keys
-- Every API key, revoked ones included, oldest first.
SELECT * FROM api_keys ORDER BY created_at, id;

-- name: any_api_key
-- Whether a key was ever created (revoked ones count: revoking every key must not open the API).
SELECT EXISTS (SELECT 1 FROM api_keys);

-- name: revoke_api_key_by_id
-- Revoke a key by id (a key revoked before keeps its first revocation time).
UPDATE api_keys SET revoked_at = coalesce(revoked_at, :now) WHERE id = :key RETURNING *;

-- name: revoke_api_key_by_name
-- Revoke the key in use with this name.
UPDATE api_keys SET revoked_at = :now WHERE name = :key AND revoked_at IS NULL RETURNING *;

-- name: delete_sessions_of_key
-- A revoked key's browser sessions end with it.
DELETE FROM api_sessions WHERE key_id = :id;

-- name: touch_api_key
-- Record a use of the key, unless one was recorded within :interval seconds.
UPDATE api_keys SET last_used_at = :now
WHERE id = :id AND (last_used_at IS NULL OR last_used_at <= :now - :interval);

-- name: delete_expired_sessions
-- Sessions past their expiry (cleared whenever a session is created).
DELETE FROM api_sessions WHERE expires_at <= :now;

-- name: insert_session
-- A browser's login.
INSERT INTO api_sessions (token_hash, key_id, bootstrap_proof, created_at, expires_at)
VALUES (:token_hash, :key_id, :bootstrap_proof, :now, :expires_at);

-- name: get_session
-- A live session by its token's hash, with the key it was made with (NULL columns for the
-- bootstrap key).
SELECT s.bootstrap_proof AS session_bootstrap_proof, s.expires_at AS session_expires_at, k.*
FROM api_sessions s LEFT JOIN api_keys k ON k.id = s.key_id
WHERE s.token_hash = :token_hash AND s.expires_at > :now;

-- name: delete_session
-- Log out.
DELETE FROM api_sessions WHERE token_hash = :token_hash;

-- == Worker pools you can see (issue 12) ===============================================
-- name: register_worker
-- A pool announces itself, or renews its registration (its heartbeat); a pool whose row lapsed
-- and was deleted comes back with a new started_at.
INSERT INTO workers (id, host, pid, job_types, concurrency, started_at, heartbeat_at, expires_at)
VALUES (:id, :host, :pid, :job_types, :concurrency, :now, :now, :expires_at)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, job_types = excluded.job_types,
    concurrency = excluded.concurrency, heartbeat_at = excluded.heartbeat_at,
    expires_at = excluded.expires_at
RETURNING *;

-- name: delete_worker
-- A pool stopped.
DELETE FROM workers WHERE id = :id RETURNING id;

-- name: delete_lapsed_workers
-- Pools whose heartbeat lapsed (the process died or froze).
DELETE FROM workers WHERE expires_at < :now RETURNING id;

-- name: live_workers
-- Every pool whose registration has not lapsed, oldest first.
SELECT * FROM workers WHERE expires_at >= :now ORDER BY started_at, id;

-- name: held_jobs_of_live_workers
-- The jobs live pools hold: how many per pool, and the ids of the :shown held longest.
SELECT worker_id, id, held FROM (
    SELECT worker_id, id,
           row_number() OVER (PARTITION BY worker_id ORDER BY started_at, id) AS n,
           count(*) OVER (PARTITION BY worker_id) AS held
    FROM jobs
    WHERE lease_expires_at IS NOT NULL
      AND worker_id IN (SELECT id FROM workers WHERE expires_at >= :now)
)
WHERE n <= :shown
ORDER BY worker_id, n;

-- name: live_worker_types
-- The job types some live pool serves.
SELECT DISTINCT j.value FROM workers w, json_each(w.job_types) j WHERE w.expires_at >= :now;

-- name: waiting_types
-- The job types that have waiting jobs (one probe per type through jobs_claim_by_type).
SELECT DISTINCT job_type FROM jobs WHERE status IN ('queued', 'pending');

-- == Bulk operations (issue 12) =================================================================

-- name: get_jobs_by_idempotency_keys
-- The jobs created earlier with any of the keys in the JSON array :keys (a batch's replays).
SELECT * FROM jobs WHERE idempotency_key IN (SELECT value FROM json_each(:keys));

-- name: retry_failed_of_type
-- Put up to :limit failed jobs of one type back in the queue (as retry_job), oldest failure first.
UPDATE jobs SET event_seq = event_seq + 1, status = 'queued', progress = 0, attempts = 0, run_at = :now,
    result_data = NULL, error = NULL, message = NULL, worker_id = NULL, claim_token = NULL,
    lease_expires_at = NULL, cancel_requested = 0, completed_at = NULL, updated_at = :now
WHERE id IN (
    SELECT id FROM jobs WHERE job_type = :job_type AND status = 'failed'
    ORDER BY completed_at, id LIMIT :limit
)
RETURNING *;

-- name: any_failed_of_type
-- Whether failed jobs of the type remain (a bulk retry says so).
SELECT EXISTS (SELECT 1 FROM jobs WHERE job_type = :job_type AND status = 'failed');

-- name: cancel_waiting_of_type
-- Cancel up to :limit waiting jobs of one type (blocked ones too) (as cancel_waiting_job), oldest first.
UPDATE jobs SET event_seq = event_seq + 1, status = 'cancelled', completed_at = :now, updated_at = :now,
    message = coalesce(:message, message)
WHERE id IN (
    SELECT id FROM jobs WHERE job_type = :job_type AND status IN ('queued', 'pending', 'blocked')
    ORDER BY created_at, id LIMIT :limit
)
RETURNING *;

-- name: any_waiting_of_type
-- Whether waiting jobs of the type remain (a bulk cancel says so).
SELECT EXISTS (SELECT 1 FROM jobs WHERE job_type = :job_type AND status IN ('queued', 'pending', 'blocked'));

-- name: purge_jobs
-- Delete up to :limit finished jobs in the statuses of the JSON array :statuses, optionally of
-- one type and finished before :before, oldest first (their events go with them).
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE status IN (SELECT value FROM json_each(:statuses))
      AND (:job_type IS NULL OR job_type = :job_type)
      AND (:before IS NULL OR completed_at < :before)
    ORDER BY completed_at, id LIMIT :limit
)
RETURNING id;

-- name: any_to_purge
-- Whether jobs matching a purge remain.
SELECT EXISTS (
    SELECT 1 FROM jobs
    WHERE status IN (SELECT value FROM json_each(:statuses))
      AND (:job_type IS NULL OR job_type = :job_type)
      AND (:before IS NULL OR completed_at < :before)
);

-- name: any_lapsed_worker
-- Whether a registration lapsed (a cheap read before taking the write lock).
SELECT 1 FROM workers WHERE expires_at < :now LIMIT 1;

-- name: type_controls_of
-- The controls of the job types in the JSON array :job_types, or of every type when it is NULL.
-- A claim reads this first: a primary-key lookup per type, nothing when no type has controls.
SELECT * FROM job_type_controls
WHERE :job_types IS NULL OR job_type IN (SELECT value FROM json_each(:job_types))
ORDER BY job_type;

-- name: type_control
-- The controls of one job type (a worker's usual claim names one).
SELECT * FROM job_type_controls WHERE job_type = :job_type;

-- name: type_usage
-- What the limits of one type count: its held jobs (through jobs_held_by_type) and its starts
-- after :since (the rate window; NULL counts none).
SELECT (SELECT count(*) FROM jobs WHERE job_type = :job_type AND lease_expires_at IS NOT NULL) AS held,
       (SELECT count(*) FROM job_type_starts WHERE job_type = :job_type AND at > :since) AS starts;

-- name: held_by_key
-- Held jobs of one type per concurrency key (jobs without a key count only against max_running).
SELECT concurrency_key, count(*) AS held FROM jobs
WHERE job_type = :job_type AND lease_expires_at IS NOT NULL AND concurrency_key IS NOT NULL
GROUP BY concurrency_key;

-- name: starts_after
-- The starts of one type after :since, oldest first (when the rate limit allows the next one).
SELECT at FROM job_type_starts WHERE job_type = :job_type AND at > :since ORDER BY at;

-- name: record_starts
-- The starts of one claim: one row per started job of a rate-limited type, whose types are the
-- JSON array :job_types (a type once per job).
INSERT INTO job_type_starts (job_type, at) SELECT value, :now FROM json_each(:job_types);

-- name: forget_starts_before
-- Starts that left the rate window of their type (the claim clears them as it records new ones).
DELETE FROM job_type_starts WHERE job_type = :job_type AND at <= :before;

-- name: forget_starts
-- Every start of a type (its rate limit was removed).
DELETE FROM job_type_starts WHERE job_type = :job_type;

-- name: set_type_controls
-- Change the controls of a type: a field whose *_set flag is false keeps its value (a new row
-- takes the defaults), so two operators changing different fields do not undo each other.
INSERT INTO job_type_controls (job_type, paused, max_running, max_running_per_key, rate_limit,
                               rate_period, updated_at)
VALUES (:job_type, coalesce(:paused, 0), :max_running, :max_running_per_key, :rate_limit,
        :rate_period, :now)
ON CONFLICT (job_type) DO UPDATE SET
    paused = CASE WHEN :paused_set THEN :paused ELSE paused END,
    max_running = CASE WHEN :max_running_set THEN :max_running ELSE max_running END,
    max_running_per_key = CASE WHEN :per_key_set THEN :max_running_per_key ELSE max_running_per_key END,
    rate_limit = CASE WHEN :rate_set THEN :rate_limit ELSE rate_limit END,
    rate_period = CASE WHEN :rate_set THEN :rate_period ELSE rate_period END,
    updated_at = :now
RETURNING *;

-- name: drop_empty_type_controls
-- A type whose controls were all cleared has no row: its claims go the unlimited way again.
DELETE FROM job_type_controls
WHERE job_type = :job_type AND NOT paused AND max_running IS NULL AND max_running_per_key IS NULL
  AND rate_limit IS NULL;

-- name: all_type_controls
-- Every type's controls.
SELECT * FROM job_type_controls ORDER BY job_type;

-- name: count_by_type_and_status
-- Jobs per type and status (the list of job types; it reads every job, as the stats do).
SELECT job_type, status, count(*) AS jobs FROM jobs GROUP BY job_type, status;

-- name: ended_attempts
-- The last :limit attempts of a job that ended other than by completing, newest first.
SELECT * FROM job_attempts WHERE job_id = :job_id ORDER BY id DESC LIMIT :limit;

-- Periodic jobs (jobqueue/scheduler.py). Ticks are epoch seconds, as every instant here.

-- name: upsert_schedule
-- Create or replace a schedule. A replacement that ticks at the same instants (same cron or
-- interval, same zone) keeps next_run_at, so rewriting it (every worker start rewrites the
-- schedules declared in code) neither skips nor repeats a tick; pause and creation stay.
INSERT INTO schedules (name, job_type, cron, interval, timezone, request_data, priority,
                       max_attempts, timeout, missed, source, next_run_at, created_at, updated_at)
VALUES (:name, :job_type, :cron, :every, :timezone, :request_data, :priority,
        :max_attempts, :timeout, :missed, :source, :next_run_at, :now, :now)
ON CONFLICT (name) DO UPDATE SET
    job_type = excluded.job_type, cron = excluded.cron, interval = excluded.interval,
    timezone = excluded.timezone, request_data = excluded.request_data,
    priority = excluded.priority, max_attempts = excluded.max_attempts,
    timeout = excluded.timeout, missed = excluded.missed, source = excluded.source,
    next_run_at = CASE
        WHEN schedules.cron IS excluded.cron AND schedules.interval IS excluded.interval
             AND schedules.timezone = excluded.timezone
        THEN schedules.next_run_at ELSE excluded.next_run_at END,
    updated_at = excluded.updated_at
RETURNING *, created_at = :now AS created;

-- name: get_schedule
-- One schedule by name.
SELECT * FROM schedules WHERE name = :name;

-- name: list_schedules
-- Every schedule, by name.
SELECT * FROM schedules ORDER BY name;

-- name: delete_schedule
-- Delete a schedule (its jobs stay).
DELETE FROM schedules WHERE name = :name RETURNING name;

-- name: set_schedule_paused
-- Pause or resume; a resume also sets the next tick (:next_run_at, NULL: unchanged).
UPDATE schedules SET paused = :paused, next_run_at = coalesce(:next_run_at, next_run_at), updated_at = :now
WHERE name = :name
RETURNING *;

-- name: due_schedules
-- Unpaused schedules whose next tick is at or before :until, soonest first (schedules_due).
SELECT * FROM schedules WHERE paused = 0 AND next_run_at <= :until ORDER BY next_run_at LIMIT :limit;

-- name: fire_schedule
-- The compare-and-set of a tick: move next_run_at from the tick :due to :next_run_at, unless
-- another scheduler moved it first (then no row returns and no job is made). Within a
-- millisecond, not equal: :due comes back from a datetime, which keeps microseconds only, and
-- two ticks of a schedule are at least a second apart.
UPDATE schedules SET next_run_at = :next_run_at, last_run_at = next_run_at, last_job_id = :job_id
WHERE name = :name AND paused = 0 AND abs(next_run_at - :due) < 0.001
RETURNING name;

-- name: skip_schedule_ticks
-- The compare-and-set of missed ticks skipped: as fire_schedule, without a job.
UPDATE schedules SET next_run_at = :next_run_at
WHERE name = :name AND paused = 0 AND abs(next_run_at - :due) < 0.001
RETURNING name;

-- name: set_schedule_last_job
-- The job of the last tick, when the tick's job existed already (its idempotency key).
UPDATE schedules SET last_job_id = :job_id WHERE name = :name;
