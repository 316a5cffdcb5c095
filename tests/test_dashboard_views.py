"""The Charts and Workers pages of the dashboard, and the unserved-type flag of its main page,
in a real headless Chromium against a real uvicorn (the page helpers of ``test_dashboard``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import set_job_clock
from .test_dashboard import DEADLINE, Dashboard, dashboard, driver  # noqa: F401 (fixtures)
from .test_workers_registry import Pools


class Views(Dashboard):
    def open_page(self, path: str, state: str = "live") -> None:
        self.driver.get(f"{self.base}{path}")
        self.wait_for(lambda: self.js("return document.querySelector('#connection').dataset.state") == state)

    def throughput(self) -> dict[str, dict[str, str]]:
        """Series -> {span: figure} from the Charts page's table."""
        rows = self.js(
            """return [...document.querySelectorAll('#throughput-table tbody tr')].map(tr =>
                [tr.dataset.series, Object.fromEntries([...tr.querySelectorAll('td')].map(td => [td.dataset.span, td.textContent]))])"""
        )
        return {series: figures for series, figures in rows}

    def timings(self) -> dict[str, dict[str, float]]:
        """Job type -> {count, wait-p50, ..., run-p99 (seconds)} from the Charts page's table."""
        rows = self.js(
            """return [...document.querySelectorAll('#timings-table tbody tr')].map(tr => [tr.dataset.jobType,
                Object.fromEntries([...tr.querySelectorAll('td')].map(td =>
                    [td.dataset.field, Number(td.dataset.field === 'count' ? td.textContent : td.dataset.seconds)]))])"""
        )
        return {job_type: figures for job_type, figures in rows}

    def unserved(self) -> str | None:
        return self.js("const p = document.querySelector('#unserved'); return p.hidden ? null : p.textContent")  # type: ignore[no-any-return]

    def workers(self) -> list[dict[str, Any]]:
        return list(
            self.js(
                """return [...document.querySelectorAll('#workers tbody tr')].map(tr => ({
                    id: tr.dataset.workerId, cells: [...tr.cells].map(c => c.textContent),
                    links: [...tr.querySelectorAll('.held a')].map(a => a.getAttribute('href')),
                }))"""
            )
        )


@pytest.fixture
def views(dashboard: Callable[..., Dashboard]) -> Callable[..., Views]:
    def start(**env: str) -> Views:
        page = dashboard(**env)
        return Views(page.driver, page.base)

    return start


@pytest.fixture
def pools(tmp_path: Path, database_url: str) -> Iterator[Pools]:
    started = Pools(tmp_path, database_url)
    yield started
    started.cleanup()


def run(page: Views, job_id: str, outcome: str) -> None:
    """Take a waiting job through processing to ``outcome`` (as a simple worker reports it)."""
    page.api("PUT", f"/api/jobs/{job_id}", json={"status": "processing"})
    page.api("PUT", f"/api/jobs/{job_id}", json={"status": outcome, **({"error": "boom"} if outcome == "failed" else {})})


@pytest.mark.browser
def test_charts_count_throughput_from_the_stream_and_show_percentiles(
    views: Callable[..., Views], database_url: str, tmp_path: Path
) -> None:
    page = views(RUN_WORKER="false")
    page.open_page("/dashboard/charts")
    page.wait_for(lambda: page.js("return document.querySelector('#timings-empty').hidden") is False)

    jobs = [page.enqueue("render", n=i) for i in range(3)] + [page.enqueue("mail")]
    page.wait_for(lambda: page.throughput().get("enqueued", {}).get("300") == "4")
    run(page, jobs[0], "completed")
    run(page, jobs[1], "completed")
    # Known clocks: waits of 4 and 8 s, runs of 2 and 6 s, finished a few seconds ago.
    now = time.time()
    set_job_clock(database_url, jobs[0], created=now - 10, started=now - 6, finished=now - 4)
    set_job_clock(database_url, jobs[1], created=now - 14, started=now - 6, finished=now)
    run(page, jobs[3], "failed")  # a finish: the percentiles are read again

    page.wait_for(lambda: page.throughput()["completed"]["300"] == "2" and page.throughput()["failed"]["300"] == "1")
    enqueued = page.throughput()["enqueued"]
    assert (enqueued["60"], enqueued["300"], enqueued["rate"]) == ("4", "4", "0.07")
    # A read between the completions and the clock change shows other figures: wait for the
    # read that the failure asked for.
    page.wait_for(lambda: page.timings().get("render", {}).get("wait-p50") == pytest.approx(6, abs=0.05))
    render = page.timings()["render"]
    assert render["count"] == 2
    # Interpolated between the two values, as percentile_cont does.
    assert render["wait-p50"] == pytest.approx(6, abs=0.05) and render["wait-p99"] == pytest.approx(7.96, abs=0.05)
    assert render["run-p50"] == pytest.approx(4, abs=0.05) and render["run-p95"] == pytest.approx(5.8, abs=0.05)
    assert page.timings()["mail"]["count"] == 1
    # The SVG: three series over the last five minutes, and one set of bars per type in each chart.
    lines = page.js("return [...document.querySelectorAll('#throughput-chart polyline')].map(p => [p.dataset.series, p.getAttribute('points').split(' ').length])")
    assert lines == [["enqueued", 300], ["completed", 300], ["failed", 300]]
    assert page.js("return document.querySelectorAll('#wait-chart rect.p50').length") == 2
    assert page.js("return document.querySelectorAll('#run-chart rect.p99').length") == 2
    assert "4 enqueued" in page.js("return document.querySelector('#throughput-summary').textContent")

    # Live: one more finish moves the figures without a reload.
    run(page, jobs[2], "completed")
    page.wait_for(lambda: page.throughput()["completed"]["300"] == "3" and page.timings()["render"]["count"] == 3)

    for view, heading in (("throughput", "#throughput-heading"), ("timings", "#timings-heading")):
        page.js("document.querySelector(arguments[0]).scrollIntoView()", heading)
        screenshot = tmp_path / f"charts-{view}.png"
        assert page.driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    assert page.console_errors() == []
    urls = [url for url in page.requested_urls() if url.split(":", 1)[0] in ("http", "https", "ws", "wss")]
    assert [url for url in urls if not url.startswith(page.base + "/")] == []
    assert f"{page.base}/dashboard/static/charts.js" in urls and f"{page.base}/api/stats/timings?window=3600" in urls


@pytest.mark.browser
def test_workers_view_lists_live_pools_and_flags_unserved_types(
    views: Callable[..., Views], pools: Pools, tmp_path: Path
) -> None:
    page = views(RUN_WORKER="false")
    gate = tmp_path / "gate"
    held = page.enqueue("gate", ledger=str(tmp_path / "ledger"), gate=str(gate))

    # The main dashboard flags the type in its counts, and on its row of jobs by type.
    page.open()
    page.wait_for(lambda: page.unserved() == "No live worker serves job type gate: their waiting jobs will not start.")
    badge = "const b = document.querySelector(\"#type-counts tr[data-job-type='gate'] .unserved-badge\"); return b && b.textContent"
    page.wait_for(lambda: page.js(badge) == "no live worker")
    assert page.js("return document.querySelector('#unserved a').getAttribute('href')") == "/dashboard?job_type=gate"

    page.open_page("/dashboard/workers")
    page.wait_for(lambda: page.unserved() is not None and "gate" in page.unserved())  # type: ignore[operator]
    assert page.workers() == [] and page.js("return document.querySelector('#workers-empty').hidden") is False

    proc = pools.start("gate,ledger", concurrency=2)
    page.wait_for(lambda: len(page.workers()) == 1 and page.workers()[0]["links"] == [f"/dashboard/jobs/{held}"])
    worker = page.workers()[0]
    assert worker["cells"][1:5] == [socket.gethostname(), str(proc.pid), "gate, ledger", "2"]
    assert worker["cells"][5].endswith(" ago") and worker["cells"][6].endswith(" ago")
    assert worker["cells"][7].startswith("1: ")
    page.wait_for(lambda: page.unserved() is None)

    screenshot = tmp_path / "workers.png"
    assert page.driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    gate.touch()  # the held job finishes, then the pool stops and leaves
    page.wait_for(lambda: page.workers()[0]["links"] == [])
    proc.terminate()
    assert proc.wait(timeout=DEADLINE) == 0
    page.wait_for(lambda: page.workers() == [])
    page.enqueue("gate", ledger=str(tmp_path / "ledger"), gate=str(gate))
    page.wait_for(lambda: page.unserved() is not None and "gate" in page.unserved())  # type: ignore[operator]
    assert page.console_errors() == []


def test_the_pages_are_self_contained_and_linked(live_server: Callable[..., str]) -> None:
    """Without a browser: each page and its modules are served under the dashboard's policy, and
    every page links to both."""
    base = live_server(RUN_WORKER="false")
    for page, assets in (
        ("/dashboard/charts", ("charts.js", "charts.css")),
        ("/dashboard/workers", ("workers.js", "workers.css")),
        ("/dashboard", ("workers.js", "workers.css")),
    ):
        response = httpx.get(base + page, timeout=10)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "http://" not in response.text and "https://" not in response.text
        assert 'href="/dashboard/charts"' in response.text and 'href="/dashboard/workers"' in response.text
        for asset in assets:
            assert f"/dashboard/static/{asset}" in response.text
    for module in ("charts.js", "workers.js", "common.js"):
        response = httpx.get(f"{base}/dashboard/static/{module}", timeout=10)
        assert response.status_code == 200 and "javascript" in response.headers["content-type"]
