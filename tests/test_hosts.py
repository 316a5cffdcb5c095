"""Where requests come from: the Host allow-list (DNS rebinding) and same-origin changes (CSRF)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from jobqueue.api.hosts import same_origin, trusted_hosts
from jobqueue.errors import ConfigError
from jobqueue.settings import Settings, load_settings

from .conftest import assert_error, create


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.2", "", "[::1"])
async def test_a_host_not_allowed_is_400_on_every_route(client: httpx.AsyncClient, host: str) -> None:
    for method, path in (("GET", "/ready"), ("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", "/dashboard")):
        response = await client.request(method, path, headers={"host": host}, json={"job_type": "x"})
        body = assert_error(response, 400, "Host")
        assert body["error"] == "host_not_allowed"
    assert (await client.get("/api/jobs")).json()["total"] == 0
    # The liveness probe answers any host: load balancers probe it by address.
    assert (await client.get("/health", headers={"host": host})).status_code == 200


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1:1234", "[::1]:8000", "[::1]", "localhost."])
async def test_loopback_names_are_allowed(client: httpx.AsyncClient, host: str) -> None:
    assert (await client.get("/api/jobs", headers={"host": host})).status_code == 200


async def test_the_allow_list_is_configurable(settings: Settings, app_client_factory: Callable[..., Any]) -> None:
    allowing = msgspec.structs.replace(settings, allowed_hosts=("test", "jobs.example.com", "*.internal"))
    async with app_client_factory(allowing) as client:
        for host, status in (
            ("jobs.example.com", 200),
            ("jobs.example.com:443", 200),
            ("api.internal", 200),
            ("a.b.internal", 200),
            ("internal", 400),
            ("localhost", 400),  # an explicit list replaces the default
        ):
            assert (await client.get("/api/jobs", headers={"host": host})).status_code == status, host


def test_the_default_allows_loopback_and_the_bound_address() -> None:
    assert trusted_hosts(load_settings({})) == ("localhost", "127.0.0.1", "::1")
    assert trusted_hosts(load_settings({"HOST": "10.0.0.7"})) == ("localhost", "127.0.0.1", "::1", "10.0.0.7")
    explicit = load_settings({"HOST": "0.0.0.0", "ALLOWED_HOSTS": "Jobs.Example.com, *.internal"})
    assert trusted_hosts(explicit) == ("jobs.example.com", "*.internal")
    assert trusted_hosts(load_settings({"ALLOWED_HOSTS": "*"})) == ("*",)


@pytest.mark.parametrize("value", ["jobs.*.com", "*example.com", "a*"])
def test_a_misplaced_wildcard_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="ALLOWED_HOSTS"):
        load_settings({"ALLOWED_HOSTS": value})


def test_a_real_server_refuses_a_rebound_host_name(live_server: Callable[..., str]) -> None:
    url = live_server(RUN_WORKER="false")
    refused = httpx.get(f"{url}/api/jobs", headers={"host": "attacker.example"})
    assert_error(refused, 400, "Host")
    assert httpx.get(f"{url}/api/jobs").status_code == 200  # the 127.0.0.1 it listens on


# -- same origin -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://localhost:9999"},  # another port is another origin
        {"origin": "null"},  # a sandboxed frame or a file: page
        {"origin": "http://test.evil.example"},
        {"sec-fetch-site": "cross-site"},
    ],
)
async def test_a_change_from_another_origin_is_403(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    job = await create(client)
    for method, path in (
        ("POST", f"/api/jobs/{job['id']}/cancel"),
        ("POST", f"/api/jobs/{job['id']}/retry"),
        ("PUT", f"/api/jobs/{job['id']}"),
        ("DELETE", f"/api/jobs/{job['id']}"),
        ("POST", "/api/jobs"),
    ):
        # A form post: no JSON body, so no Content-Type check stands in the way.
        response = await client.request(method, path, headers=headers)
        body = assert_error(response, 403)
        assert body["error"] == "cross_origin", (method, path)
    assert (await client.get(f"/api/jobs/{job['id']}")).json()["status"] == "queued"
    # Reading stays possible (the browser keeps another origin from seeing the answer).
    assert (await client.get("/api/jobs", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://test"},
        {"origin": "https://test"},  # behind a TLS proxy the page is https, the request http
        {"origin": "http://TEST:80", "sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},  # typed into the address bar
        {},  # not a browser
    ],
)
async def test_a_change_from_this_origin_or_no_browser_is_served(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    job = await create(client)
    assert (await client.post(f"/api/jobs/{job['id']}/cancel", headers=headers)).status_code == 200


def test_same_origin_compares_host_and_port() -> None:
    assert same_origin("http://localhost:8000", "localhost:8000")
    assert same_origin("https://jobs.example.com", "jobs.example.com")
    assert same_origin("http://[::1]:8000", "[::1]:8000")
    assert not same_origin("http://localhost:8001", "localhost:8000")
    assert not same_origin("http://localhost", "localhost:8000")
    assert not same_origin("http://evil.example", "localhost")
    assert not same_origin("http://localhost:notaport", "localhost")
    assert not same_origin("chrome-extension://abc", "abc")
