"""Searching the job list: ``GET /api/jobs?id_prefix=...`` and ``data.<field>=<value>``, on every
backend, through the HTTP API (the stores each have their own SQL for it)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import httpx
import pytest

from jobqueue.service import JobQueueService
from jobqueue.settings import Settings
from jobqueue.storage.rules import MAX_DATA_FILTERS, MAX_DATA_VALUE
from jobqueue.storage.sqlite.connection import QUERIES

from .conftest import assert_error, create, sqlite_only


async def ids(client: httpx.AsyncClient, params: Any) -> set[str]:
    response = await client.get("/api/jobs", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(page["items"])
    return {job["id"] for job in page["items"]}


async def test_id_prefix_finds_the_jobs_whose_id_starts_with_it(client: httpx.AsyncClient) -> None:
    jobs = [(await create(client, "searched"))["id"] for _ in range(5)]
    target = jobs[2]

    assert await ids(client, {"id_prefix": target}) == {target}
    assert target in await ids(client, {"id_prefix": target[:4]})
    assert await ids(client, {"id_prefix": target[:8]}) == {j for j in jobs if j.startswith(target[:8])}
    assert await ids(client, {"id_prefix": target[:8], "job_type": "other"}) == set()
    # Case matters (the ids are lowercase), and LIKE's wildcards are plain characters.
    assert await ids(client, {"id_prefix": target.upper()}) == set()
    assert await ids(client, {"id_prefix": target[:3] + "_" + target[4:8]}) == set()
    assert await ids(client, {"id_prefix": target[:8] + "-"}) == ({target} if target[8] == "-" else set())


async def test_data_filters_match_top_level_fields_of_request_data(client: httpx.AsyncClient) -> None:
    async def job(data: Any) -> str:
        return str((await create(client, "filtered", request_data=data))["id"])

    ann_7 = await job({"user": "ann", "n": 7})
    bob_text_7 = await job({"user": "bob", "n": "7"})
    ann_7_5 = await job({"user": "ann", "n": 7.5})
    number_user = await job({"user": 7, "n": None})
    nested = await job({"meta": {"user": "ann"}})
    await job(None)
    wild = await job({"user": "a%", "n": True})

    assert await ids(client, {"data.user": "ann"}) == {ann_7, ann_7_5}
    # A number matches as a number (7 == 7.0) and as the same text.
    assert await ids(client, {"data.n": "7"}) == {ann_7, bob_text_7}
    assert await ids(client, {"data.n": "7.0"}) == {ann_7}
    assert await ids(client, {"data.n": "7.5"}) == {ann_7_5}
    assert await ids(client, {"data.user": "7"}) == {number_user}
    assert await ids(client, {"data.user": "ann", "data.n": "7"}) == {ann_7}
    assert await ids(client, {"data.user": "ann", "id_prefix": ann_7_5[:12]}) == {ann_7_5}
    assert await ids(client, {"data.user": "ann", "status": "failed"}) == set()
    # Only top-level fields, compared whole: no nesting, no wildcards, no booleans or nulls.
    assert await ids(client, {"data.meta": "ann"}) == set()
    assert nested not in await ids(client, {"data.user": "ann"})
    assert await ids(client, {"data.user": "a%"}) == {wild}
    assert await ids(client, {"data.user": "a_n"}) == set()
    assert await ids(client, {"data.n": "true"}) == set()
    assert await ids(client, {"data.n": "null"}) == set()
    assert await ids(client, {"data.user": "' OR 1=1 --"}) == set()
    # The total counts with the same filters beyond the page.
    page = (await client.get("/api/jobs", params={"data.user": "ann", "limit": 1})).json()
    assert len(page["items"]) == 1 and page["total"] == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"id_prefix": ""}, "id_prefix"),
        ({"id_prefix": "abc"}, "id_prefix"),
        ({"id_prefix": "abcd%"}, "id_prefix"),
        ({"id_prefix": "x" * 65}, "id_prefix"),
        ({"data.1st": "a"}, "data.1st"),
        ({"data.a-b": "a"}, "data.a-b"),
        ({"data.a.b": "a"}, "data.a.b"),
        ({"data.": "a"}, "data."),
        ({"data." + "f" * 65: "a"}, "data." + "f" * 65),
        ({"data.user": ""}, "data.user"),
        ({"data.user": "x" * (MAX_DATA_VALUE + 1)}, "data.user"),
        ({f"data.f{i}": "a" for i in range(MAX_DATA_FILTERS + 1)}, "data"),
        ([("data.user", "ann"), ("data.user", "bob")], "data.user"),
    ],
)
async def test_bad_search_parameters_are_422_naming_the_parameter(
    client: httpx.AsyncClient, params: Any, field: str
) -> None:
    assert_error(await client.get("/api/jobs", params=params), 422, field)


@sqlite_only
async def test_sqlite_reads_an_id_prefix_from_the_primary_key(service: JobQueueService, settings: Settings) -> None:
    await service.enqueue_job("planned")  # the schema exists
    params = dict.fromkeys(("statuses", "job_type", "worker_id", "data"), None)
    params |= {"id_prefix": "abcd", "id_prefix_end": "abce", "limit": 10, "offset": 0}
    with closing(sqlite3.connect(settings.database_path)) as db:  # (its own with only commits)
        for name in ("list_jobs_by_id_prefix", "count_jobs_by_id_prefix"):
            plan = " | ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + QUERIES[name], params))
            assert "SEARCH jobs USING" in plan and "(id>? AND id<?)" in plan, (name, plan)
