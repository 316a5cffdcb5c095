"""Authentication and authorization: API keys with scopes and job types, the bootstrap key,
METRICS_TOKEN, the browser's login cookie with its same-origin check, and revocation that every
process honours within about a second. Each test runs on every backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest

from jobqueue.api.app import create_app
from jobqueue.api.openapi import required_scopes
from jobqueue.keys import CACHE_SECONDS, create_key
from jobqueue.models import KeyScope
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

ADMIN_KEY = "bootstrap-admin-key-of-the-tests-0123456789"
METRICS_TOKEN = "metrics-token-of-the-tests-0123456789abcdef"
SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


async def new_key(
    service: JobQueueService, name: str, *scopes: KeyScope, job_types: Sequence[str] | None = None
) -> str:
    return (await create_key(service.store, name, scopes, job_types)).key


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code, response.text
    assert response.json()["detail"]


@pytest.fixture
def app_client(app_client_factory: Callable[..., Any], settings: Settings) -> Callable[..., Any]:
    """A client of the app on the test's database, with settings overrides."""

    @asynccontextmanager
    async def open_client(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        fields = {f: getattr(settings, f) for f in settings.__struct_fields__}
        async with app_client_factory(Settings(**{**fields, **overrides})) as client:
            yield client

    return open_client


async def enqueue(client: httpx.AsyncClient, key: str, job_type: str = "t") -> dict[str, Any]:
    response = await client.post("/api/jobs", json={"job_type": job_type}, headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_without_any_key_the_api_is_open(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/jobs")).status_code == 200
    assert (await client.post("/api/jobs", json={"job_type": "t"})).status_code == 201


async def test_once_a_key_exists_every_request_needs_one(service: JobQueueService, app_client: Any) -> None:
    key = await new_key(service, "admin", KeyScope.ADMIN)
    async with app_client() as client:
        missing = await client.get("/api/jobs")
        assert_error(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert_error(await client.get("/api/jobs", headers=bearer(key + "x")), 401, "unauthorized")
        assert_error(await client.get("/api/jobs", headers=bearer("jq_nope_nope")), 401, "unauthorized")
        assert_error(await client.get("/api/jobs", headers={"authorization": f"Basic {key}"}), 401, "unauthorized")
        for path in ("/", "/api/jobs/stats", "/api/events", "/ready", "/metrics", "/openapi.json", "/api/keys"):
            assert_error(await client.get(path), 401, "unauthorized")
        assert_error(await client.post("/api/workers/claim", json={"worker_id": "w"}), 401, "unauthorized")
        # Open for load balancers and browsers: health, the login form, the pages' static files.
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/login")).status_code == 200
        assert (await client.get("/dashboard/static/dashboard.js")).status_code == 200
        assert (await client.get("/api/jobs", headers=bearer(key))).status_code == 200


async def test_a_revoked_key_keeps_authentication_on(service: JobQueueService, app_client: Any) -> None:
    """Revoking the last key must not open the API again."""
    key = await new_key(service, "only", KeyScope.ADMIN)
    await service.store.revoke_api_key("only")
    async with app_client() as client:
        assert_error(await client.get("/api/jobs"), 401, "unauthorized")
        assert_error(await client.get("/api/jobs", headers=bearer(key)), 401, "unauthorized")


async def test_scopes(service: JobQueueService, app_client: Any) -> None:
    read = await new_key(service, "reader", KeyScope.READ)
    enq = await new_key(service, "producer", KeyScope.ENQUEUE)
    work = await new_key(service, "worker", KeyScope.WORKER)
    admin = await new_key(service, "admin", KeyScope.ADMIN)
    async with app_client() as client:
        job = await enqueue(client, enq)
        job_url = f"/api/jobs/{job['id']}"
        # read: everything that only reads, nothing that writes.
        for path in ("/api/jobs", job_url, "/api/jobs/stats", "/ready", "/metrics", "/dashboard", "/openapi.json"):
            assert (await client.get(path, headers=bearer(read))).status_code == 200, path
        assert_error(await client.post("/api/jobs", json={"job_type": "t"}, headers=bearer(read)), 403, "forbidden")
        assert_error(await client.post(f"{job_url}/cancel", headers=bearer(read)), 403, "forbidden")
        assert_error(await client.post("/api/workers/claim", json={"worker_id": "w"}, headers=bearer(read)), 403, "forbidden")
        # enqueue: create and read its jobs, no stats, no operator changes, no claims.
        assert (await client.get(job_url, headers=bearer(enq))).status_code == 200
        assert (await client.get("/api/jobs", headers=bearer(enq))).status_code == 200
        assert (await client.get(f"{job_url}/wait?timeout=0", headers=bearer(enq))).status_code == 200
        assert_error(await client.get("/api/jobs/stats", headers=bearer(enq)), 403, "forbidden")
        assert_error(await client.post(f"{job_url}/cancel", headers=bearer(enq)), 403, "forbidden")
        assert_error(await client.put(job_url, json={"message": "x"}, headers=bearer(enq)), 403, "forbidden")
        assert_error(await client.get("/api/keys", headers=bearer(enq)), 403, "forbidden")
        # worker: the holder's protocol only.
        assert_error(await client.post("/api/jobs", json={"job_type": "t"}, headers=bearer(work)), 403, "forbidden")
        assert_error(await client.get(job_url, headers=bearer(work)), 403, "forbidden")
        claimed = await client.post("/api/workers/claim", json={"worker_id": "w"}, headers=bearer(work))
        assert claimed.status_code == 200 and len(claimed.json()["jobs"]) == 1
        token = claimed.json()["jobs"][0]["claim_token"]
        beat = await client.post(f"{job_url}/heartbeat", json={"claim_token": token}, headers=bearer(work))
        assert beat.status_code == 200
        # A worker changes a job only as its holder: not by an unfenced PUT, never by force.
        assert_error(await client.put(job_url, json={"message": "x"}, headers=bearer(work)), 403, "forbidden")
        forced = await client.put(f"{job_url}?force=true", json={"message": "x", "claim_token": token}, headers=bearer(work))
        assert_error(forced, 403, "forbidden")
        held = await client.put(job_url, json={"message": "mine", "claim_token": token}, headers=bearer(work))
        assert held.status_code == 200, held.text
        assert_error(await client.post(f"{job_url}/progress", json={"progress": 5}, headers=bearer(work)), 403, "forbidden")
        assert_error(await client.post(f"{job_url}/cancel", headers=bearer(work)), 403, "forbidden")
        done = await client.post(f"{job_url}/complete", json={"claim_token": token, "result_data": 1}, headers=bearer(work))
        assert done.status_code == 200, done.text
        # admin: everything.
        assert (await client.delete(job_url, headers=bearer(admin))).status_code == 204
        assert (await client.get("/api/keys", headers=bearer(admin))).status_code == 200


async def test_only_an_admin_forces_a_change_of_a_held_job(service: JobQueueService, app_client: Any) -> None:
    admin = await new_key(service, "admin", KeyScope.ADMIN)
    work = await new_key(service, "worker", KeyScope.WORKER, KeyScope.ENQUEUE)
    async with app_client() as client:
        job = await enqueue(client, work)
        await client.post("/api/workers/claim", json={"worker_id": "w"}, headers=bearer(work))
        url = f"/api/jobs/{job['id']}"
        assert_error(await client.put(url, json={"status": "queued"}, headers=bearer(admin)), 409, "job_held")
        forced = await client.put(f"{url}?force=true", json={"status": "queued"}, headers=bearer(admin))
        assert forced.status_code == 200 and forced.json()["status"] == "queued"


async def test_keys_limited_to_job_types(service: JobQueueService, app_client: Any) -> None:
    admin = await new_key(service, "admin", KeyScope.ADMIN)
    producer = await new_key(service, "producer", KeyScope.ENQUEUE, job_types=["mine"])
    worker = await new_key(service, "worker", KeyScope.WORKER, job_types=["mine"])
    reader = await new_key(service, "reader", KeyScope.READ, job_types=["mine", "also"])
    async with app_client() as client:
        mine = await enqueue(client, producer, "mine")
        theirs = await enqueue(client, admin, "theirs")
        refused = await client.post("/api/jobs", json={"job_type": "theirs"}, headers=bearer(producer))
        assert_error(refused, 403, "forbidden")
        assert_error(await client.post("/api/generate", json={"prompt": "x"}, headers=bearer(producer)), 403, "forbidden")
        assert_error(await client.get(f"/api/jobs/{theirs['id']}", headers=bearer(producer)), 403, "forbidden")
        assert_error(await client.get(f"/api/jobs/{theirs['id']}/events", headers=bearer(producer)), 403, "forbidden")
        # A key of one type lists that type; a key of several names one.
        listed = (await client.get("/api/jobs", headers=bearer(producer))).json()
        assert [j["id"] for j in listed["items"]] == [mine["id"]]
        assert_error(await client.get("/api/jobs?job_type=theirs", headers=bearer(producer)), 403, "forbidden")
        assert_error(await client.get("/api/jobs", headers=bearer(reader)), 403, "forbidden")
        assert (await client.get("/api/jobs?job_type=also", headers=bearer(reader))).status_code == 200
        assert_error(await client.get("/api/jobs/stats", headers=bearer(reader)), 403, "forbidden")
        assert (await client.get("/api/jobs/stats/mine", headers=bearer(reader))).status_code == 200
        assert_error(await client.get("/api/jobs/stats/theirs", headers=bearer(reader)), 403, "forbidden")
        # A worker limited to a type claims only that type, whatever it asks for.
        asked_other = await client.post(
            "/api/workers/claim", json={"worker_id": "w", "job_types": ["theirs"]}, headers=bearer(worker)
        )
        assert_error(asked_other, 403, "forbidden")
        claimed = await client.post("/api/workers/claim", json={"worker_id": "w", "limit": 10}, headers=bearer(worker))
        assert [c["job"]["id"] for c in claimed.json()["jobs"]] == [mine["id"]]
        # Its fenced writes on another type's job are refused before the token is even looked at.
        other = await client.post("/api/workers/claim", json={"worker_id": "a"}, headers=bearer(admin))
        token = other.json()["jobs"][0]["claim_token"]
        beat = await client.post(f"/api/jobs/{theirs['id']}/heartbeat", json={"claim_token": token}, headers=bearer(worker))
        assert_error(beat, 403, "forbidden")


async def test_a_revoked_key_stops_working_in_another_process_within_a_second(
    service: JobQueueService, settings: Settings, app_client: Any
) -> None:
    key = await new_key(service, "soon-revoked", KeyScope.READ)
    async with app_client() as client:
        assert (await client.get("/api/jobs", headers=bearer(key))).status_code == 200
        # Another process (its own store and connections) revokes the key.
        async with JobQueueService.open(settings) as other_process:
            revoked = await other_process.store.revoke_api_key("soon-revoked")
        assert revoked.revoked_at is not None
        started = time.monotonic()
        while (await client.get("/api/jobs", headers=bearer(key))).status_code == 200:
            assert time.monotonic() - started < CACHE_SECONDS + 1.0, "the revoked key still works"
            await asyncio.sleep(0.05)
        assert_error(await client.get("/api/jobs", headers=bearer(key)), 401, "unauthorized")


async def test_keys_over_the_api(service: JobQueueService, app_client: Any) -> None:
    admin = await new_key(service, "admin", KeyScope.ADMIN)
    async with app_client() as client:
        created = await client.post(
            "/api/keys", json={"name": "ci", "scopes": ["worker", "read"], "job_types": ["a"]}, headers=bearer(admin)
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["key"].startswith("jq_") and len(body["key"]) >= 3 + 16 + 1 + 43
        assert (body["name"], body["scopes"], body["job_types"]) == ("ci", ["read", "worker"], ["a"])
        assert (await client.get("/api/jobs/stats/a", headers=bearer(body["key"]))).status_code == 200

        duplicate = await client.post("/api/keys", json={"name": "ci", "scopes": ["read"]}, headers=bearer(admin))
        assert_error(duplicate, 409, "key_exists")
        invalid = await client.post("/api/keys", json={"name": "ci", "scopes": []}, headers=bearer(admin))
        assert invalid.status_code == 422
        assert_error(await client.post("/api/keys", json={"name": "x", "scopes": ["read"]}, headers=bearer(body["key"])), 403, "forbidden")

        listed = (await client.get("/api/keys", headers=bearer(admin))).json()["items"]
        assert [k["name"] for k in listed] == ["admin", "ci"]
        assert all(set(k) == {"id", "name", "scopes", "job_types", "created_at", "last_used_at", "revoked_at"} for k in listed)
        assert body["key"] not in (await client.get("/api/keys", headers=bearer(admin))).text

        revoked = await client.delete(f"/api/keys/{body['id']}", headers=bearer(admin))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert_error(await client.delete("/api/keys/nope", headers=bearer(admin)), 404, "key_not_found")
    # Only the hash is stored.
    stored = await service.store.get_api_key(body["id"])
    assert stored is not None and body["key"] not in stored[1] and len(stored[1]) == 64
    # A revoked key's name may be reused.
    assert (await create_key(service.store, "ci", [KeyScope.READ])).name == "ci"


async def test_last_used_at_is_recorded_at_most_once_a_minute(service: JobQueueService, app_client: Any) -> None:
    key = await new_key(service, "used", KeyScope.READ)
    async with app_client() as client:
        for _ in range(3):
            assert (await client.get("/api/jobs", headers=bearer(key))).status_code == 200
    (listed,) = await service.store.list_api_keys()
    assert listed.last_used_at is not None
    first_use = listed.last_used_at
    async with app_client() as client:  # a new process: its first use is within the minute
        assert (await client.get("/api/jobs", headers=bearer(key))).status_code == 200
    (listed,) = await service.store.list_api_keys()
    assert listed.last_used_at == first_use


async def test_the_bootstrap_key_from_the_environment(service: JobQueueService, app_client: Any) -> None:
    async with app_client(admin_key=ADMIN_KEY) as client:
        assert_error(await client.get("/api/jobs"), 401, "unauthorized")
        assert_error(await client.get("/api/jobs", headers=bearer(ADMIN_KEY[:-1])), 401, "unauthorized")
        assert (await client.get("/api/jobs", headers=bearer(ADMIN_KEY))).status_code == 200
        created = await client.post("/api/keys", json={"name": "ci", "scopes": ["read"]}, headers=bearer(ADMIN_KEY))
        assert created.status_code == 201
    assert [k.name for k in await service.store.list_api_keys()] == ["ci"]  # never stored itself


async def test_metrics_token_reads_metrics_only(service: JobQueueService, app_client: Any) -> None:
    await new_key(service, "admin", KeyScope.ADMIN)
    async with app_client(metrics_token=METRICS_TOKEN) as client:
        assert (await client.get("/metrics", headers=bearer(METRICS_TOKEN))).status_code == 200
        assert_error(await client.get("/ready", headers=bearer(METRICS_TOKEN)), 401, "unauthorized")
        assert_error(await client.get("/api/jobs", headers=bearer(METRICS_TOKEN)), 401, "unauthorized")


async def login(client: httpx.AsyncClient, key: str, **headers: str) -> httpx.Response:
    return await client.post(
        "/login",
        content=f"key={key}&next=/dashboard",
        headers={"content-type": "application/x-www-form-urlencoded", **SAME_ORIGIN, **headers},
    )


async def test_browser_login_sets_a_session_cookie_not_the_key(service: JobQueueService, app_client: Any) -> None:
    key = await new_key(service, "viewer", KeyScope.READ)
    async with app_client() as client:
        page = await client.get("/dashboard")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/dashboard"
        assert (await login(client, key + "x")).status_code == 401
        assert_error(await client.get("/api/jobs"), 401, "unauthorized")

        response = await login(client, key)
        assert response.status_code == 303 and response.headers["location"] == "/dashboard"
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        session = client.cookies["jobqueue_session"]
        assert key not in cookie and len(session) >= 43
        assert (await client.get("/dashboard")).status_code == 200
        assert (await client.get("/api/jobs")).status_code == 200
        # The session carries the key's scopes: a read key cannot cancel.
        assert_error(await client.post("/api/jobs/x/cancel", headers=SAME_ORIGIN), 403, "forbidden")

        logout = await client.post("/logout", headers=SAME_ORIGIN)
        assert logout.status_code == 303
        client.cookies.set("jobqueue_session", session)  # a copy of the cookie kept by someone
        assert_error(await client.get("/api/jobs"), 401, "unauthorized")


async def test_a_change_by_session_cookie_must_come_from_the_same_origin(
    service: JobQueueService, app_client: Any
) -> None:
    key = await new_key(service, "operator", KeyScope.ADMIN)
    async with app_client() as client:
        assert (await login(client, key)).status_code == 303
        job = (await client.post("/api/jobs", json={"job_type": "t"}, headers=SAME_ORIGIN)).json()
        cancel = f"/api/jobs/{job['id']}/cancel"
        # A page of another site posting with the victim's cookie (no body, so no content-type check).
        assert_error(await client.post(cancel, headers={"sec-fetch-site": "cross-site"}), 403, "cross_origin")
        assert_error(await client.post(cancel, headers={"sec-fetch-site": "same-site"}), 403, "cross_origin")
        assert_error(await client.post(cancel, headers={"origin": "https://evil.example"}), 403, "cross_origin")
        assert_error(await client.post(cancel), 403, "cross_origin")
        assert (await client.get(f"/api/jobs/{job['id']}")).json()["status"] == "queued"
        # Its own pages: Sec-Fetch-Site, or Origin from browsers without it.
        assert (await client.post(cancel, headers={"origin": "http://test"})).status_code == 200
        # A key in the header is not a browser's ambient credential: no origin check.
        retried = await client.post(f"/api/jobs/{job['id']}/retry", headers=bearer(key))
        assert retried.status_code == 200
        # Logging in from another site (login CSRF) is refused too.
        assert (await login(client, key, **{"sec-fetch-site": "cross-site"})).status_code == 403


async def test_revoking_a_key_ends_its_sessions(service: JobQueueService, app_client: Any) -> None:
    key = await new_key(service, "viewer", KeyScope.READ)
    async with app_client() as client:
        assert (await login(client, key)).status_code == 303
        assert (await client.get("/api/jobs")).status_code == 200
        await service.store.revoke_api_key("viewer")
        assert_error(await client.get("/api/jobs"), 401, "unauthorized")


async def test_a_bootstrap_session_ends_when_the_bootstrap_key_changes(app_client: Any) -> None:
    async with app_client(admin_key=ADMIN_KEY) as client:
        assert (await login(client, ADMIN_KEY)).status_code == 303
        assert (await client.get("/api/jobs")).status_code == 200
        session = client.cookies["jobqueue_session"]
    async with app_client(admin_key=ADMIN_KEY[::-1]) as client:
        client.cookies.set("jobqueue_session", session)
        assert_error(await client.get("/api/jobs"), 401, "unauthorized")


async def test_the_login_form_redirects_only_within_the_site(service: JobQueueService, app_client: Any) -> None:
    key = await new_key(service, "viewer", KeyScope.READ)
    async with app_client() as client:
        for target, expected in (("/docs", "/docs"), ("//evil.example", "/dashboard"), ("https://evil.example", "/dashboard")):
            response = await client.post(
                "/login",
                content=httpx.QueryParams({"key": key, "next": target}).__str__(),
                headers={"content-type": "application/x-www-form-urlencoded", **SAME_ORIGIN},
            )
            assert response.headers["location"] == expected
        form = await client.get("/login?next=/x%22%3E%3Cscript%3E")
        assert "<script>" not in form.text and "&quot;&gt;&lt;script&gt;" in form.text


async def test_every_route_declares_its_scopes(settings: Settings) -> None:
    """A route without ``@requires`` would let any valid key in: only these are open."""
    open_routes = {(m, p) for (m, p), scopes in required_scopes(create_app(settings).routes).items() if scopes is None}
    assert {p for _, p in open_routes} == {"/health", "/login", "/logout", "/docs/{name}"}


async def test_openapi_declares_the_security_schemes_and_scopes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["sessionCookie"]["in"] == "cookie"
    assert document["paths"]["/health"]["get"]["security"] == []
    claim = document["paths"]["/api/workers/claim"]["post"]["security"]
    assert {"bearerAuth": ["worker"]} in claim and {"bearerAuth": ["admin"]} in claim
    assert {"bearerAuth": ["read"]} not in claim
    assert "401" in document["paths"]["/api/jobs"]["get"]["responses"]


async def test_the_python_client_sends_its_key(service: JobQueueService, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobqueue.client import ApiError, JobQueueClient

    key = await new_key(service, "client", KeyScope.ENQUEUE, KeyScope.READ)
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=asgi)
        async with JobQueueClient("http://test", transport=transport, api_key=key) as client:
            job = await client.enqueue("t")
            assert (await client.get(job.id)).id == job.id
        monkeypatch.setenv("JOBQUEUE_API_KEY", key)
        async with JobQueueClient("http://test", transport=transport) as client:
            assert (await client.list()).total == 1
        monkeypatch.delenv("JOBQUEUE_API_KEY")
        async with JobQueueClient("http://test", transport=transport) as client:
            with pytest.raises(ApiError) as exc:
                await client.list()
            assert exc.value.status_code == 401


def test_key_format() -> None:
    from jobqueue.keys import hash_secret, new_key as make, split_key

    key_id, key, key_hash = make()
    parts = split_key(key)
    assert parts is not None and parts[0] == key_id and hash_secret(parts[1]) == key_hash
    assert len(parts[1]) >= 43  # 32 random bytes, URL-safe base64
    assert split_key("jq_") is None and split_key("sk_abc_def") is None
    assert msgspec.json.decode(msgspec.json.encode(key)) == key


def test_secrets_from_the_environment_are_long_and_stay_out_of_reprs() -> None:
    from jobqueue.errors import ConfigError
    from jobqueue.settings import load_settings

    with pytest.raises(ConfigError) as exc:
        load_settings({"JOBQUEUE_ADMIN_KEY": "short"})
    assert "JOBQUEUE_ADMIN_KEY" in str(exc.value) and "\n" not in str(exc.value)
    assert load_settings({"JOBQUEUE_ADMIN_KEY": ""}).admin_key is None  # an empty line in .env: unset
    settings = load_settings({"JOBQUEUE_ADMIN_KEY": ADMIN_KEY, "METRICS_TOKEN": METRICS_TOKEN})
    assert ADMIN_KEY not in repr(settings) and METRICS_TOKEN not in repr(settings)


@pytest.mark.parametrize("keyed", [False, True])
async def test_a_browser_opening_the_root_is_sent_to_the_dashboard(keyed: bool, app_client: Any) -> None:
    browser = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    async with app_client(admin_key=ADMIN_KEY if keyed else None) as client:
        page = await client.get("/", headers=browser)
        assert (page.status_code, page.headers["location"]) == (303, "/dashboard")
        if keyed:  # the dashboard then asks for the login
            assert (await client.get("/dashboard", headers=browser)).headers["location"] == "/login?next=/dashboard"
        for api_client in ({"accept": "*/*"}, {"accept": "application/json, text/html"}, {}):
            answer = await client.get("/", headers={**api_client, **(bearer(ADMIN_KEY) if keyed else {})})
            assert answer.status_code == 200 and answer.json()["name"] == "jobqueue", api_client
