"""API keys: their format, how they are stored and checked, and who a request is.

A key is ``jq_<id>_<secret>``: the id names its row (it is not secret, ``jobqueue keys list``
shows it) and the secret is 32 random bytes. Only the SHA-256 of the secret is stored. A slow
password hash (bcrypt, argon2) protects secrets a person chose, which can be guessed offline from
a leaked hash; 256 random bits cannot be guessed, so a fast hash gives up nothing there and keeps
checking a key per request cheap. The row is found by its id and the hashes are compared with
``hmac.compare_digest``, so the time a check takes says nothing about the secret.

A browser logs in once with a key and gets a session cookie: a random token of its own whose hash
refers to the key (the key itself never goes into a cookie). Revoking the key ends its sessions.

``JOBQUEUE_ADMIN_KEY`` is a bootstrap admin key from the environment (compose, CI): compared in
constant time, never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Sequence

import msgspec

from jobqueue.errors import DatabaseError, Forbidden
from jobqueue.models import ApiKey, CreatedApiKey, KeyScope
from jobqueue.storage import Store

logger = logging.getLogger(__name__)

KEY_PREFIX = "jq_"
#: Random bytes of a key's secret and of a session token.
SECRET_BYTES = 32
#: Seconds between two updates of a key's last_used_at (not one write per request).
TOUCH_INTERVAL = 60.0
#: Seconds a key looked up stays in a process's cache: a revocation by another process is
#: honoured within this long (benchmarks/README.md has what the cache saves).
CACHE_SECONDS = 1.0
#: Keys one process caches at most (a flood of made-up keys cannot grow it further).
CACHE_SIZE = 1024
#: Seconds a browser session lasts.
SESSION_SECONDS = 12 * 3600.0


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """A new key: (its id, the key to show once, the hash to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return key_id, f"{KEY_PREFIX}{key_id}_{secret}", hash_secret(secret)


def split_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a key in our format, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, _, secret = key[len(KEY_PREFIX) :].partition("_")
    if not key_id or not secret:
        return None
    return key_id, secret


async def create_key(
    store: Store, name: str, scopes: Sequence[KeyScope], job_types: Sequence[str] | None = None
) -> CreatedApiKey:
    """Create and store a key; the result carries the key itself, to be shown once."""
    key_id, key, key_hash = new_key()
    stored = await store.insert_api_key(
        key_id=key_id,
        name=name,
        key_hash=key_hash,
        scopes=sorted({KeyScope(s).value for s in scopes}),
        job_types=None if job_types is None else sorted(set(job_types)),
    )
    fields = {f: getattr(stored, f) for f in stored.__struct_fields__}
    return CreatedApiKey(**fields, key=key)


class Principal(msgspec.Struct, kw_only=True, frozen=True):
    """Who sent a request: a key (or the bootstrap key, or nobody when authentication is off)."""

    name: str
    scopes: frozenset[KeyScope]
    #: The job types it may touch; None: every type.
    job_types: frozenset[str] | None = None
    key_id: str | None = None
    #: Authenticated by the session cookie (a browser): state changes need a same-origin check.
    by_cookie: bool = False

    def has(self, *scopes: KeyScope) -> bool:
        """Any of ``scopes`` (admin has them all)."""
        return KeyScope.ADMIN in self.scopes or any(s in self.scopes for s in scopes)

    def require(self, *scopes: KeyScope) -> None:
        if not self.has(*scopes):
            wanted = " or ".join(s.value for s in scopes)
            raise Forbidden(f"key {self.name!r} lacks the scope this needs ({wanted})")

    def may_touch(self, job_type: str) -> bool:
        return self.job_types is None or job_type in self.job_types

    def require_type(self, job_type: str) -> None:
        if not self.may_touch(job_type):
            raise Forbidden(f"key {self.name!r} may not touch jobs of type {job_type!r}")


#: Who a request is while no key exists (loopback, or --insecure-no-auth): allowed everything.
NOBODY = Principal(name="anonymous (authentication is off)", scopes=frozenset({KeyScope.ADMIN}))
BOOTSTRAP = Principal(name="JOBQUEUE_ADMIN_KEY", scopes=frozenset({KeyScope.ADMIN}))
METRICS = Principal(name="METRICS_TOKEN", scopes=frozenset({KeyScope.READ}))


def principal_of(key: ApiKey, *, by_cookie: bool = False) -> Principal:
    return Principal(
        name=key.name,
        scopes=frozenset(key.scopes),
        job_types=None if key.job_types is None else frozenset(key.job_types),
        key_id=key.id,
        by_cookie=by_cookie,
    )


class KeyRing:
    """Checks keys and sessions against the database for one process.

    Lookups are cached for ``CACHE_SECONDS`` only, so a key revoked by any process stops working
    everywhere within about a second. Once a key exists, authentication stays on for good
    (keys are revoked, never deleted).
    """

    def __init__(self, store: Store, *, admin_key: str | None = None, metrics_token: str | None = None) -> None:
        self.store = store
        self.admin_key = admin_key
        self.metrics_token = metrics_token
        self._keys: dict[str, tuple[float, tuple[ApiKey, str] | None]] = {}
        self._touched: dict[str, float] = {}
        self._required = admin_key is not None
        self._required_checked = 0.0

    async def required(self) -> bool:
        """Whether requests need a key: JOBQUEUE_ADMIN_KEY is set, or a key was ever created."""
        if self._required:
            return True
        now = time.monotonic()
        if now - self._required_checked >= CACHE_SECONDS:
            self._required = await self.store.any_api_key()
            self._required_checked = now
        return self._required

    async def check_key(self, key: str) -> Principal | None:
        """Who ``key`` is, or None when it is unknown, malformed or revoked."""
        if self.admin_key is not None and hmac.compare_digest(key.encode(), self.admin_key.encode()):
            return BOOTSTRAP
        parts = split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        found = await self._lookup(key_id)
        if found is None:
            return None
        stored, key_hash = found
        if not hmac.compare_digest(hash_secret(secret), key_hash) or stored.revoked_at is not None:
            return None
        await self._touch(stored)
        return principal_of(stored)

    def is_metrics_token(self, token: str) -> bool:
        return self.metrics_token is not None and hmac.compare_digest(token.encode(), self.metrics_token.encode())

    async def _lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        now = time.monotonic()
        cached = self._keys.get(key_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        found = await self.store.get_api_key(key_id)
        if len(self._keys) >= CACHE_SIZE:
            self._keys.clear()
        self._keys[key_id] = (now, found)
        return found

    async def _touch(self, key: ApiKey) -> None:
        now = time.time()
        last = key.last_used_at.timestamp() if key.last_used_at is not None else 0.0
        if now - max(last, self._touched.get(key.id, 0.0)) < TOUCH_INTERVAL:
            return
        self._touched[key.id] = now
        try:
            await self.store.touch_api_key(key.id, TOUCH_INTERVAL)
        except DatabaseError as exc:  # a bookkeeping write must not fail the request it counts
            logger.warning("could not record the use of key %s: %s", key.name, exc)

    # -- browser sessions ------------------------------------------------------------------------

    async def open_session(self, principal: Principal) -> str:
        """A new session for a key just checked; returns the token for the cookie."""
        token = secrets.token_urlsafe(SECRET_BYTES)
        token_hash = hash_secret(token)
        proof = None if principal.key_id is not None else self._bootstrap_proof(token_hash)
        await self.store.insert_session(
            token_hash=token_hash,
            key_id=principal.key_id,
            bootstrap_proof=proof,
            expires_at=time.time() + SESSION_SECONDS,
        )
        return token

    async def check_session(self, token: str) -> Principal | None:
        token_hash = hash_secret(token)
        session = await self.store.get_session(token_hash)
        if session is None:
            return None
        if session.key is None:
            proof = self._bootstrap_proof(token_hash)
            if proof is None or session.bootstrap_proof is None:
                return None
            if not hmac.compare_digest(proof, session.bootstrap_proof):
                return None
            return Principal(name=BOOTSTRAP.name, scopes=BOOTSTRAP.scopes, by_cookie=True)
        if session.key.revoked_at is not None:
            return None
        await self._touch(session.key)
        return principal_of(session.key, by_cookie=True)

    async def close_session(self, token: str) -> None:
        await self.store.delete_session(hash_secret(token))

    def _bootstrap_proof(self, token_hash: str) -> str | None:
        """Binds a session made with the bootstrap key to that key's value: a session outlives
        neither its removal nor a change of it."""
        if self.admin_key is None:
            return None
        return hmac.new(self.admin_key.encode(), token_hash.encode(), hashlib.sha256).hexdigest()
