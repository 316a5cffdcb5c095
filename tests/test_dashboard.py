"""The dashboard in a real headless Chromium, driven by selenium, against a real uvicorn.

Every test watches the page the way a person would: counts, rows, progress bars and buttons are
read from the DOM, and changes made through the API must reach the page through its event
stream. Outside CI the browser tests are skipped when chromium or chromedriver is missing; in CI
(``.ci/run`` installs both) they must run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .conftest import headless_chromium
#: Generous: two shared, noisy cores run the server, its worker pool and the browser.
DEADLINE = 30.0

RowState = dict[str, Any]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with headless_chromium(
        tmp_path_factory.mktemp("chromium-profile"),
        "--window-size=1400,1000",
        # The console (for errors) and the network log (for requests leaving the service).
        logging={"browser": "ALL", "performance": "ALL"},
    ) as browser:
        yield browser


class Dashboard:
    """The page of one live server, with the reads and waits the tests share."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver = driver
        self.base = base

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.base + path, **{"timeout": 10, **kwargs})
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def enqueue(self, job_type: str, **data: Any) -> str:
        return str(self.api("POST", "/api/jobs", json={"job_type": job_type, "request_data": data})["id"])

    def generate(self, duration: float) -> str:
        return str(self.api("POST", "/api/generate", json={"prompt": "a calm piano", "duration": duration})["id"])

    def open(self, query: str = "") -> None:
        self.driver.get(f"{self.base}/dashboard{query}")
        # Live means the script ran and the event stream is open: changes from now on show up.
        self.wait_for(lambda: self.js("return document.querySelector('#connection').dataset.state") == "live")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait_for(self, condition: Callable[[], Any], timeout: float = DEADLINE) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s; rows: {self.rows()}")
            time.sleep(0.05)

    def rows(self) -> list[RowState]:
        return list(
            self.js(
                """return [...document.querySelectorAll('#jobs tbody tr')].map(tr => ({
                    id: tr.dataset.jobId, status: tr.dataset.status,
                    type: tr.cells[1].textContent, message: tr.cells[4].textContent,
                    progress: tr.querySelector('progress').value,
                    actions: [...tr.querySelectorAll('button[data-action]')].map(b => b.dataset.action),
                }))"""
            )
        )

    def row(self, job_id: str) -> RowState | None:
        return next((row for row in self.rows() if row["id"] == job_id), None)

    def wait_for_row(self, job_id: str, predicate: Callable[[RowState], bool]) -> RowState:
        def check() -> RowState | None:
            row = self.row(job_id)
            return row if row is not None and predicate(row) else None

        return self.wait_for(check)  # type: ignore[no-any-return]

    def click(self, selector: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        # The page re-renders on every event it receives: an element found just before a
        # re-render is gone by the click, so it is looked up again (a few times, then it fails).
        for attempt in range(5):
            try:
                self.driver.find_element(By.CSS_SELECTOR, selector).click()
                return
            except StaleElementReferenceException:
                if attempt == 4:
                    raise
                time.sleep(0.05)

    def count(self, status: str) -> int | None:
        text = self.js(
            "const c = document.querySelector(`.count-card[data-status='${arguments[0]}'] .count`);"
            "return c && c.textContent",
            status,
        )
        return int(text) if text else None

    def type_counts(self) -> dict[str, list[int]]:
        rows = self.js(
            """return [...document.querySelectorAll('#type-counts tbody tr')].map(tr =>
                [tr.dataset.jobType, [...tr.querySelectorAll('td')].map(td => Number(td.textContent))])"""
        )
        return {name: values for name, values in rows}

    def console_errors(self) -> list[dict[str, Any]]:
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def requested_urls(self) -> list[str]:
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls


@pytest.fixture
def dashboard(driver: Any, live_server: Callable[..., str]) -> Iterator[Callable[..., Dashboard]]:
    def start(**env: str) -> Dashboard:
        page = Dashboard(driver, live_server(**env))
        driver.get("about:blank")
        driver.get_log("browser")  # start each test with empty logs
        driver.get_log("performance")
        return page

    yield start
    # Leave the page before the server stops, or its EventSource logs failed reconnects into the
    # next test's console.
    driver.get("about:blank")


RUNNING = ("processing", "loading_model", "preparing_prompt", "generating_audio", "exporting")


@pytest.mark.browser
def test_page_loads_with_counts_no_console_errors_and_no_external_requests(
    dashboard: Callable[..., Dashboard],
) -> None:
    page = dashboard(RUN_WORKER="false")
    first = [page.enqueue("alpha", n=1), page.enqueue("alpha", n=2), page.enqueue("beta", n=3)]

    page.open()

    page.wait_for(lambda: page.count("all") == 3 and page.count("queued") == 3)
    assert page.count("completed") == 0
    page.wait_for(lambda: page.type_counts() == {"alpha": [2, 2, 0, 0, 0, 0], "beta": [1, 1, 0, 0, 0, 0]})
    assert {row["id"] for row in page.rows()} == set(first)
    # Counts follow the event stream without a reload.
    page.api("POST", f"/api/jobs/{first[0]}/cancel")
    page.enqueue("gamma")
    page.wait_for(lambda: page.count("all") == 4 and page.count("cancelled") == 1)
    page.wait_for(lambda: page.type_counts().get("gamma") == [1, 1, 0, 0, 0, 0])
    page.wait_for(lambda: page.type_counts()["alpha"] == [2, 1, 0, 0, 0, 1])

    assert page.console_errors() == []
    urls = page.requested_urls()
    web = [url for url in urls if url.split(":", 1)[0] in ("http", "https", "ws", "wss")]
    assert [url for url in web if not url.startswith(page.base + "/")] == []
    for asset in ("/dashboard", "/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css", "/api/events"):
        assert page.base + asset in web, f"{asset} was not requested: {web}"


@pytest.mark.browser
def test_progress_bar_moves_live_then_the_row_completes(dashboard: Callable[..., Dashboard]) -> None:
    page = dashboard(WORKER_CONCURRENCY="2")
    page.open()
    job_id = page.generate(duration=60)  # about 3 s of work in ten steps

    page.wait_for_row(job_id, lambda row: True)
    seen: list[int] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        row = page.row(job_id)
        assert row is not None
        seen.append(row["progress"])
        if row["status"] == "completed":
            break
        time.sleep(0.05)

    assert seen == sorted(seen), f"progress went backwards: {seen}"
    # 30..90 come only from "progress" events, which trigger no re-read of the table: seeing
    # them means the bar follows the event stream itself.
    from_progress_events = {value for value in seen if 30 <= value <= 90}
    assert len(from_progress_events) >= 3, f"the bar did not visibly move: {seen}"
    final = page.row(job_id)
    assert final is not None and final["status"] == "completed" and final["progress"] == 100
    assert final["actions"] == []
    assert page.console_errors() == []


@pytest.mark.browser
def test_cancel_button_cancels_a_running_job(dashboard: Callable[..., Dashboard]) -> None:
    page = dashboard()
    page.open()
    job_id = page.generate(duration=300)  # about 15 s: long enough to be caught running

    page.wait_for_row(job_id, lambda row: row["status"] in RUNNING and row["progress"] > 0)
    page.click(f"tr[data-job-id='{job_id}'] button[data-action='cancel']")

    row = page.wait_for_row(job_id, lambda row: row["status"] == "cancelled")
    assert row["actions"] == ["retry"]
    job = page.api("GET", f"/api/jobs/{job_id}")
    assert job["status"] == "cancelled" and job["progress"] < 100
    assert page.console_errors() == []


@pytest.mark.browser
def test_retry_button_requeues_failed_and_cancelled_jobs(dashboard: Callable[..., Dashboard]) -> None:
    page = dashboard(RUN_WORKER="false")
    cancelled, failed, waiting = page.enqueue("alpha"), page.enqueue("alpha"), page.enqueue("alpha")
    page.api("POST", f"/api/jobs/{cancelled}/cancel")
    page.api("PUT", f"/api/jobs/{failed}", json={"status": "failed", "error": "boom"})
    page.open()

    page.wait_for_row(cancelled, lambda row: row["status"] == "cancelled" and row["actions"] == ["retry"])
    # A failed job's row shows its error.
    page.wait_for_row(failed, lambda row: row["status"] == "failed" and row["message"] == "boom")
    assert page.row(failed)["actions"] == ["retry"]  # type: ignore[index]
    assert page.row(waiting) is not None and page.row(waiting)["actions"] == ["cancel"]  # type: ignore[index]

    for job_id in (cancelled, failed):
        page.click(f"tr[data-job-id='{job_id}'] button[data-action='retry']")
        row = page.wait_for_row(job_id, lambda row: row["status"] == "queued")
        assert row["actions"] == ["cancel"]
        assert page.api("GET", f"/api/jobs/{job_id}")["status"] == "queued"
    page.wait_for(lambda: page.count("queued") == 3 and page.count("failed") == 0)
    # The job's stream ends after each terminal event; the detail view must go on past it.
    page.click(f"tr[data-job-id='{cancelled}'] th button")
    history = "return [...document.querySelectorAll('#detail-events tbody tr')].map(tr => tr.dataset.kind)"
    page.wait_for(lambda: page.js(history) == ["created", "cancelled", "retried"])
    assert page.console_errors() == []


@pytest.mark.browser
def test_filters_and_paging_narrow_the_table(dashboard: Callable[..., Dashboard]) -> None:
    page = dashboard(RUN_WORKER="false")
    alphas = [page.enqueue("alpha", n=i) for i in range(9)]
    betas = [page.enqueue("beta", n=i) for i in range(3)]
    page.api("POST", f"/api/jobs/{betas[0]}/cancel")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page.open("?limit=10")
    page.wait_for(lambda: len(page.rows()) == 10)
    assert page.js("return document.querySelector('#page-info').textContent") == "1–10 of 12"
    page.click("#next-page")
    page.wait_for(lambda: len(page.rows()) == 2)
    # Newest first: the second page holds the two oldest jobs.
    assert {row["id"] for row in page.rows()} == set(alphas[:2])

    page.driver.find_element(By.ID, "filter-type").send_keys("beta")
    page.wait_for(lambda: {row["id"] for row in page.rows()} == set(betas))
    Select(page.driver.find_element(By.ID, "filter-status")).select_by_visible_text("cancelled")
    page.wait_for(lambda: [row["id"] for row in page.rows()] == [betas[0]])

    page.driver.find_element(By.ID, "filter-type").clear()
    page.js("document.querySelector('#filter-type').dispatchEvent(new Event('input'))")
    page.wait_for(lambda: [row["id"] for row in page.rows()] == [betas[0]] and page.js("return location.search") == "?status=cancelled&limit=10")
    Select(page.driver.find_element(By.ID, "filter-status")).select_by_visible_text("waiting")
    page.wait_for(lambda: len(page.rows()) == 10 and all(row["status"] == "queued" for row in page.rows()))
    assert page.js("return document.querySelector('#page-info').textContent") == "1–10 of 11"
    # A status card filters too.
    page.click(".count-card[data-status='cancelled']")
    page.wait_for(lambda: [row["id"] for row in page.rows()] == [betas[0]])
    assert page.console_errors() == []


@pytest.mark.browser
def test_job_detail_shows_request_result_and_the_event_history(dashboard: Callable[..., Dashboard]) -> None:
    page = dashboard()
    job_id = page.generate(duration=20)
    assert page.api("GET", f"/api/jobs/{job_id}/wait", params={"timeout": DEADLINE})["status"] == "completed"
    failed = page.enqueue("no-such-handler", note="x")
    page.api("PUT", f"/api/jobs/{failed}", json={"status": "failed", "error": "the model ran out of memory"})
    page.open()

    page.wait_for_row(job_id, lambda row: row["status"] == "completed")
    page.click(f"tr[data-job-id='{job_id}'] th button")
    page.wait_for(lambda: page.js("return document.querySelector('#detail').open"))
    field = "return document.querySelector(`#detail [data-field='${arguments[0]}']`).textContent"
    assert json.loads(page.js(field, "request_data"))["prompt"] == "a calm piano"
    assert json.loads(page.js(field, "result_data"))["audio_url"] == f"/files/{job_id}.wav"
    assert page.js(field, "error") == "—"
    expected = page.api("GET", f"/api/jobs/{job_id}")["event_seq"]
    history = "return [...document.querySelectorAll('#detail-events tbody tr')].map(tr => [Number(tr.dataset.seq), tr.dataset.kind])"
    page.wait_for(lambda: len(page.js(history)) == expected)
    events = page.js(history)
    assert [seq for seq, _ in events] == list(range(1, expected + 1))
    kinds = [kind for _, kind in events]
    assert kinds[0] == "created" and kinds[-1] == "completed" and "progress" in kinds

    page.click("#detail-close")
    page.wait_for(lambda: not page.js("return document.querySelector('#detail').open"))
    page.click(f"tr[data-job-id='{failed}'] th button")
    page.wait_for(lambda: page.js(field, "error") == "the model ran out of memory")
    assert json.loads(page.js(field, "request_data")) == {"note": "x"}
    page.wait_for(lambda: [kind for _, kind in page.js(history)] == ["created", "failed"])
    assert page.js("return [...document.querySelectorAll('#detail-actions button')].map(b => b.dataset.action)") == ["retry"]
    assert page.console_errors() == []


def test_dashboard_page_is_self_contained(live_server: Callable[..., str]) -> None:
    """Without a browser: the page and its assets are served, and the policy forbids other origins."""
    base = live_server(RUN_WORKER="false")
    page = httpx.get(base + "/dashboard", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    for asset, kind in (("dashboard.js", "javascript"), ("dashboard.css", "text/css"), ("favicon.svg", "image/svg")):
        assert f"/dashboard/static/{asset}" in page.text
        response = httpx.get(f"{base}/dashboard/static/{asset}", timeout=10)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text


# -- the job page ----------------------------------------------------------------------------------


class JobPage(Dashboard):
    def open_job(self, job_id: str, state: str = "live") -> None:
        self.driver.get(f"{self.base}/dashboard/jobs/{job_id}")
        self.wait_for(lambda: self.js("return document.querySelector('#connection').dataset.state") == state)

    def field(self, name: str) -> str:
        return str(self.js("return document.querySelector(`[data-field='${arguments[0]}']`).textContent", name))

    def timeline(self) -> list[tuple[int, str]]:
        rows = self.js("return [...document.querySelectorAll('#timeline tbody tr')].map(tr => [Number(tr.dataset.seq), tr.dataset.kind])")
        return [(seq, kind) for seq, kind in rows]

    def attempts(self) -> list[dict[str, Any]]:
        return list(
            self.js(
                """return [...document.querySelectorAll('#attempts tbody tr')].map(tr => ({
                    attempt: Number(tr.dataset.attempt), outcome: tr.dataset.outcome,
                    worker: tr.cells[2].textContent, error: (tr.cells[5].querySelector('summary') || tr.cells[5]).textContent,
                    traceback: (tr.querySelector('details pre') || {}).textContent || null,
                }))"""
            )
        )

    def actions(self) -> list[str]:
        return list(self.js("return [...document.querySelectorAll('#actions button')].map(b => b.dataset.action)"))

    def act(self, action: str, *, confirm: bool) -> None:
        self.click(f"#actions button[data-action='{action}']")
        self.wait_for(lambda: self.js("return document.querySelector('#confirm').open"))
        self.click("#confirm-yes" if confirm else "#confirm-no")
        self.wait_for(lambda: not self.js("return document.querySelector('#confirm').open"))


@pytest.fixture
def job_page(driver: Any, live_server: Callable[..., str]) -> Iterator[Callable[..., JobPage]]:
    def start(**env: str) -> JobPage:
        page = JobPage(driver, live_server(**env))
        driver.get("about:blank")
        driver.get_log("browser")
        return page

    yield start
    driver.get("about:blank")


@pytest.mark.browser
def test_job_page_shows_attempts_with_tracebacks_timeline_and_deletes(
    job_page: Callable[..., JobPage], tmp_path: Any
) -> None:
    page = job_page(RETRY_BASE_DELAY="0.01")
    job_id = page.api("POST", "/api/jobs", json={"job_type": "remote", "request_data": {"n": 7}, "max_attempts": 2})["id"]
    claim = {"worker_id": "far-away", "job_types": ["remote"], "wait": 10}
    token = page.api("POST", "/api/workers/claim", json=claim, timeout=30)["jobs"][0]["claim_token"]
    trace = 'Traceback (most recent call last):\n  File "w.py", line 3, in run\nKeyError: \'n\'\n'
    page.api("POST", f"/api/jobs/{job_id}/fail", json={"claim_token": token, "error": "KeyError: 'n'", "traceback": trace})
    token = page.api("POST", "/api/workers/claim", json=claim, timeout=30)["jobs"][0]["claim_token"]
    page.api("POST", f"/api/jobs/{job_id}/complete", json={"claim_token": token, "result_data": {"doubled": 14}})

    page.open_job(job_id, state="done")
    assert page.js("return document.querySelector('#title').textContent") == f"Job {job_id}"
    assert page.field("status") == "completed"
    assert json.loads(page.field("request_data")) == {"n": 7}
    assert json.loads(page.field("result_data")) == {"doubled": 14}
    assert page.field("waited") != "—" and page.field("ran") != "—"
    assert page.field("created_at").endswith(" ago")
    page.wait_for(lambda: len(page.attempts()) == 2)
    first, second = page.attempts()
    assert (first["attempt"], first["outcome"], first["worker"], first["error"]) == (1, "failed", "far-away", "KeyError: 'n'")
    assert first["traceback"] == trace
    assert (second["attempt"], second["outcome"], second["traceback"]) == (2, "completed", None)
    expected = page.api("GET", f"/api/jobs/{job_id}")["event_seq"]
    page.wait_for(lambda: len(page.timeline()) == expected)
    assert [seq for seq, _ in page.timeline()] == list(range(1, expected + 1))
    assert page.timeline()[0][1] == "created" and page.timeline()[-1][1] == "completed"
    assert page.actions() == ["delete"]

    page.click("button[data-copy='result_data']")
    page.wait_for(lambda: page.js("return document.querySelector(\"button[data-copy='result_data']\").textContent") != "Copy")

    screenshot = tmp_path / "job-page.png"
    assert page.driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    page.act("delete", confirm=True)
    page.wait_for(lambda: "was deleted" in page.js("return document.querySelector('#notice').textContent"))
    assert httpx.get(f"{page.base}/api/jobs/{job_id}").status_code == 404
    assert page.console_errors() == []


@pytest.mark.browser
def test_job_page_is_live_and_its_actions_ask_first(job_page: Callable[..., JobPage]) -> None:
    page = job_page()
    job_id = page.enqueue("nobody-runs-this", step=1)
    page.open_job(job_id)
    assert page.field("status") == "queued" and page.actions() == ["cancel"]

    # A change made elsewhere reaches the page through the job's event stream.
    page.api("PUT", f"/api/jobs/{job_id}", json={"status": "rendering", "progress": 40, "message": "frame 12"})
    page.wait_for(lambda: page.field("status") == "rendering" and page.field("progress") == "40")
    assert page.field("message") == "frame 12"

    page.act("cancel", confirm=False)  # "No": nothing happens
    assert page.api("GET", f"/api/jobs/{job_id}")["cancel_requested"] is False
    page.api("PUT", f"/api/jobs/{job_id}", json={"status": "queued"})
    page.wait_for(lambda: page.field("status") == "queued")
    page.act("cancel", confirm=True)
    page.wait_for(lambda: page.field("status") == "cancelled")
    page.wait_for(lambda: page.timeline()[-1][1] == "cancelled")
    assert page.actions() == ["retry", "delete"]
    page.act("retry", confirm=True)
    page.wait_for(lambda: page.field("status") == "queued")
    page.wait_for(lambda: page.timeline()[-1][1] == "retried")

    page.driver.get(f"{page.base}/dashboard/jobs/no-such-job")
    page.wait_for(lambda: "Could not load job no-such-job" in page.js("return document.querySelector('#notice').textContent"))


@pytest.mark.browser
def test_the_job_dialog_links_to_the_job_page(dashboard: Callable[..., Dashboard]) -> None:
    page = dashboard()
    job_id = page.enqueue("linked")
    page.open()
    page.wait_for_row(job_id, lambda row: row["status"] == "queued")
    page.click(f"tr[data-job-id='{job_id}'] th button")
    page.wait_for(lambda: page.js("return document.querySelector('#detail').open"))
    href = page.js("return document.querySelector('#detail-page').getAttribute('href')")
    assert href == f"/dashboard/jobs/{job_id}"


@pytest.mark.browser
def test_counts_collapse_zero_statuses_and_group_the_running_ones(dashboard: Callable[..., Dashboard]) -> None:
    page = dashboard()
    rendering = page.enqueue("counted")
    loading = page.enqueue("counted")
    page.enqueue("counted")
    page.api("PUT", f"/api/jobs/{rendering}", json={"status": "rendering"})
    page.api("PUT", f"/api/jobs/{loading}", json={"status": "loading_model"})
    page.open()
    visible = "return [...document.querySelectorAll('#status-counts li:not([hidden]) .count-card')].map(c => c.dataset.label)"
    page.wait_for(lambda: page.js(visible) == ["total", "queued", "running"])
    card = ".count-card[data-label='running']"
    assert page.js(f"return document.querySelector(\"{card} .count\").textContent") == "2"
    title = page.js(f"return document.querySelector(\"{card}\").title")
    assert "rendering: 1" in title and "loading model: 1" in title and "processing" not in title

    page.api("PUT", f"/api/jobs/{rendering}", json={"status": "completed"})
    page.wait_for(lambda: page.js(visible) == ["total", "queued", "running", "completed"])
    page.click(card)  # the running card filters the table by every running status
    page.wait_for(lambda: [row["id"] for row in page.rows()] == [loading])
    assert page.console_errors() == []


# -- the job list: freeze, times, search, bulk actions, the failed view ----------------------------


def row_ids(page: Dashboard) -> list[str]:
    return [row["id"] for row in page.rows()]


def text_of(page: Dashboard, selector: str) -> str:
    return str(page.js("const n = document.querySelector(arguments[0]); return n ? n.textContent.trim() : ''", selector))


def confirm(page: Dashboard, answer: bool) -> str:
    """Answer the bulk confirmation dialog; returns its question."""
    page.wait_for(lambda: page.js("return document.querySelector('#bulk-confirm').open"))
    question = text_of(page, "#bulk-question")
    page.click("#bulk-yes" if answer else "#bulk-no")
    page.wait_for(lambda: not page.js("return document.querySelector('#bulk-confirm').open"))
    return question


@pytest.mark.browser
def test_frozen_list_keeps_its_rows_and_counts_changes_until_shown(dashboard: Callable[..., Dashboard]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page = dashboard(RUN_WORKER="false")
    first = [page.enqueue("frozen", n=i) for i in range(3)]
    page.open()
    page.wait_for(lambda: row_ids(page) == first[::-1])

    # Keyboard: the toggle is a button, Space presses it.
    page.driver.find_element(By.ID, "freeze").send_keys(Keys.SPACE)
    page.wait_for(lambda: page.js("return document.querySelector('#freeze').getAttribute('aria-pressed')") == "true")
    assert text_of(page, "#frozen-count") == "no changes"
    later = [page.enqueue("frozen", n=10), page.enqueue("frozen", n=11)]
    page.api("POST", f"/api/jobs/{first[0]}/cancel")
    page.wait_for(lambda: text_of(page, "#frozen-count") == "2 new, 1 changed")
    # The rows stayed where they were; the changed one changed in place.
    assert row_ids(page) == first[::-1]
    page.wait_for_row(first[0], lambda row: row["status"] == "cancelled")
    assert row_ids(page) == first[::-1]

    page.click("#show-changes")
    page.wait_for(lambda: row_ids(page) == later[::-1] + first[::-1])
    assert text_of(page, "#frozen-count") == "no changes"
    newest = page.enqueue("frozen", n=12)
    page.wait_for(lambda: text_of(page, "#frozen-count") == "1 new")
    assert newest not in row_ids(page)

    page.click("#follow")
    page.wait_for(lambda: row_ids(page)[0] == newest)
    assert page.js("return document.querySelector('#frozen').hidden")
    following = page.enqueue("frozen", n=13)
    page.wait_for(lambda: row_ids(page)[0] == following)
    assert page.console_errors() == []


@pytest.mark.browser
def test_rows_show_relative_times_and_how_long_jobs_waited_and_ran(dashboard: Callable[..., Dashboard]) -> None:
    page = dashboard(RUN_WORKER="false")
    waiting = page.enqueue("timed")
    running = page.enqueue("timed")
    done = page.enqueue("timed")
    page.api("PUT", f"/api/jobs/{running}", json={"status": "processing"})
    page.api("PUT", f"/api/jobs/{done}", json={"status": "processing"})
    page.api("PUT", f"/api/jobs/{done}", json={"status": "completed"})
    page.open()
    page.wait_for_row(done, lambda row: row["status"] == "completed")

    def cells(job_id: str) -> dict[str, Any]:
        return dict(
            page.js(
                """const tr = document.querySelector(`tr[data-job-id='${arguments[0]}']`);
                const time = tr.querySelector('td.when time');
                return {created: time.textContent, title: time.title, datetime: time.dateTime,
                        waited: tr.querySelector("[data-took='waited']").textContent,
                        ran: tr.querySelector("[data-took='ran']").textContent}""",
                job_id,
            )
        )

    job = page.api("GET", f"/api/jobs/{waiting}")
    shown = cells(waiting)
    assert shown["created"].endswith(" s ago") and shown["datetime"] == job["created_at"]
    assert shown["title"] and shown["title"] != shown["created"]  # the absolute time, on hover
    assert shown["ran"] == "—"
    assert cells(running)["ran"] != "—" and cells(done)["ran"] != "—"
    # Without any event, the clock moves what still grows: the wait of the waiting job, the run
    # of the running one; the finished job's durations stay.
    before = {job_id: cells(job_id) for job_id in (waiting, running, done)}
    page.wait_for(lambda: cells(waiting)["waited"] != before[waiting]["waited"] and cells(running)["ran"] != before[running]["ran"], timeout=10)
    page.wait_for(lambda: cells(waiting)["created"] != before[waiting]["created"], timeout=10)
    assert (cells(done)["waited"], cells(done)["ran"]) == (before[done]["waited"], before[done]["ran"])
    assert cells(running)["waited"] == before[running]["waited"]
    assert page.console_errors() == []


@pytest.mark.browser
def test_search_box_finds_jobs_by_id_prefix_and_request_field_and_keeps_them_in_the_url(
    dashboard: Callable[..., Dashboard],
) -> None:
    from selenium.webdriver.common.by import By

    page = dashboard(RUN_WORKER="false")
    ann = page.enqueue("searched", user="ann", n=7)
    bob = page.enqueue("searched", user="bob", n=7)
    ann_2 = page.enqueue("searched", user="ann", n=8)
    page.open()
    page.wait_for(lambda: len(page.rows()) == 3)

    def search(text: str) -> None:
        box = page.driver.find_element(By.ID, "search")
        box.clear()
        box.send_keys(text)

    search("user=ann")
    page.wait_for(lambda: row_ids(page) == [ann_2, ann])
    assert page.js("return location.search") == "?data.user=ann"
    search("user=ann n=7")
    page.wait_for(lambda: row_ids(page) == [ann])
    search(bob[:8])
    page.wait_for(lambda: row_ids(page) == [bob])
    assert page.js("return location.search") == f"?id_prefix={bob[:8]}"
    search("ab")
    page.wait_for(lambda: not page.js("return document.querySelector('#search-error').hidden"))
    assert row_ids(page) == [bob]  # nothing was asked for with a search it did not understand

    page.open(f"?id_prefix={ann[:8]}&data.n=7")
    page.wait_for(lambda: row_ids(page) == [ann])
    assert page.js("return document.querySelector('#search').value") == f"{ann[:8]} n=7"
    assert page.console_errors() == []


@pytest.mark.browser
def test_bulk_actions_ask_first_then_act_on_the_selected_jobs_and_name_each_failure(
    dashboard: Callable[..., Dashboard],
) -> None:
    page = dashboard(RUN_WORKER="false")
    queued = page.enqueue("bulk")
    failed = page.enqueue("bulk")
    cancelled = page.enqueue("bulk")
    other = page.enqueue("bulk")
    page.api("PUT", f"/api/jobs/{failed}", json={"status": "failed", "error": "boom"})
    page.api("POST", f"/api/jobs/{cancelled}/cancel")
    page.open()
    page.wait_for_row(cancelled, lambda row: row["status"] == "cancelled")
    assert page.js("return document.querySelector('#bulk-bar').hidden")

    for job_id in (queued, failed, cancelled):
        page.click(f"tr[data-job-id='{job_id}'] input.select")
    page.wait_for(lambda: text_of(page, "#bulk-count") == "3 selected")
    page.click("#bulk-bar [data-bulk='retry']")
    assert confirm(page, False) == "Retry 3 selected jobs?"
    assert page.api("GET", f"/api/jobs/{failed}")["status"] == "failed"  # "No": nothing happened

    page.click("#bulk-bar [data-bulk='retry']")
    confirm(page, True)
    page.wait_for(lambda: text_of(page, "#bulk-summary") == "2 of 3 jobs retried; 1 could not be:")
    failures = page.js("return [...document.querySelectorAll('#bulk-failures li')].map(li => [li.dataset.jobId, li.textContent])")
    assert len(failures) == 1 and failures[0][0] == queued and queued in failures[0][1]
    assert {page.api("GET", f"/api/jobs/{j}")["status"] for j in (failed, cancelled)} == {"queued"}
    # What succeeded left the selection; the failure stays selected to look at.
    assert text_of(page, "#bulk-count") == "1 selected"

    page.click("#select-page")
    page.wait_for(lambda: text_of(page, "#bulk-count") == "4 selected")
    page.click("#bulk-bar [data-bulk='cancel']")
    assert confirm(page, True) == "Cancel 4 selected jobs?"
    page.wait_for(lambda: all(row["status"] == "cancelled" for row in page.rows()))
    assert {page.api("GET", f"/api/jobs/{j}")["status"] for j in (queued, failed, cancelled, other)} == {"cancelled"}

    page.click("#select-page")
    page.click("#bulk-bar [data-bulk='delete']")
    assert confirm(page, True) == "Delete 4 selected jobs?"
    page.wait_for(lambda: page.rows() == [])
    assert text_of(page, "#bulk-summary") == "4 of 4 jobs deleted."
    assert httpx.get(f"{page.base}/api/jobs/{queued}").status_code == 404
    assert page.js("return document.querySelector('#bulk-bar').hidden")
    # The browser logs the refused retry's 409; nothing else went wrong.
    refused = f"/api/jobs/{queued}/retry - Failed to load resource: the server responded with a status of 409"
    assert [e for e in page.console_errors() if refused not in e["message"]] == []


@pytest.mark.browser
def test_failed_view_lists_errors_links_and_retries_every_failed_job_of_a_type(
    dashboard: Callable[..., Dashboard], tmp_path: Any
) -> None:
    page = dashboard(RUN_WORKER="false")
    alpha = [page.enqueue("alpha", n=i) for i in range(2)]
    beta = page.enqueue("beta", n=1)
    page.enqueue("gamma")
    for job_id, error in ((alpha[0], "KeyError: 'n'"), (alpha[1], "timeout after 30s"), (beta, "disk full")):
        page.api("PUT", f"/api/jobs/{job_id}", json={"status": "failed", "error": error})
    page.open()
    page.wait_for(lambda: len(page.rows()) == 4)
    page.js("document.querySelector('#jobs-heading').scrollIntoView()")
    screenshot = tmp_path / "job-list.png"
    assert page.driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    page.click(".view-tab[data-view='failed']")
    page.wait_for(lambda: set(row_ids(page)) == {*alpha, beta})
    assert page.js("return location.search") == "?view=failed"
    assert page.row(beta)["message"] == "disk full"  # type: ignore[index]
    visible_headers = page.js(
        "return [...document.querySelectorAll('#jobs thead th')].filter(th => th.offsetParent !== null).map(th => th.innerText.trim())"
    )
    assert "Error" in visible_headers and "Finished" in visible_headers and "Attempts" in visible_headers
    assert "Progress" not in visible_headers
    finished = page.js(f"return document.querySelector(\"tr[data-job-id='{beta}'] td.failed-only time\").dateTime")
    assert finished == page.api("GET", f"/api/jobs/{beta}")["completed_at"]
    link = page.js(f"return document.querySelector(\"tr[data-job-id='{beta}'] a.page-link\").getAttribute('href')")
    assert link == f"/dashboard/jobs/{beta}"
    page.wait_for(lambda: page.js("return [...document.querySelectorAll('#retry-failed button')].map(b => b.textContent)")
                  == ["Retry all 2 failed alpha", "Retry all 1 failed beta"])
    page.js("document.querySelector('#jobs-heading').scrollIntoView()")
    screenshot = tmp_path / "failed-view.png"
    assert page.driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    page.click("#retry-failed button[data-job-type='alpha']")
    assert confirm(page, True) == "Retry all 2 failed jobs of type alpha?"
    page.wait_for(lambda: row_ids(page) == [beta])
    assert {page.api("GET", f"/api/jobs/{j}")["status"] for j in alpha} == {"queued"}
    page.wait_for(lambda: page.js("return [...document.querySelectorAll('#retry-failed button')].map(b => b.textContent)")
                  == ["Retry all 1 failed beta"])

    # The failed card is the same view, one click away; the tab back shows every job again.
    page.click(".view-tab[data-view='all']")
    page.wait_for(lambda: len(page.rows()) == 4)
    page.click(".count-card[data-status='failed']")
    page.wait_for(lambda: row_ids(page) == [beta] and page.js("return location.search") == "?view=failed")
    assert page.console_errors() == []
