-- The whole schema of jobqueue on PostgreSQL, equal in meaning to SQLite's 0001-0005: the same
-- columns and rules, in PostgreSQL's types (timestamptz, jsonb).

CREATE TABLE jobs (
    id                      text PRIMARY KEY,
    status                  text NOT NULL DEFAULT 'queued',
    progress                integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    job_type                text NOT NULL,
    priority                integer NOT NULL DEFAULT 0,
    request_data            jsonb,
    result_data             jsonb,
    message                 text,
    error                   text,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    started_at              timestamptz,
    completed_at            timestamptz,
    worker_id               text,
    attempts                integer NOT NULL DEFAULT 0,
    max_attempts            integer NOT NULL DEFAULT 3,
    -- Not claimable before this instant (delays and retry backoff).
    run_at                  timestamptz NOT NULL,
    -- Seconds one attempt may run; NULL means no limit.
    timeout                 double precision,
    -- The current claim: a random token the holder must present, and when it lapses.
    claim_token             text,
    lease_expires_at        timestamptz,
    cancel_requested        boolean NOT NULL DEFAULT false,
    idempotency_key         text,
    idempotency_fingerprint text,
    -- Sequence number of the job's latest event.
    event_seq               integer NOT NULL DEFAULT 0
) WITH (
    -- Every job is updated several times (claim, progress, completion): free space on each
    -- page lets those updates stay on the page (HOT) when no indexed column changes, and
    -- autovacuum visits this churning table long before the default 20% of it is dead.
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05
);

-- Listing: newest first, optionally narrowed by status, type or worker.
CREATE INDEX jobs_created ON jobs (created_at DESC);
CREATE INDEX jobs_status_created ON jobs (status, created_at DESC);
CREATE INDEX jobs_type_created ON jobs (job_type, created_at DESC);
CREATE INDEX jobs_worker ON jobs (worker_id) WHERE worker_id IS NOT NULL;
-- The claim walks this index in claim order (best priority, then oldest); it matches the claim's
-- WHERE and ORDER BY exactly, so a claim reads :limit entries, not the queue.
CREATE INDEX jobs_claim ON jobs (priority DESC, created_at) WHERE status IN ('queued', 'pending');
-- One range per type, for the arms of a claim restricted to job types.
CREATE INDEX jobs_claim_by_type ON jobs (job_type, priority DESC, created_at)
    WHERE status IN ('queued', 'pending');
-- The reaper looks only at held jobs, by lease expiry.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX jobs_cancel_requested ON jobs (worker_id) WHERE cancel_requested;
CREATE INDEX jobs_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Every visible change of a job becomes an event, written in the same transaction as the change.
CREATE TABLE job_events (
    -- Global order, in commit order: ids are reserved by jobqueue_reserve_event_ids below.
    id       bigint PRIMARY KEY,
    job_id   text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Per-job sequence 1, 2, 3... (jobs.event_seq at the time): the SSE id of a job's stream.
    seq      integer NOT NULL,
    job_type text NOT NULL,
    kind     text NOT NULL,
    status   text NOT NULL,
    progress integer NOT NULL,
    message  text,
    data     jsonb,
    at       timestamptz NOT NULL
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05);
CREATE UNIQUE INDEX job_events_job_seq ON job_events (job_id, seq);

CREATE SEQUENCE job_events_id_seq AS bigint;

-- Reserve n consecutive event ids for the calling transaction and return the first.
--
-- A sequence value is not commit order: a transaction that drew id 5 can commit after one that
-- drew id 6, and a reader that already delivered 6 would never deliver 5 (the all-jobs stream
-- promises order and Last-Event-ID replay without gap). So ids are drawn under a transaction
-- lock, as the last step before COMMIT: the lock is released only once the transaction is
-- visible, so the next holder's ids are higher and become visible later. Only the event
-- insert and the commit are serialized; the rest of every transaction runs concurrently.
CREATE FUNCTION jobqueue_reserve_event_ids(n integer) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    -- 0x6a6f6271 ('jobq') << 32 | 1: the event-id lock; 2 is the migration lock.
    PERFORM pg_advisory_xact_lock(7669456927906070529);
    RETURN setval('job_events_id_seq', nextval('job_events_id_seq') + n - 1) - n + 1;
END
$$;
