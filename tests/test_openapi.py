"""GET /openapi.json is a valid OpenAPI 3.1 document covering every route of the app, built from
the msgspec types the endpoints use; GET /docs is a page whose assets all come from the service."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from jobqueue.api.app import create_app
from jobqueue.api.openapi import OPERATIONS, SCHEMA_TYPES, documented_routes
from jobqueue.api.limits import MAX_JSON_INTEGER
from jobqueue.api.routes import MAX_OFFSET
from jobqueue.api.sse import MAX_WAIT_SECONDS
from jobqueue.handlers.generation import MODELS
from jobqueue.models import ACTIVE_STATUSES, EventKind, Job, JobCreate
from jobqueue.settings import Settings

from .conftest import free_port, headless_chromium, running_server


async def test_document_is_valid_openapi_3_1(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises with the offending path when the document is invalid


async def test_every_route_of_the_app_is_documented(client: httpx.AsyncClient, settings: Settings) -> None:
    document = (await client.get("/openapi.json")).json()
    app = create_app(settings)
    in_app = {
        (method, route.path if route.path == "/" else route.path.rstrip("/"))
        for route in app.routes
        if isinstance(route, Route) and route.include_in_schema
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert ("GET", "/api/jobs/{job_id}/events") in in_app and ("GET", "/metrics") in in_app
    in_document = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert in_app == in_document
    undocumented = [key for key in documented_routes(app.routes) if key not in OPERATIONS]
    assert undocumented == [], "add these to jobqueue.api.openapi.OPERATIONS"
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


async def test_schemas_are_the_msgspec_types(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for kind in SCHEMA_TYPES:
        assert kind.__name__ in schemas
    _, expected = msgspec.json.schema_components([Job, JobCreate], ref_template="#/components/schemas/{name}")
    # The same schemas, with an example added (jobqueue/api/examples.py).
    assert {k: v for k, v in schemas["Job"].items() if k != "examples"} == expected["Job"]
    assert {k: v for k, v in schemas["JobCreate"].items() if k != "examples"} == expected["JobCreate"]
    assert schemas["JobCreate"]["required"] == ["job_type"]

    create = document["paths"]["/api/jobs"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobCreate"}
    # The whole job, or its id and status with Prefer: return=minimal.
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "anyOf": [{"$ref": "#/components/schemas/Job"}, {"$ref": "#/components/schemas/JobRef"}]
    }
    assert create["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    listing = document["paths"]["/api/jobs"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"status", "job_type", "limit", "offset"}
    stream = document["paths"]["/api/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert stream["parameters"][0] == {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


async def test_bodies_say_what_the_endpoints_refuse(client: httpx.AsyncClient) -> None:
    """A body the document allows is accepted (schemathesis checks it; these are the cases it found)."""
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    progress_status = schemas["ProgressUpdate"]["properties"]["status"]
    running = next(option["enum"] for option in progress_status["anyOf"] if "enum" in option)
    assert set(running) == {status.value for status in ACTIVE_STATUSES}
    put = document["paths"]["/api/jobs/{job_id}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    update = schemas[put["$ref"].rsplit("/", 1)[1]]
    # Absent leaves them as they are; null is refused, so the schema has no null for them.
    assert update["properties"]["status"] == {"$ref": "#/components/schemas/JobStatus"}
    assert update["properties"]["progress"] == {"type": "integer", "minimum": 0, "maximum": 100}
    assert {"type": "null"} in update["properties"]["message"]["anyOf"]
    assert update["required"] == []


async def test_free_form_data_says_which_integers_it_takes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    ref = {"$ref": "#/components/schemas/JSONData"}
    assert schemas["JobCreate"]["properties"]["request_data"]["anyOf"][0]["additionalProperties"] == ref
    assert schemas["CompleteRequest"]["properties"]["result_data"]["$ref"] == ref["$ref"]
    assert schemas["UpdateRequest"]["properties"]["result_data"] == ref
    integers = next(option for option in schemas["JSONData"]["anyOf"] if option.get("type") == "integer")
    assert (integers["minimum"], integers["maximum"]) == (-MAX_JSON_INTEGER, MAX_JSON_INTEGER)


async def test_parameters_say_what_the_endpoints_refuse(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    params = {
        (path, method, param["name"]): param["schema"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for param in operation.get("parameters", [])
    }
    numbers = {key: schema for key, schema in params.items() if schema.get("type") in ("integer", "number")}
    assert numbers and all("maximum" in schema and "minimum" in schema for schema in numbers.values()), numbers
    assert params[("/api/jobs", "get", "offset")]["maximum"] == MAX_OFFSET
    assert params[("/api/jobs/{job_id}/wait", "get", "timeout")]["maximum"] == MAX_WAIT_SECONDS
    assert params[("/api/generate/{model}", "post", "model")]["enum"] == sorted(MODELS)
    assert params[("/api/events", "get", "status")] == params[("/api/jobs", "get", "status")]


async def test_stream_schemas_describe_each_message(client: httpx.AsyncClient) -> None:
    """OpenAPI 3.1 tools read the schema of text/event-stream as that of one message (event,
    id, data); the data is JSON of a JobEvent, or of the Job in a job stream's snapshot."""
    document = (await client.get("/openapi.json")).json()

    def message_schema(path: str) -> dict[str, Any]:
        content = document["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]
        return content["schema"]  # type: ignore[no-any-return]

    events = message_schema("/api/events")
    assert events["required"] == ["event", "id", "data"]
    assert set(events["properties"]["event"]["enum"]) == {kind.value for kind in EventKind}
    assert events["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/JobEvent"}
    snapshot, event = message_schema("/api/jobs/{job_id}/events")["oneOf"]
    assert snapshot["properties"]["event"]["enum"] == ["snapshot"]
    assert snapshot["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/Job"}
    assert event == events


async def test_docs_page_loads_only_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/docs/docs.js" in assets and "/docs/docs.css" in assets
    bodies = [html]
    for asset in assets:
        if asset.startswith("data:"):
            continue  # inline (the empty favicon, so the browser asks for none)
        assert asset.startswith("/"), f"{asset} is not served by the service"
        response = await client.get(asset)
        assert response.status_code == 200, asset
        bodies.append(response.text)
    script = (await client.get("/docs/docs.js")).text
    assert 'fetch("/openapi.json")' in script
    for body in bodies:
        assert "http://" not in body and "https://" not in body, "the page must work offline"
    assert (await client.get("/docs/nothing.js")).status_code == 404


# -- the page in a real browser, with no way out to the internet ----------------------------------

DEADLINE = 30.0


@pytest.fixture(scope="module")
def offline_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium whose only proxy is a closed port: anything not on 127.0.0.1 fails."""
    with headless_chromium(
        tmp_path_factory.mktemp("chromium-docs"),
        "--window-size=1200,1000",
        # Loopback always bypasses the proxy, so only the service itself is reachable.
        f"--proxy-server=http://127.0.0.1:{free_port()}",
        logging={"browser": "ALL"},
    ) as browser:
        yield browser


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("docs-server"), module_database_url, RUN_WORKER="false") as url:
        yield url


def test_docs_render_offline_and_send_requests(offline_browser: Any, docs_server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = offline_browser
    browser.get(f"{docs_server}/docs")
    wait = WebDriverWait(browser, DEADLINE)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    document = httpx.get(f"{docs_server}/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    assert len(browser.find_elements(By.CSS_SELECTOR, "#operations details.op")) == operations
    assert "jobqueue" in browser.find_element(By.ID, "title").text

    create = browser.find_element(By.ID, "post_api_jobs")
    create.find_element(By.TAG_NAME, "summary").click()
    body = create.find_element(By.TAG_NAME, "textarea")
    assert json.loads(body.get_attribute("value"))["job_type"] == "thumbnail"  # the schema's example
    body.clear()
    body.send_keys('{"job_type": "from-docs", "priority": 7}')
    create.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda b: create.find_element(By.CSS_SELECTOR, ".output .status").text.startswith("201"))
    shown = json.loads(create.find_element(By.CSS_SELECTOR, ".output pre").text)
    assert (shown["job_type"], shown["priority"]) == ("from-docs", 7)
    listed = httpx.get(f"{docs_server}/api/jobs", params={"job_type": "from-docs"}).json()
    assert [job["id"] for job in listed["items"]] == [shown["id"]]

    # A path parameter goes into the URL; an error response is shown with its status.
    get_job = browser.find_element(By.ID, "get_api_jobs_job_id")
    get_job.find_element(By.TAG_NAME, "summary").click()
    get_job.find_element(By.CSS_SELECTOR, "input[data-param=job_id]").send_keys("missing-job")
    get_job.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda b: get_job.find_element(By.CSS_SELECTOR, ".output .status").text.startswith("404"))
    assert "job_not_found" in get_job.find_element(By.CSS_SELECTOR, ".output pre").text

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    # The one expected console error is the 404 the test asked for.
    assert all("missing-job" in entry["message"] for entry in errors), errors


# -- examples, Markdown, copy as curl and search (issue 13) ----------------------------------------


async def test_every_request_body_has_an_example_the_api_accepts(client: httpx.AsyncClient) -> None:
    from jobqueue.api.examples import EXAMPLES

    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    types = {kind.__name__: kind for kind in SCHEMA_TYPES}
    bodies = 0
    for path, item in document["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody")
            if body is None:
                continue
            bodies += 1
            name = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            examples = schemas[name].get("examples")
            assert examples, f"{method.upper()} {path}: {name} has no example"
            msgspec.convert(examples[0], types[name])  # what the endpoint decodes it with
    assert bodies >= 10
    for kind, example in EXAMPLES.items():
        assert schemas[kind.__name__]["examples"] == [example]
        msgspec.convert(example, kind)


def _screenshot(browser: Any, tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    """A screenshot of the page in the test run's folder (``screenshots/``), checked to be a PNG."""
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_docs_render_markdown_examples_copy_as_curl_and_search(
    offline_browser: Any, docs_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import subprocess

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = offline_browser
    browser.get(f"{docs_server}/docs")
    wait = WebDriverWait(browser, DEADLINE)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    document = httpx.get(f"{docs_server}/openapi.json").json()
    schemas = document["components"]["schemas"]

    # Markdown: the info's links, the PUT description's list with bold and code.
    assert browser.find_element(By.CSS_SELECTOR, "#subtitle a[href='/dashboard']").text == "dashboard"
    put = browser.find_element(By.ID, "put_api_jobs_job_id")
    put.find_element(By.TAG_NAME, "summary").click()
    items = put.find_elements(By.CSS_SELECTOR, ".body > .md ul li")
    assert len(items) == 2 and items[0].find_element(By.TAG_NAME, "strong").text == "admin"
    assert "claim_token" in [code.text for code in put.find_elements(By.CSS_SELECTOR, ".body > .md code")]
    # Anything else in a description stays text: no element, no script URL.
    rendered = browser.execute_script(
        "return markdown('<img src=x onerror=alert(1)> **b** [x](javascript:alert(1)) [y](//evil.example)').innerHTML"
    )
    assert "<img" not in rendered and "&lt;img" in rendered and "<strong>b</strong>" in rendered
    assert "<a" not in rendered and "javascript:" in rendered  # shown as text, not linked

    # Every body starts as its schema's example.
    for op in browser.find_elements(By.CSS_SELECTOR, "#operations details.op"):
        textareas = op.find_elements(By.TAG_NAME, "textarea")
        if not textareas:
            continue
        method, path = op.get_attribute("data-search").split(" ")[:2]
        ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        expected = schemas[ref.rsplit("/", 1)[1]]["examples"][0]
        assert json.loads(textareas[0].get_attribute("value")) == expected, (method, path)

    # Copy as curl: the command runs as shown, against this server.
    def curl_of(op_id: str, **inputs: str) -> str:
        op = browser.find_element(By.ID, op_id)
        if op.get_attribute("open") is None:
            op.find_element(By.TAG_NAME, "summary").click()
        for name, value in inputs.items():
            field = op.find_element(By.CSS_SELECTOR, f"input[data-param='{name}']")
            field.clear()
            field.send_keys(value)
        op.find_element(By.CSS_SELECTOR, "button.copy-curl").click()
        wait.until(lambda b: op.find_element(By.CSS_SELECTOR, "pre.curl").text)
        return str(op.find_element(By.CSS_SELECTOR, "pre.curl").text)

    def run(command: str, **env: str) -> Any:
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin", **env})
        assert result.returncode == 0, (command, result.stderr)
        return json.loads(result.stdout)

    create = curl_of("post_api_jobs")
    assert create.startswith(f'curl -sS -X POST "{docs_server}/api/jobs"') and "$JOBQUEUE_API_KEY" in create
    created = run(create)
    assert (created["job_type"], created["priority"], created["request_data"]) == (
        "thumbnail", 5, schemas["JobCreate"]["examples"][0]["request_data"]
    )
    unfilled = curl_of("get_api_jobs_job_id")
    assert '/api/jobs/$JOB_ID"' in unfilled
    assert run(unfilled, JOB_ID=created["id"])["id"] == created["id"]
    listed = run(curl_of("get_api_jobs", job_type="thumbnail", limit="5"))
    assert created["id"] in [job["id"] for job in listed["items"]]

    # Search over operations: every word must match; headings of empty groups hide.
    def visible() -> list[str]:
        return [op.get_attribute("id") for op in browser.find_elements(By.CSS_SELECTOR, "#operations details.op") if op.is_displayed()]

    total = sum(len(item) for item in document["paths"].values())
    search = browser.find_element(By.ID, "search")
    browser.find_element(By.TAG_NAME, "body").send_keys("/")  # "/" focuses the search
    assert browser.switch_to.active_element == search
    search.send_keys("claim")
    wait.until(lambda b: len(visible()) < total)
    assert "post_api_workers_claim" in visible()
    assert all("claim" in browser.find_element(By.ID, op_id).get_attribute("data-search") for op_id in visible())
    assert browser.find_element(By.ID, "search-count").text == f"{len(visible())} of {total} operations"
    _screenshot(browser, tmp_path_factory, "docs-search-claim")
    search.send_keys(" nothing-matches-this")
    wait.until(lambda b: not visible())
    assert not [h for h in browser.find_elements(By.CSS_SELECTOR, "#operations h2") if h.is_displayed()]
    search.clear()
    search.send_keys(" ")
    wait.until(lambda b: len(visible()) == total)
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
