"""Hostile input that must not hurt the service: oversized bodies and headers (counted while they
arrive, through a real uvicorn on 127.0.0.1), JSON nested too deep, numbers and text that
cannot be read back."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest

from jobqueue.api.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH
from jobqueue.api.protocol import MAX_HEADER_BYTES

from .conftest import assert_error, create

#: What a hostile client offers; the server must answer long before it has read all of it.
OFFERED_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 64 * 1024


@pytest.fixture
def server(live_server: Callable[..., str]) -> str:
    return live_server(RUN_WORKER="false")


@pytest.fixture
def job_id(server: str) -> str:
    response = httpx.post(f"{server}/api/jobs", json={"job_type": "limits"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _read_response(sock: socket.socket) -> bytes:
    """What the server sent before closing (or the first 64 KiB of it)."""
    data = b""
    try:
        while len(data) < 65536 and (chunk := sock.recv(65536)):
            data += chunk
            if b"\r\n\r\n" in data and data.split(b"\r\n\r\n", 1)[1]:
                break
    except ConnectionResetError:
        pass  # the server closed with our unread bytes still queued; what it sent was read
    return data


def _offer(sock: socket.socket, piece: bytes, limit: int) -> int:
    """Send ``piece`` repeatedly until ``limit`` bytes are out or the server answers; the bytes sent."""
    sent = 0
    while sent < limit:
        if select.select([sock], [], [], 0)[0]:
            break  # an answer (or the close) arrived: stop offering
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(piece)
    return sent


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server: str, job_id: str) -> None:
    for method, path in (("POST", "/api/jobs"), ("PUT", f"/api/jobs/{job_id}"), ("POST", f"/api/jobs/{job_id}/cancel")):
        with _connect(server) as sock:
            sock.sendall(
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            sent = _offer(sock, b"%x\r\n%s\r\n" % (CHUNK_BYTES, b" " * CHUNK_BYTES), OFFERED_BYTES)
            if sent >= OFFERED_BYTES:
                sock.sendall(b"0\r\n\r\n")
            response = _read_response(sock)
        assert sent < OFFERED_BYTES // 4, f"{method} {path}: the server read {sent} bytes before answering"
        assert response.startswith(b"HTTP/1.1 413"), (method, path, response[:200])
        assert b"application/json" in response.split(b"\r\n\r\n")[0]
        assert b'"error":"payload_too_large"' in response


def test_a_declared_content_length_over_the_limit_is_refused_before_reading(server: str, job_id: str) -> None:
    for method, path in (
        ("POST", "/api/jobs"),
        ("PUT", f"/api/jobs/{job_id}"),
        ("POST", f"/api/jobs/{job_id}/cancel"),
        ("POST", f"/api/jobs/{job_id}/retry"),
        ("GET", "/health"),  # a route that reads no body: the body is never read either
    ):
        with _connect(server) as sock:
            sock.sendall(
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {100 * MAX_BODY_BYTES}\r\n\r\n".encode()
            )
            response = _read_response(sock)  # not one byte of the body was sent
        assert response.startswith(b"HTTP/1.1 413"), (method, path, response[:200])
        assert b'"error":"payload_too_large"' in response


def test_a_huge_header_is_refused_while_it_arrives(server: str) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        offered = 16 * 1024 * 1024
        sent = _offer(sock, b"a" * CHUNK_BYTES, offered)
        if sent >= offered:
            sock.sendall(b"\r\n\r\n")
        response = _read_response(sock)
    assert sent < offered // 4, f"the server read a {sent}-byte header"
    assert response.startswith(b"HTTP/1.1 431"), response[:200]
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"application/json" in head
    assert msgspec.json.decode(body) == {
        "error": "header_too_large", "detail": f"request head is larger than {MAX_HEADER_BYTES} bytes"
    }  # fmt: skip


def test_a_head_just_under_the_limit_is_read(server: str) -> None:
    padding = MAX_HEADER_BYTES - 200
    with _connect(server) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {'a' * padding}\r\n\r\n".encode())
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 200"), response[:200]


def test_a_small_head_and_a_large_body_in_one_write_are_read(server: str) -> None:
    """The head is bounded, not the read it arrives in: a head of a few hundred bytes sent with
    a body of several times the head limit, in one write, is a normal request."""
    body = msgspec.json.encode({"job_type": "limits", "request_data": {"blob": "x" * (4 * MAX_HEADER_BYTES)}})
    request = (
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with _connect(server) as sock:
        sock.sendall(request + request)  # two in one write: the count starts over per request
        response = b""
        while response.count(b"HTTP/1.1 201") < 2 and (chunk := sock.recv(65536)):
            response += chunk
    assert response.count(b"HTTP/1.1 201") == 2, response[:300]


def test_a_body_within_the_limit_is_read(server: str) -> None:
    body = {"job_type": "limits", "request_data": {"blob": "x" * (MAX_BODY_BYTES - 100)}}
    response = httpx.post(f"{server}/api/jobs", json=body)
    assert response.status_code == 201, response.text[:200]


# -- JSON nesting ----------------------------------------------------------------------------------


def nested(depth: int) -> str:
    """JSON text of arrays nested ``depth`` levels deep (too deep for recursive encoders)."""
    return "[" * depth + "]" * depth


JSON_ROUTES = [
    ("POST", "/api/jobs"),
    ("PUT", "/api/jobs/{id}"),
    ("POST", "/api/jobs/{id}/progress"),
    ("POST", "/api/jobs/{id}/cancel"),
    ("POST", "/api/jobs/{id}/heartbeat"),
    ("POST", "/api/jobs/{id}/complete"),
    ("POST", "/api/jobs/{id}/fail"),
    ("POST", "/api/jobs/{id}/release"),
    ("POST", "/api/workers/claim"),
    ("POST", "/api/generate"),
    ("POST", "/api/generate/audiogen"),
]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 970, 2000])
@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
async def test_json_nested_too_deep_is_refused_at_the_door(
    client: httpx.AsyncClient, method: str, path: str, depth: int
) -> None:
    job = await create(client)
    # The deep value in a free-form field, so that only its depth is wrong.
    body = f'{{"job_type": "deep", "request_data": {{"x": {nested(depth - 2)}}}, "result_data": {nested(depth - 1)}}}'
    response = await client.request(
        method, path.format(id=job["id"]), content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400)
    assert response.json()["error"] == "nested_too_deep"
    listing = await client.get("/api/jobs")
    assert listing.status_code == 200 and listing.json()["total"] == 1


async def test_json_at_the_depth_limit_is_stored_and_read_back(client: httpx.AsyncClient) -> None:
    data = {"x": msgspec.json.decode(nested(MAX_JSON_DEPTH - 2))}  # the body and request_data add two
    job = await create(client, request_data=data)
    assert job["request_data"] == data
    listing = await client.get("/api/jobs")
    assert listing.status_code == 200
    assert listing.json()["items"][0]["request_data"] == data
    claim = await client.post("/api/workers/claim", json={"worker_id": "w"})
    assert claim.status_code == 200
    assert claim.json()["jobs"][0]["job"]["request_data"] == data


async def test_brackets_inside_strings_do_not_count(client: httpx.AsyncClient) -> None:
    data = {"text": "[{" * 1000 + '"\\'}
    job = await create(client, request_data=data)
    assert job["request_data"] == data


# -- text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_type", ["a\x00b", "tab\there", "line\nbreak", "bell\x07", "del\x7f", "c1\x85", " ", "   ", "\u2003\u3000", "\t"])
async def test_job_type_with_control_characters_or_only_whitespace_is_422(
    client: httpx.AsyncClient, job_type: str
) -> None:
    assert_error(await client.post("/api/jobs", json={"job_type": job_type}), 422, "job_type")
    assert (await client.get("/api/jobs")).json()["total"] == 0


@pytest.mark.parametrize("job_type", ["résumé", "send email", "  padded", "画像"])
async def test_job_type_may_be_any_printable_text(client: httpx.AsyncClient, job_type: str) -> None:
    assert (await create(client, job_type))["job_type"] == job_type


# -- numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"n": 10**40}, "request_data.n"),
        ({"a": [1, {"b": -(2**53) - 1}]}, "request_data.a[1].b"),
        ({"ids": [2**53 + 1]}, "request_data.ids[0]"),
    ],
)
async def test_integers_beyond_2_53_in_request_data_are_422(
    client: httpx.AsyncClient, data: dict[str, Any], where: str
) -> None:
    body = assert_error(await client.post("/api/jobs", json={"job_type": "big", "request_data": data}), 422, "request_data")
    assert where in body["detail"]
    assert (await client.get("/api/jobs")).json()["total"] == 0


async def test_integers_up_to_2_53_are_kept_exactly(client: httpx.AsyncClient) -> None:
    data = {"max": 2**53, "min": -(2**53), "float": 1e300}
    assert (await create(client, request_data=data))["request_data"] == data


async def test_integers_beyond_2_53_in_result_data_are_422(client: httpx.AsyncClient) -> None:
    job = await create(client)
    assert_error(await client.put(f"/api/jobs/{job['id']}", json={"result_data": [10**40]}), 422, "result_data")
    claimed = (await client.post("/api/workers/claim", json={"worker_id": "w"})).json()["jobs"][0]
    response = await client.post(
        f"/api/jobs/{job['id']}/complete", json={"claim_token": claimed["claim_token"], "result_data": {"n": 10**40}}
    )
    assert_error(response, 422, "result_data")
    assert (await client.get(f"/api/jobs/{job['id']}")).json()["status"] == "processing"


@pytest.mark.parametrize(
    ("path", "body", "where", "field"),
    [
        ("/api/jobs", {"job_type": "nul", "request_data": {"text": "a\u0000b"}}, "request_data.text", "request_data"),
        ("/api/jobs", {"job_type": "nul", "request_data": {"k\u0000": 1}}, "request_data.k\\u0000", "request_data"),
        ("/api/workers/claim", {"worker_id": "w\u0000"}, "worker_id", "worker_id"),
    ],
)
async def test_text_with_a_nul_character_is_422_on_every_backend(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], where: str, field: str
) -> None:
    """PostgreSQL cannot store NUL in text or jsonb (it answered 503); both backends refuse it."""
    error = assert_error(await client.post(path, json=body), 422, field)
    assert where in error["detail"] and "NUL" in error["detail"]
    assert (await client.get("/api/jobs")).json()["total"] == 0
