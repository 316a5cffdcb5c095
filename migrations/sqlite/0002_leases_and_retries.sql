-- Leases with fencing tokens, attempts and retries, delayed jobs, timeouts, cancellation and
-- idempotent enqueue.
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3;
-- Not claimable before this instant (delays and retry backoff). Existing jobs are due at creation.
ALTER TABLE jobs ADD COLUMN run_at REAL NOT NULL DEFAULT 0;
UPDATE jobs SET run_at = created_at;
-- Seconds one attempt may run; NULL means no limit.
ALTER TABLE jobs ADD COLUMN timeout REAL;
-- The current claim: a random token the holder must present, and when it lapses without a heartbeat.
ALTER TABLE jobs ADD COLUMN claim_token TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at REAL;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
-- Hash of the create request, so a reused key with a different body can be refused.
ALTER TABLE jobs ADD COLUMN idempotency_fingerprint TEXT;

-- The claim walks this index in order: highest priority, then oldest; only waiting jobs are in it.
CREATE INDEX jobs_claim ON jobs (priority DESC, created_at) WHERE status IN ('queued', 'pending');
CREATE INDEX jobs_claim_by_type ON jobs (job_type, priority DESC, created_at)
    WHERE status IN ('queued', 'pending');
-- The reaper looks only at held jobs, by lease expiry.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX jobs_cancel_requested ON jobs (worker_id) WHERE cancel_requested = 1;
CREATE INDEX jobs_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
