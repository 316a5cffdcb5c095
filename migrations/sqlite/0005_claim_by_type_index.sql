-- A claim restricted to job types walks one range of this index per type (see the store's
-- claim), so a backlog of other types costs it nothing. 0004 dropped the first version of this
-- index when claims of given types still walked jobs_claim in global order and never read it.
CREATE INDEX jobs_claim_by_type ON jobs (job_type, priority DESC, created_at)
    WHERE status IN ('queued', 'pending');
