-- Worker pools you can see (issue 12): each pool writes its row at start, renews it with its
-- heartbeat and deletes it when it stops; a row whose heartbeat lapsed is a dead pool.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    job_types    TEXT NOT NULL,  -- JSON array
    concurrency  INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE INDEX workers_expires ON workers (expires_at);
