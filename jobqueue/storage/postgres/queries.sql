-- Every statement jobqueue runs against PostgreSQL. Blocks start with "-- name: <query>" and a
-- line saying what they do; store.py loads them once at import. Values are always bound
-- parameters, written %(name)s (connection.py numbers them for asyncpg). The same invariant as on SQLite: a job is held by a worker
-- exactly when lease_expires_at IS NOT NULL, and the holder is whoever presents claim_token.
-- Instants come from the application (%(now)s, a timestamptz), as on SQLite, so both backends
-- compare leases and run_at against the same clock.

-- name: insert_job
-- Create a job; with an idempotency key already used, or a unique key held by an unfinished job,
-- nothing is written and no row returns (a concurrent insert of the same key is waited for).
-- %(status)s is 'queued', or 'blocked' for a job whose dependencies (%(depends_on)s, a JSON
-- array) have not all finished.
INSERT INTO jobs (id, status, progress, job_type, priority, request_data, created_at, updated_at,
                  max_attempts, run_at, timeout, idempotency_key, idempotency_fingerprint, event_seq,
                  concurrency_key, depends_on, on_dependency_failure, unique_key, trace_context)
VALUES (%(id)s, %(status)s, 0, %(job_type)s, %(priority)s, %(request_data)s::jsonb, %(now)s, %(now)s,
        %(max_attempts)s, %(run_at)s, %(timeout)s, %(idempotency_key)s, %(fingerprint)s, 1,
        %(concurrency_key)s, %(depends_on)s::jsonb, %(on_dependency_failure)s, %(unique_key)s,
        %(trace_context)s)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: insert_dependencies
-- Record a new job's dependencies (the JSON array %(depends_on)s), indexed by the job depended on.
INSERT INTO job_dependencies (job_id, depends_on)
SELECT %(id)s, value FROM jsonb_array_elements_text(%(depends_on)s::jsonb);

-- name: known_jobs
-- Which of the ids in %(ids)s exist (a new job's dependencies must).
SELECT id FROM jobs WHERE id = ANY(%(ids)s::text[]);

-- name: mark_dependencies
-- Flag the jobs a new job depends on, so finishing them looks for their dependents; returns
-- their statuses, which decide the new job's own. The update locks them until the new job is
-- committed: a dependency finishing meanwhile waits, then sees its flag and the new dependent.
-- Locked in id order, so two inserts naming the same dependencies cannot deadlock.
UPDATE jobs SET has_dependents = true
WHERE id IN (SELECT id FROM jobs WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE)
RETURNING id, status;

-- name: lock_dependents
-- Lock the blocked dependents of a job that just finished, in id order, before deciding on them:
-- of two transactions finishing two dependencies of one job, the second to lock it decides after
-- the first committed, and so sees both dependencies finished (READ COMMITTED: each statement
-- reads what was committed when it started).
SELECT j.id FROM job_dependencies d JOIN jobs j ON j.id = d.job_id
WHERE d.depends_on = %(id)s AND j.status = 'blocked'
ORDER BY j.id
FOR UPDATE OF j;

-- name: cancel_dependents
-- A job that did not complete cancels its blocked dependents whose policy is 'cancel';
-- %(reason)s names it. (Their own dependents follow: the store walks the cascade.)
UPDATE jobs SET event_seq = event_seq + 1, status = 'cancelled', completed_at = %(now)s,
    updated_at = %(now)s, message = %(reason)s, error = %(reason)s
WHERE status = 'blocked' AND on_dependency_failure = 'cancel'
  AND id IN (SELECT job_id FROM job_dependencies WHERE depends_on = %(id)s)
RETURNING *;

-- name: cancel_blocked_job
-- A new job whose dependency had already failed (policy 'cancel'): cancelled at once.
UPDATE jobs SET event_seq = event_seq + 1, status = 'cancelled', completed_at = %(now)s,
    updated_at = %(now)s, message = %(reason)s, error = %(reason)s
WHERE id = %(id)s
RETURNING *;

-- name: release_dependents
-- Blocked dependents of a job that just finished, whose dependencies have all finished now
-- (all completed, under the policy 'cancel'), join the queue. A deleted dependency counts as
-- finished. run_at is kept: a dependent created with a delay still waits for it.
UPDATE jobs SET event_seq = event_seq + 1, status = 'queued', updated_at = %(now)s
WHERE status = 'blocked'
  AND id IN (SELECT job_id FROM job_dependencies WHERE depends_on = %(id)s)
  AND NOT EXISTS (
      SELECT 1 FROM job_dependencies d JOIN jobs j ON j.id = d.depends_on
      WHERE d.job_id = jobs.id
        AND (j.status NOT IN ('completed', 'failed', 'cancelled')
             OR (j.status <> 'completed' AND jobs.on_dependency_failure = 'cancel'))
  )
RETURNING *;

-- name: get_unfinished_job_by_unique_key
-- The unfinished job holding a unique key.
SELECT * FROM jobs
WHERE unique_key = %(key)s AND status NOT IN ('completed', 'failed', 'cancelled');

-- name: debounce_job
-- A debounced repeat of a unique key while its job still waits (not claimed): the newer request
-- data replaces the old, and the job waits until %(run_at)s again. A job claimed meanwhile does
-- not match once its claim committed (the row lock is waited for, then re-checked).
UPDATE jobs SET event_seq = event_seq + 1, request_data = %(request_data)s::jsonb,
    run_at = %(run_at)s, updated_at = %(now)s
WHERE unique_key = %(key)s AND status IN ('queued', 'pending', 'blocked')
RETURNING *;

-- name: insert_new_jobs
-- Create jobs without an idempotency key: every new job of one transaction in one statement,
-- just before its events, from one JSON array of rows (one parameter: encoding it is one C
-- call, where a parameter per column cost the driver more than the statement). Nothing can
-- conflict (fresh ids), so nothing needs to come back: the store builds the returned jobs.
INSERT INTO jobs (id, status, progress, job_type, priority, request_data, created_at, updated_at,
                  max_attempts, run_at, timeout, event_seq, concurrency_key, trace_context)
SELECT n.id, 'queued', 0, n.job_type, n.priority, n.request_data::jsonb, n.now, n.now,
       n.max_attempts, n.run_at, n.timeout, 1, n.concurrency_key, n.trace_context
FROM json_to_recordset(%(rows)s::json)
     AS n(id text, job_type text, priority integer, request_data json, now timestamptz,
          max_attempts integer, run_at timestamptz, timeout double precision, concurrency_key text,
          trace_context text);

-- name: get_job
-- One job by id.
SELECT * FROM jobs WHERE id = %(id)s;

-- name: get_job_for_update
-- One job by id, locked until the transaction ends (an unfenced update reads, decides, writes).
SELECT * FROM jobs WHERE id = %(id)s FOR UPDATE;

-- name: get_job_status
-- The status of one job (why a change was refused).
SELECT status FROM jobs WHERE id = %(id)s;

-- name: get_job_by_idempotency_key
-- The job created earlier with this idempotency key.
SELECT * FROM jobs WHERE idempotency_key = %(key)s;

-- name: update_job
-- Apply a validated change (rules.plan_update); NULL parameters leave a column as it is (the *_set
-- flags allow clearing). Leaving the active statuses drops the lease; entering one starts a lease
-- without a claim token (nobody holds a job started this way). Only the holder's own update keeps
-- its claim: any other change, a forced one included, clears the token and so fences it out.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = coalesce(%(status)s, status),
    progress = coalesce(%(progress)s, progress),
    message = CASE WHEN %(message_set)s THEN %(message)s ELSE message END,
    result_data = CASE WHEN %(result_set)s THEN %(result_data)s::jsonb ELSE result_data END,
    error = CASE WHEN %(error_set)s THEN %(error)s ELSE error END,
    worker_id = CASE WHEN %(worker_set)s THEN %(worker_id)s
                     WHEN %(becomes_waiting)s THEN NULL ELSE worker_id END,
    started_at = CASE WHEN %(becomes_active)s THEN coalesce(started_at, %(now)s::timestamptz) ELSE started_at END,
    attempt_started_at = CASE WHEN %(becomes_active)s THEN %(now)s::timestamptz ELSE attempt_started_at END,
    traceback = CASE WHEN %(leaves_active)s THEN NULL ELSE traceback END,
    completed_at = CASE WHEN %(becomes_terminal)s THEN %(now)s::timestamptz ELSE completed_at END,
    lease_expires_at = CASE WHEN %(becomes_active)s THEN %(lease_until)s::timestamptz
                            WHEN %(leaves_active)s THEN NULL
                            WHEN lease_expires_at IS NOT NULL THEN %(lease_until)s::timestamptz
                            ELSE NULL END,
    claim_token = CASE WHEN %(keeps_claim)s THEN claim_token ELSE NULL END,
    run_at = CASE WHEN %(becomes_waiting)s THEN %(now)s::timestamptz ELSE run_at END,
    updated_at = %(now)s::timestamptz
WHERE id = %(id)s
RETURNING *;

-- name: claim_jobs
-- Atomically claim up to %(limit)s due waiting jobs of any type, best priority then oldest
-- first. MATERIALIZED: the picked rows are locked once, and the UPDATE joins exactly them
-- (an inlined subquery may be re-evaluated). SKIP LOCKED: concurrent claimers take the next
-- jobs instead of queueing behind each other's row locks. The scan follows jobs_claim, whose
-- predicate and order are the WHERE and ORDER BY here, so it stops after %(limit)s rows.
WITH picked AS MATERIALIZED (
    SELECT id FROM jobs
    WHERE status IN ('queued', 'pending') AND run_at <= %(now)s
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'processing',
    worker_id = %(worker_id)s,
    attempts = attempts + 1,
    claim_token = replace(gen_random_uuid()::text, '-', ''),
    lease_expires_at = %(lease_until)s,
    started_at = coalesce(started_at, %(now)s),
    attempt_started_at = %(now)s,
    updated_at = %(now)s
FROM picked
WHERE jobs.id = picked.id
RETURNING jobs.*;

-- name: claim_jobs_of_types
-- The same claim restricted to the job types in %(job_types)s: one arm per type (LATERAL),
-- each walking its own range of jobs_claim_by_type, so a backlog of other types is never
-- read; the arms' candidates are merged in claim order. An arm locks at most %(limit)s rows.
WITH picked AS MATERIALIZED (
    SELECT arm.id FROM unnest(%(job_types)s::text[]) AS wanted(job_type)
    CROSS JOIN LATERAL (
        SELECT id, priority, created_at FROM jobs
        WHERE jobs.job_type = wanted.job_type
          AND status IN ('queued', 'pending') AND run_at <= %(now)s
        ORDER BY priority DESC, created_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS arm
    ORDER BY arm.priority DESC, arm.created_at
    LIMIT %(limit)s
)
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'processing',
    worker_id = %(worker_id)s,
    attempts = attempts + 1,
    claim_token = replace(gen_random_uuid()::text, '-', ''),
    lease_expires_at = %(lease_until)s,
    started_at = coalesce(started_at, %(now)s),
    attempt_started_at = %(now)s,
    updated_at = %(now)s
FROM picked
WHERE jobs.id = picked.id
RETURNING jobs.*;

-- name: heartbeat
-- Extend the lease of a held job; returns whether a cancel was requested meanwhile.
UPDATE jobs SET lease_expires_at = %(lease_until)s
WHERE id = %(id)s AND claim_token = %(token)s AND lease_expires_at IS NOT NULL
RETURNING cancel_requested;

-- name: fail_job
-- The holder's attempt failed: back to the queue at %(retry_at)s::timestamptz while attempts remain (and
-- %(retry)s is true), otherwise failed for good. The error is kept either way. A job whose
-- cancel was requested is not retried: running it again is what the cancel asked to prevent.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = CASE WHEN %(retry)s AND NOT cancel_requested AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
    run_at = CASE WHEN %(retry)s AND NOT cancel_requested AND attempts < max_attempts THEN %(retry_at)s::timestamptz ELSE run_at END,
    completed_at = CASE WHEN %(retry)s AND NOT cancel_requested AND attempts < max_attempts THEN NULL ELSE %(now)s::timestamptz END,
    claim_token = CASE WHEN %(retry)s AND NOT cancel_requested AND attempts < max_attempts THEN NULL ELSE claim_token END,
    worker_id = CASE WHEN %(retry)s AND NOT cancel_requested AND attempts < max_attempts THEN NULL ELSE worker_id END,
    error = %(error)s,
    traceback = %(traceback)s,
    message = coalesce(%(message)s, message),
    updated_at = %(now)s::timestamptz,
    lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: cancel_held_job
-- The holder acknowledges a cancel request: the job ends cancelled.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'cancelled',
    traceback = NULL,
    message = coalesce(%(message)s, message),
    completed_at = %(now)s,
    updated_at = %(now)s,
    lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: release_job
-- The holder hands the job back unfinished (graceful shutdown): queued again, attempt not counted.
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = 'queued',
    attempts = greatest(attempts - 1, 0),
    run_at = %(now)s,
    worker_id = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    message = coalesce(%(message)s, message),
    updated_at = %(now)s
WHERE id = %(id)s AND claim_token = %(token)s AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: cancel_waiting_job
-- Cancel a job no worker holds (waiting or blocked): it ends at once.
UPDATE jobs SET event_seq = event_seq + 1, status = 'cancelled', completed_at = %(now)s,
    updated_at = %(now)s, message = coalesce(%(message)s, message)
WHERE id = %(id)s AND status IN ('queued', 'pending', 'blocked')
RETURNING *;

-- name: request_cancel
-- Ask the holder of a running job to stop; it answers by ending the job cancelled.
UPDATE jobs SET event_seq = event_seq + 1, cancel_requested = true, updated_at = %(now)s
WHERE id = %(id)s AND lease_expires_at IS NOT NULL
RETURNING *;

-- name: cancel_requested_for_worker
-- Held jobs of one worker whose cancel was requested.
SELECT id FROM jobs WHERE cancel_requested AND worker_id = %(worker_id)s
    AND lease_expires_at IS NOT NULL;

-- name: retry_job
-- Put a failed or cancelled job back in the queue with a fresh set of attempts.
UPDATE jobs SET event_seq = event_seq + 1, status = 'queued', progress = 0, attempts = 0,
    run_at = %(now)s, result_data = NULL, error = NULL, message = NULL, worker_id = NULL,
    claim_token = NULL, lease_expires_at = NULL, cancel_requested = false, completed_at = NULL,
    updated_at = %(now)s
WHERE id = %(id)s AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: reap_expired
-- Jobs whose lease lapsed (worker died or froze): requeued while attempts remain, otherwise
-- failed; a job whose cancel was requested ends cancelled. SKIP LOCKED: reapers of several
-- processes split the work instead of waiting on each other.
WITH expired AS MATERIALIZED (
    SELECT id FROM jobs WHERE lease_expires_at < %(now)s
    ORDER BY lease_expires_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET
    event_seq = event_seq + 1,
    status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
    error = CASE WHEN cancel_requested THEN error
                 WHEN attempts < max_attempts THEN
                     'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped heartbeating'
                 ELSE 'lease expired on all ' || attempts || ' attempts (last worker '
                      || coalesce(worker_id, '?') || '): the job may be crashing its worker' END,
    completed_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN %(now)s ELSE NULL END,
    run_at = %(now)s,
    worker_id = CASE WHEN cancel_requested OR attempts >= max_attempts THEN worker_id ELSE NULL END,
    claim_token = NULL,
    lease_expires_at = NULL,
    traceback = NULL,
    updated_at = %(now)s
FROM expired
WHERE jobs.id = expired.id
RETURNING jobs.*;

-- name: delete_terminal_job
-- Delete a finished job.
DELETE FROM jobs WHERE id = %(id)s AND status IN ('completed', 'failed', 'cancelled') RETURNING id;

-- name: list_jobs
-- A page of jobs, newest first, optionally filtered (statuses, type, worker, id prefix, fields of
-- request_data).
SELECT * FROM jobs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
  AND (%(worker_id)s::text IS NULL OR worker_id = %(worker_id)s::text)
  -- Escaped wildcards: the pattern is the prefix and one trailing %. A btree index serves such a
  -- LIKE only under the C collation or with text_pattern_ops, which jobs.id does not have.
  AND (%(id_pattern)s::text IS NULL OR id LIKE %(id_pattern)s::text ESCAPE '\')
  -- Parallel arrays, one element per data filter; a job matches when no filter fails. CASE
  -- keeps the numeric cast to fields that are numbers.
  AND (%(data_fields)s::text[] IS NULL OR NOT EXISTS (
    SELECT 1
    FROM unnest(%(data_fields)s::text[], %(data_values)s::text[], %(data_numbers)s::text[])
      AS f(field, value, number)
    WHERE (CASE jsonb_typeof(jobs.request_data -> f.field)
      WHEN 'string' THEN jobs.request_data ->> f.field = f.value
      WHEN 'number' THEN (jobs.request_data ->> f.field)::numeric = f.number::numeric
    END) IS NOT TRUE
  ))
ORDER BY created_at DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_jobs
-- How many jobs the same filters match.
SELECT count(*) AS total FROM jobs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
  AND (%(worker_id)s::text IS NULL OR worker_id = %(worker_id)s::text)
  -- Escaped wildcards: the pattern is the prefix and one trailing %. A btree index serves such a
  -- LIKE only under the C collation or with text_pattern_ops, which jobs.id does not have.
  AND (%(id_pattern)s::text IS NULL OR id LIKE %(id_pattern)s::text ESCAPE '\')
  -- Parallel arrays, one element per data filter; a job matches when no filter fails. CASE
  -- keeps the numeric cast to fields that are numbers.
  AND (%(data_fields)s::text[] IS NULL OR NOT EXISTS (
    SELECT 1
    FROM unnest(%(data_fields)s::text[], %(data_values)s::text[], %(data_numbers)s::text[])
      AS f(field, value, number)
    WHERE (CASE jsonb_typeof(jobs.request_data -> f.field)
      WHEN 'string' THEN jobs.request_data ->> f.field = f.value
      WHEN 'number' THEN (jobs.request_data ->> f.field)::numeric = f.number::numeric
    END) IS NOT TRUE
  ));

-- name: count_by_status
-- Jobs per status, optionally of one type.
SELECT status, count(*) AS jobs FROM jobs
WHERE (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
GROUP BY status;

-- name: waiting_summary
-- Waiting jobs due now, scheduled for later, and the oldest creation time among them.
SELECT
    count(*) FILTER (WHERE run_at <= %(now)s) AS ready,
    count(*) FILTER (WHERE run_at > %(now)s) AS scheduled,
    min(created_at) AS oldest
FROM jobs
WHERE status IN ('queued', 'pending') AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text);

-- name: recent_timings
-- Mean wait (creation to start) and run (start to finish) seconds of jobs finished since %(since)s.
SELECT avg(extract(epoch FROM started_at - created_at))::double precision AS wait,
       avg(extract(epoch FROM completed_at - started_at))::double precision AS run
FROM jobs
WHERE completed_at >= %(since)s AND started_at IS NOT NULL
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text);

-- name: timings
-- Per job type, by name: how many of the %(sample)s jobs finished most recently since %(since)s
-- had started, and the percentiles %(percentiles)s of their wait (creation to start) and run
-- (start to finish) seconds, as arrays in the same order. The read is bounded by %(sample)s and
-- walks the jobs_completed index newest first.
WITH finished AS (
    SELECT job_type,
           extract(epoch FROM started_at - created_at)::double precision AS wait,
           extract(epoch FROM completed_at - started_at)::double precision AS run
    FROM jobs
    WHERE completed_at >= %(since)s AND started_at IS NOT NULL
    ORDER BY completed_at DESC
    LIMIT %(sample)s
)
SELECT job_type, count(*) AS count,
       percentile_cont(%(percentiles)s::double precision[]) WITHIN GROUP (ORDER BY wait) AS wait,
       percentile_cont(%(percentiles)s::double precision[]) WITHIN GROUP (ORDER BY run) AS run
FROM finished
GROUP BY job_type
ORDER BY job_type;

-- name: ping
-- Cheap check that the database answers and this session may write (not a read-only replica).
SELECT count(*) AS migrations, current_setting('transaction_read_only') AS read_only
FROM schema_migrations;

-- name: any_lease_expired
-- Whether the reaper has work (a cheap read before writing).
SELECT 1 FROM jobs WHERE lease_expires_at < %(now)s LIMIT 1;

-- name: insert_events
-- Record the events of one transaction, all in one statement, as its last step before COMMIT,
-- from one JSON array of rows (see insert_new_jobs). jobqueue_reserve_event_ids (see the
-- migration) draws their ids under the event-id lock, so ids increase in commit order; the lock
-- is held until this transaction commits.
INSERT INTO job_events (id, job_id, seq, job_type, kind, status, progress, message, data, at)
SELECT first.id + e.n - 1, e.job_id, e.seq, e.job_type, e.kind, e.status, e.progress, e.message,
       e.data::jsonb, e.at
FROM (SELECT jobqueue_reserve_event_ids(json_array_length(%(rows)s::json)) AS id) AS first,
     ROWS FROM (json_to_recordset(%(rows)s::json)
                AS (job_id text, seq integer, job_type text, kind text, status text,
                    progress integer, message text, data json, at timestamptz))
     WITH ORDINALITY AS e(job_id, seq, job_type, kind, status, progress, message, data, at, n)
RETURNING id;

-- name: job_events_after
-- A job's events after a per-job sequence number, in order (SSE replay with Last-Event-ID).
-- bigint: a Last-Event-ID may be any id up to 2^63-1, beyond the integer of seq.
SELECT * FROM job_events WHERE job_id = %(job_id)s AND seq > %(after)s::bigint ORDER BY seq
LIMIT %(limit)s;

-- name: events_after
-- All jobs' events after a global id, in order (the all-jobs stream and cross-process polling).
SELECT * FROM job_events WHERE id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: event_ids_after
-- The ids of all jobs' events after a global id (the poll: most are this process's own, already
-- delivered, and need no more than their id).
SELECT id FROM job_events WHERE id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: events_by_ids
-- The events whose ids are in %(ids)s, in order.
SELECT * FROM job_events WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id;

-- name: new_work_events_by_ids
-- Of the events whose ids are in %(ids)s, those that put a job in the queue: the same test as
-- JobEvent.signals_new_work (created, retried, requeued, or unblocked: a status event to queued).
SELECT * FROM job_events
WHERE id = ANY(%(ids)s::bigint[])
  AND (kind IN ('created', 'retried', 'requeued') OR (kind = 'status' AND status = 'queued'))
ORDER BY id;

-- name: last_event_id
-- The newest global event id (where a fresh poller starts).
SELECT coalesce(max(id), 0) AS last_id FROM job_events;

-- name: prune_jobs
-- Delete up to %(limit)s jobs in one status finished before %(cutoff)s (their events go with
-- them). Batched and SKIP LOCKED, so pruning never holds many rows or waits on a writer.
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE completed_at < %(cutoff)s AND status = %(status)s
    LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- name: notify
-- Tell the other processes' pollers that events were committed (the payload is the sender, so
-- a process ignores its own signal; no data travels this way).
SELECT pg_notify('jobqueue_events', %(sender)s);

-- name: migration_lock
-- Serialize migration runners of every host: held until the migration's transaction ends
-- (a transaction lock, so it also works through PgBouncer in transaction mode).
SELECT pg_advisory_xact_lock(7669456927906070530);

-- name: create_migrations_table
-- The runner's bookkeeping: one row per applied file.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
-- The applied files, in order.
SELECT version, name, checksum FROM schema_migrations ORDER BY version;

-- name: record_migration
-- Record an applied file, in the same transaction as its statements.
INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s);

-- name: complete_jobs
-- The holders finish their jobs successfully, many at once (a transaction's completions,
-- merged): the columns of each completion come as arrays, unnested in step. A row that does
-- not come back was refused.
UPDATE jobs SET
    event_seq = jobs.event_seq + 1,
    status = 'completed',
    progress = 100,
    result_data = v.result_data::jsonb,
    message = coalesce(v.message, jobs.message),
    error = NULL,
    completed_at = v.now,
    updated_at = v.now,
    lease_expires_at = NULL
FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(results)s::text[], %(messages)s::text[],
            %(nows)s::timestamptz[]) AS v(id, token, result_data, message, now)
WHERE jobs.id = v.id AND jobs.claim_token = v.token AND jobs.lease_expires_at IS NOT NULL
RETURNING jobs.*;

-- name: report_progress_jobs
-- Progress (and optionally a running status) from the holders of the claims, many at once
-- (merged, as complete_jobs); counts as a heartbeat.
UPDATE jobs SET
    event_seq = jobs.event_seq + 1,
    progress = v.progress,
    message = coalesce(v.message, jobs.message),
    status = coalesce(v.status, jobs.status),
    lease_expires_at = v.lease_until,
    updated_at = v.now
FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(progresses)s::integer[], %(messages)s::text[],
            %(statuses)s::text[], %(lease_untils)s::timestamptz[], %(nows)s::timestamptz[])
     AS v(id, token, progress, message, status, lease_until, now)
WHERE jobs.id = v.id AND jobs.claim_token = v.token AND jobs.lease_expires_at IS NOT NULL
RETURNING jobs.*;

-- name: heartbeat_jobs
-- heartbeat for many holders at once (merged, as complete_jobs).
UPDATE jobs SET lease_expires_at = v.lease_until
FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(lease_untils)s::timestamptz[])
     AS v(id, token, lease_until)
WHERE jobs.id = v.id AND jobs.claim_token = v.token AND jobs.lease_expires_at IS NOT NULL
RETURNING jobs.id, jobs.cancel_requested;

-- name: claim_controls
-- The first statement of every claim. It sets, for the rest of its transaction, no bitmap scans:
-- without statistics (a table never ANALYZEd, autovacuum off) the planner underestimates the
-- waiting jobs of a type and reads all of them through a bitmap, then sorts them, to return the
-- first few: 12.6 ms against 0.2 ms for the ordered index scan with 20,000 waiting (EXPLAIN
-- ANALYZE). The claim must walk its index in order whatever the statistics say.
-- And it returns the controls that change how the claim of %(job_types)s (NULL: any type)
-- goes. The rows of limited types are locked, in job_type order (claims of the same types lock
-- in the same order): claims of a limited type from every process take turns, and the claim
-- statement that follows, whose snapshot is taken after the lock was granted, counts the jobs
-- the previous holder claimed. (Counting in the statement that waits for the lock would count
-- as of before the wait, in READ COMMITTED.) Paused types are read, not locked; a type without
-- a row takes no lock. One row of NULLs when no type has controls. The lock lasts until the
-- write batch commits, so claims of one limited type take turns at the rate of batches; two
-- claims of one batch locking other types in the other order than another process's batch can
-- deadlock: PostgreSQL then aborts one batch, whose writes are retried one by one.
WITH locked AS (
    SELECT * FROM job_type_controls
    WHERE (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[]))
      AND (max_running IS NOT NULL OR max_running_per_key IS NOT NULL OR rate_limit IS NOT NULL)
    ORDER BY job_type
    FOR UPDATE
), paused AS (
    SELECT * FROM job_type_controls
    WHERE (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[]))
      AND paused AND max_running IS NULL AND max_running_per_key IS NULL AND rate_limit IS NULL
), plan AS (
    SELECT set_config('enable_bitmapscan', 'off', true) AS bitmapscan
)
SELECT controls.* FROM plan LEFT JOIN (SELECT * FROM locked UNION ALL SELECT * FROM paused) AS controls ON true;

-- name: claim_jobs_controlled
-- The claim when some of its types are paused or limited (their rows locked by claim_controls).
-- Each type of %(job_types)s is one arm, as in claim_jobs_of_types, taking at most what its
-- limits allow now: max_running less its held jobs (through jobs_held_by_type), the rate limit
-- less its starts in the window; paused types take nothing. With %(any_type)s, one more arm
-- walks jobs_claim for every type but %(excluded)s (the controlled ones), past their waiting
-- jobs. Types with max_running_per_key are not arms: the store chose their jobs in claim order
-- (%(keyed_ids)s), in this transaction, after the lock. Starts of rate-limited types are
-- recorded, and those that left their window deleted, in the same statement.
WITH wanted AS (
    SELECT w.job_type,
           least(
               %(limit)s,
               coalesce(c.max_running - (SELECT count(*) FROM jobs AS h
                                         WHERE h.job_type = w.job_type AND h.lease_expires_at IS NOT NULL),
                        %(limit)s),
               coalesce(c.rate_limit - (SELECT count(*) FROM job_type_starts AS s
                                        WHERE s.job_type = w.job_type
                                          AND s.at > %(now)s::timestamptz - make_interval(secs => c.rate_period)),
                        %(limit)s)
           ) AS allowed
    FROM unnest(%(job_types)s::text[]) AS w(job_type)
    LEFT JOIN job_type_controls AS c ON c.job_type = w.job_type
    WHERE c.job_type IS NULL OR (NOT c.paused AND c.max_running_per_key IS NULL)
), arms AS MATERIALIZED (
    SELECT arm.id, arm.priority, arm.created_at FROM wanted
    CROSS JOIN LATERAL (
        SELECT id, priority, created_at FROM jobs
        WHERE jobs.job_type = wanted.job_type
          AND status IN ('queued', 'pending') AND run_at <= %(now)s
        ORDER BY priority DESC, created_at
        LIMIT greatest(wanted.allowed, 0)
        FOR UPDATE SKIP LOCKED
    ) AS arm
), others AS MATERIALIZED (
    SELECT id, priority, created_at FROM jobs
    WHERE %(any_type)s AND status IN ('queued', 'pending') AND run_at <= %(now)s
      AND job_type <> ALL(%(excluded)s::text[])
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), keyed AS MATERIALIZED (
    SELECT id, priority, created_at FROM jobs
    WHERE id = ANY(%(keyed_ids)s::text[]) AND status IN ('queued', 'pending')
    FOR UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
    SELECT id FROM (SELECT * FROM arms UNION ALL SELECT * FROM others UNION ALL SELECT * FROM keyed) AS c
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
), claimed AS (
    UPDATE jobs SET
        event_seq = event_seq + 1,
        status = 'processing',
        worker_id = %(worker_id)s,
        attempts = attempts + 1,
        claim_token = replace(gen_random_uuid()::text, '-', ''),
        lease_expires_at = %(lease_until)s,
        started_at = coalesce(started_at, %(now)s),
        attempt_started_at = %(now)s,
        updated_at = %(now)s
    FROM picked
    WHERE jobs.id = picked.id
    RETURNING jobs.*
), forgotten AS (
    DELETE FROM job_type_starts AS s USING job_type_controls AS c
    WHERE s.job_type = c.job_type AND c.rate_limit IS NOT NULL
      AND c.job_type IN (SELECT job_type FROM claimed)
      AND s.at <= %(now)s::timestamptz - make_interval(secs => c.rate_period)
), started AS (
    INSERT INTO job_type_starts (job_type, at)
    SELECT claimed.job_type, %(now)s FROM claimed
    JOIN job_type_controls AS c ON c.job_type = claimed.job_type
    WHERE c.rate_limit IS NOT NULL
)
SELECT * FROM claimed;

-- name: type_usage
-- What the limits of one type count: its held jobs (through jobs_held_by_type) and its starts
-- after %(since)s (the rate window; NULL counts none).
SELECT (SELECT count(*) FROM jobs WHERE job_type = %(job_type)s AND lease_expires_at IS NOT NULL) AS held,
       (SELECT count(*) FROM job_type_starts
        WHERE job_type = %(job_type)s AND at > %(since)s::timestamptz) AS starts;

-- name: held_by_key
-- Held jobs of one type per concurrency key (jobs without a key count only against max_running).
SELECT concurrency_key, count(*) AS held FROM jobs
WHERE job_type = %(job_type)s AND lease_expires_at IS NOT NULL AND concurrency_key IS NOT NULL
GROUP BY concurrency_key;

-- name: waiting_of_type
-- Every due waiting job of one type in claim order, with its concurrency key: read through a
-- cursor by the claim of a type with max_running_per_key, which stops as soon as it has what it
-- may start. No row locks: claims of the type take turns on its controls row.
SELECT id, concurrency_key FROM jobs
WHERE job_type = %(job_type)s AND status IN ('queued', 'pending') AND run_at <= %(now)s
ORDER BY priority DESC, created_at;

-- name: type_control
-- The controls of one job type.
SELECT * FROM job_type_controls WHERE job_type = %(job_type)s;

-- name: all_type_controls
-- Every type's controls.
SELECT * FROM job_type_controls ORDER BY job_type;

-- name: count_by_type_and_status
-- Jobs per type and status (the list of job types; it reads every job, as the stats do).
SELECT job_type, status, count(*) AS jobs FROM jobs GROUP BY job_type, status;

-- name: starts_after
-- The starts of one type after %(since)s, oldest first (when the rate limit allows the next one).
SELECT at FROM job_type_starts WHERE job_type = %(job_type)s AND at > %(since)s ORDER BY at;

-- name: forget_starts
-- Every start of a type (its rate limit was removed).
DELETE FROM job_type_starts WHERE job_type = %(job_type)s;

-- name: set_type_controls
-- Change the controls of a type: a field whose *_set flag is false keeps its value (a new row
-- takes the defaults), so two operators changing different fields do not undo each other.
INSERT INTO job_type_controls (job_type, paused, max_running, max_running_per_key, rate_limit,
                               rate_period, updated_at)
VALUES (%(job_type)s, coalesce(%(paused)s::boolean, false), %(max_running)s::integer,
        %(max_running_per_key)s::integer, %(rate_limit)s::integer, %(rate_period)s::double precision,
        %(now)s)
ON CONFLICT (job_type) DO UPDATE SET
    paused = CASE WHEN %(paused_set)s THEN %(paused)s::boolean ELSE job_type_controls.paused END,
    max_running = CASE WHEN %(max_running_set)s THEN %(max_running)s::integer
                       ELSE job_type_controls.max_running END,
    max_running_per_key = CASE WHEN %(per_key_set)s THEN %(max_running_per_key)s::integer
                               ELSE job_type_controls.max_running_per_key END,
    rate_limit = CASE WHEN %(rate_set)s THEN %(rate_limit)s::integer ELSE job_type_controls.rate_limit END,
    rate_period = CASE WHEN %(rate_set)s THEN %(rate_period)s::double precision
                       ELSE job_type_controls.rate_period END,
    updated_at = %(now)s;

-- name: drop_empty_type_controls
-- A type whose controls were all cleared has no row: its claims take no lock again.
DELETE FROM job_type_controls
WHERE job_type = %(job_type)s AND NOT paused AND max_running IS NULL AND max_running_per_key IS NULL
  AND rate_limit IS NULL;

-- name: insert_api_key
-- A new API key; nothing when a key in use already has the name (api_keys_active_name).
INSERT INTO api_keys (id, name, key_hash, scopes, job_types, created_at)
VALUES (%(id)s, %(name)s, %(key_hash)s, %(scopes)s::text[], %(job_types)s::text[], %(now)s::timestamptz)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: get_api_key
-- One API key by id, with its hash (authentication).
SELECT * FROM api_keys WHERE id = %(id)s;

-- name: list_api_keys
-- Every API key, revoked ones included, oldest first.
SELECT * FROM api_keys ORDER BY created_at, id;

-- name: any_api_key
-- Whether a key was ever created (revoked ones count: revoking every key must not open the API).
SELECT EXISTS (SELECT 1 FROM api_keys) AS found;

-- name: revoke_api_key_by_id
-- Revoke a key by id (a key revoked before keeps its first revocation time).
UPDATE api_keys SET revoked_at = coalesce(revoked_at, %(now)s::timestamptz) WHERE id = %(key)s RETURNING *;

-- name: revoke_api_key_by_name
-- Revoke the key in use with this name.
UPDATE api_keys SET revoked_at = %(now)s::timestamptz WHERE name = %(key)s AND revoked_at IS NULL RETURNING *;

-- name: delete_sessions_of_key
-- A revoked key's browser sessions end with it.
DELETE FROM api_sessions WHERE key_id = %(id)s;

-- name: touch_api_key
-- Record a use of the key, unless one was recorded within %(interval)s seconds.
UPDATE api_keys SET last_used_at = %(now)s::timestamptz
WHERE id = %(id)s
    AND (last_used_at IS NULL OR last_used_at <= %(now)s::timestamptz - make_interval(secs => %(interval)s::float8));

-- name: delete_expired_sessions
-- Sessions past their expiry (cleared whenever a session is created).
DELETE FROM api_sessions WHERE expires_at <= %(now)s::timestamptz;

-- name: insert_session
-- A browser's login.
INSERT INTO api_sessions (token_hash, key_id, bootstrap_proof, created_at, expires_at)
VALUES (%(token_hash)s, %(key_id)s, %(bootstrap_proof)s, %(now)s::timestamptz, %(expires_at)s::timestamptz);

-- name: get_session
-- A live session by its token's hash, with the key it was made with (NULL columns for the
-- bootstrap key).
SELECT s.bootstrap_proof AS session_bootstrap_proof, s.expires_at AS session_expires_at, k.*
FROM api_sessions s LEFT JOIN api_keys k ON k.id = s.key_id
WHERE s.token_hash = %(token_hash)s AND s.expires_at > %(now)s::timestamptz;

-- name: delete_session
-- Log out.
DELETE FROM api_sessions WHERE token_hash = %(token_hash)s;

-- == Worker pools you can see (issue 12) ===============================================
-- name: register_worker
-- A pool announces itself, or renews its registration (its heartbeat); a pool whose row lapsed
-- and was deleted comes back with a new started_at.
INSERT INTO workers (id, host, pid, job_types, concurrency, started_at, heartbeat_at, expires_at)
VALUES (%(id)s, %(host)s, %(pid)s, %(job_types)s::jsonb, %(concurrency)s, %(now)s, %(now)s, %(expires_at)s)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, job_types = excluded.job_types,
    concurrency = excluded.concurrency, heartbeat_at = excluded.heartbeat_at,
    expires_at = excluded.expires_at
RETURNING *;

-- name: delete_worker
-- A pool stopped.
DELETE FROM workers WHERE id = %(id)s RETURNING id;

-- name: delete_lapsed_workers
-- Pools whose heartbeat lapsed (the process died or froze).
DELETE FROM workers WHERE expires_at < %(now)s RETURNING id;

-- name: live_workers
-- Every pool whose registration has not lapsed, oldest first.
SELECT * FROM workers WHERE expires_at >= %(now)s ORDER BY started_at, id;

-- name: held_jobs_of_live_workers
-- The jobs live pools hold: how many per pool, and the ids of the %(shown)s held longest.
SELECT worker_id, id, held FROM (
    SELECT worker_id, id,
           row_number() OVER (PARTITION BY worker_id ORDER BY started_at, id) AS n,
           count(*) OVER (PARTITION BY worker_id) AS held
    FROM jobs
    WHERE lease_expires_at IS NOT NULL
      AND worker_id IN (SELECT id FROM workers WHERE expires_at >= %(now)s)
) AS held_jobs
WHERE n <= %(shown)s
ORDER BY worker_id, n;

-- name: live_worker_types
-- The job types some live pool serves.
SELECT DISTINCT jsonb_array_elements_text(job_types) AS job_type FROM workers
WHERE expires_at >= %(now)s;

-- name: waiting_types
-- The job types that have waiting jobs.
SELECT DISTINCT job_type FROM jobs WHERE status IN ('queued', 'pending');

-- == Bulk operations (issue 12) =================================================================

-- name: get_jobs_by_idempotency_keys
-- The jobs created earlier with any of the keys in %(keys)s (a batch's replays).
SELECT * FROM jobs WHERE idempotency_key = ANY(%(keys)s::text[]);

-- name: retry_failed_of_type
-- Put up to %(limit)s failed jobs of one type back in the queue (as retry_job), oldest failure
-- first. SKIP LOCKED and the status checked again on the locked row: a job changed meanwhile
-- is left alone.
UPDATE jobs SET event_seq = event_seq + 1, status = 'queued', progress = 0, attempts = 0,
    run_at = %(now)s, result_data = NULL, error = NULL, message = NULL, worker_id = NULL,
    claim_token = NULL, lease_expires_at = NULL, cancel_requested = false, completed_at = NULL,
    updated_at = %(now)s
WHERE id IN (
    SELECT id FROM jobs WHERE job_type = %(job_type)s AND status = 'failed'
    ORDER BY completed_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
) AND status = 'failed'
RETURNING *;

-- name: any_failed_of_type
-- Whether failed jobs of the type remain (a bulk retry says so).
SELECT EXISTS (SELECT 1 FROM jobs WHERE job_type = %(job_type)s AND status = 'failed') AS found;

-- name: cancel_waiting_of_type
-- Cancel up to %(limit)s waiting jobs of one type (blocked ones too) (as cancel_waiting_job), oldest first. SKIP
-- LOCKED, and the status checked again on the locked row: a job a worker is claiming right now
-- is running, not waiting, and is left alone.
UPDATE jobs SET event_seq = event_seq + 1, status = 'cancelled', completed_at = %(now)s,
    updated_at = %(now)s, message = coalesce(%(message)s, message)
WHERE id IN (
    SELECT id FROM jobs WHERE job_type = %(job_type)s AND status IN ('queued', 'pending', 'blocked')
    ORDER BY created_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
) AND status IN ('queued', 'pending', 'blocked')
RETURNING *;

-- name: any_waiting_of_type
-- Whether waiting jobs of the type remain (a bulk cancel says so).
SELECT EXISTS (
    SELECT 1 FROM jobs WHERE job_type = %(job_type)s AND status IN ('queued', 'pending', 'blocked')
) AS found;

-- name: purge_jobs
-- Delete up to %(limit)s finished jobs in %(statuses)s, optionally of one type and finished
-- before %(before)s, oldest first (their events go with them).
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE status = ANY(%(statuses)s::text[])
      AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
      AND (%(before)s::timestamptz IS NULL OR completed_at < %(before)s::timestamptz)
    ORDER BY completed_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
) AND status = ANY(%(statuses)s::text[])
RETURNING id;

-- name: any_to_purge
-- Whether jobs matching a purge remain.
SELECT EXISTS (
    SELECT 1 FROM jobs
    WHERE status = ANY(%(statuses)s::text[])
      AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
      AND (%(before)s::timestamptz IS NULL OR completed_at < %(before)s::timestamptz)
) AS found;

-- name: any_lapsed_worker
-- Whether a registration lapsed (a cheap read before writing).
SELECT 1 FROM workers WHERE expires_at < %(now)s LIMIT 1;

-- name: ended_attempts
-- The last %(limit)s attempts of a job that ended other than by completing, newest first.
SELECT * FROM job_attempts WHERE job_id = %(job_id)s ORDER BY id DESC LIMIT %(limit)s;

-- Periodic jobs (jobqueue/scheduler.py), as on SQLite.

-- name: upsert_schedule
-- Create or replace a schedule. A replacement that ticks at the same instants (same cron or
-- interval, same zone) keeps next_run_at, so rewriting it (every worker start rewrites the
-- schedules declared in code) neither skips nor repeats a tick; pause and creation stay.
INSERT INTO schedules (name, job_type, cron, "interval", timezone, request_data, priority,
                       max_attempts, timeout, missed, source, next_run_at, created_at, updated_at)
VALUES (%(name)s, %(job_type)s, %(cron)s, %(every)s, %(timezone)s, %(request_data)s::jsonb, %(priority)s,
        %(max_attempts)s, %(timeout)s, %(missed)s, %(source)s, %(next_run_at)s, %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET
    job_type = excluded.job_type, cron = excluded.cron, "interval" = excluded."interval",
    timezone = excluded.timezone, request_data = excluded.request_data,
    priority = excluded.priority, max_attempts = excluded.max_attempts,
    timeout = excluded.timeout, missed = excluded.missed, source = excluded.source,
    next_run_at = CASE
        WHEN schedules.cron IS NOT DISTINCT FROM excluded.cron
             AND schedules."interval" IS NOT DISTINCT FROM excluded."interval"
             AND schedules.timezone = excluded.timezone
        THEN schedules.next_run_at ELSE excluded.next_run_at END,
    updated_at = excluded.updated_at
RETURNING *, created_at = %(now)s AS created;

-- name: get_schedule
-- One schedule by name.
SELECT * FROM schedules WHERE name = %(name)s;

-- name: list_schedules
-- Every schedule, by name.
SELECT * FROM schedules ORDER BY name;

-- name: delete_schedule
-- Delete a schedule (its jobs stay).
DELETE FROM schedules WHERE name = %(name)s RETURNING name;

-- name: set_schedule_paused
-- Pause or resume; a resume also sets the next tick (%(next_run_at)s, NULL: unchanged).
UPDATE schedules
SET paused = %(paused)s, next_run_at = coalesce(%(next_run_at)s::timestamptz, next_run_at), updated_at = %(now)s
WHERE name = %(name)s
RETURNING *;

-- name: due_schedules
-- Unpaused schedules whose next tick is at or before %(until)s, soonest first (schedules_due).
SELECT * FROM schedules WHERE NOT paused AND next_run_at <= %(until)s ORDER BY next_run_at LIMIT %(limit)s;

-- name: fire_schedule
-- The compare-and-set of a tick: move next_run_at from the tick %(due)s to %(next_run_at)s,
-- unless another scheduler moved it first (then no row returns and no job is made). A
-- scheduler racing this one waits for the row lock, then finds the tick moved.
UPDATE schedules SET next_run_at = %(next_run_at)s, last_run_at = next_run_at, last_job_id = %(job_id)s
WHERE name = %(name)s AND NOT paused AND next_run_at = %(due)s
RETURNING name;

-- name: skip_schedule_ticks
-- The compare-and-set of missed ticks skipped: as fire_schedule, without a job.
UPDATE schedules SET next_run_at = %(next_run_at)s
WHERE name = %(name)s AND NOT paused AND next_run_at = %(due)s
RETURNING name;

-- name: set_schedule_last_job
-- The job of the last tick, when the tick's job existed already (its idempotency key).
UPDATE schedules SET last_job_id = %(job_id)s WHERE name = %(name)s;
