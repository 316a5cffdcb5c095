-- API keys and browser sessions (see jobqueue/keys.py and jobqueue/api/auth.py), equal in
-- meaning to SQLite's 0006.

-- A key is shown once when created; only the SHA-256 of its secret part is stored.
CREATE TABLE api_keys (
    -- Also the key's visible prefix: jq_<id>_<secret>.
    id           text PRIMARY KEY,
    name         text NOT NULL,
    key_hash     text NOT NULL,
    -- admin, enqueue, worker, read.
    scopes       text[] NOT NULL,
    -- The job types the key may touch; NULL means every type.
    job_types    text[],
    created_at   timestamptz NOT NULL,
    -- Updated at most once a minute per key, not on every request.
    last_used_at timestamptz,
    -- A revoked key is kept (it shows in `jobqueue keys list`) and never accepted again.
    revoked_at   timestamptz
);
-- A name names one key in use; a revoked key's name may be given to a new one.
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- A browser's login: the cookie holds a random token, the table its SHA-256.
CREATE TABLE api_sessions (
    token_hash      text PRIMARY KEY,
    -- The key that logged in; NULL for the bootstrap key (JOBQUEUE_ADMIN_KEY, never stored).
    key_id          text REFERENCES api_keys (id) ON DELETE CASCADE,
    -- For a bootstrap session: an HMAC of the token under JOBQUEUE_ADMIN_KEY, so the session
    -- ends when that key changes.
    bootstrap_proof text,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX api_sessions_expires ON api_sessions (expires_at);
CREATE INDEX api_sessions_key ON api_sessions (key_id);
