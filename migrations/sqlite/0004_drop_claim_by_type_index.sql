-- Claims walk jobs_claim in claim order (INDEXED BY, also for claims of given types), so
-- jobs_claim_by_type was never read; yet every job entered and left it, which cost about a
-- quarter of the SQLite work of claiming and completing a job.
DROP INDEX jobs_claim_by_type;
