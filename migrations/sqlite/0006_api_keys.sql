-- API keys and browser sessions (see jobqueue/keys.py and jobqueue/api/auth.py).

-- A key is shown once when created; only the SHA-256 of its secret part is stored.
CREATE TABLE api_keys (
    -- Also the key's visible prefix: jq_<id>_<secret>.
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL,
    -- JSON array of scopes: admin, enqueue, worker, read.
    scopes       TEXT NOT NULL,
    -- JSON array of the job types the key may touch; NULL means every type.
    job_types    TEXT,
    created_at   REAL NOT NULL,
    -- Updated at most once a minute per key, not on every request.
    last_used_at REAL,
    -- A revoked key is kept (it shows in `jobqueue keys list`) and never accepted again.
    revoked_at   REAL
);
-- A name names one key in use; a revoked key's name may be given to a new one.
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- A browser's login: the cookie holds a random token, the table its SHA-256.
CREATE TABLE api_sessions (
    token_hash      TEXT PRIMARY KEY,
    -- The key that logged in; NULL for the bootstrap key (JOBQUEUE_ADMIN_KEY, never stored).
    key_id          TEXT REFERENCES api_keys (id) ON DELETE CASCADE,
    -- For a bootstrap session: an HMAC of the token under JOBQUEUE_ADMIN_KEY, so the session
    -- ends when that key changes.
    bootstrap_proof TEXT,
    created_at      REAL NOT NULL,
    expires_at      REAL NOT NULL
);
CREATE INDEX api_sessions_expires ON api_sessions (expires_at);
CREATE INDEX api_sessions_key ON api_sessions (key_id);
