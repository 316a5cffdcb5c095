"""Bounds on JSON data that every backend can store and every client can read back: nesting
depth, integer size, NUL characters. The API refuses request bodies beyond them with 4xx
(api/limits.py); the worker fails an attempt whose handler returned such a result.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec

#: Deepest nesting of arrays and objects in a JSON body. Far below what msgspec and SQLite's
#: JSON functions handle (a job nested ~970 deep was stored, then broke every listing of it),
#: and far above what a job's data needs.
MAX_JSON_DEPTH = 64
#: Largest magnitude of an integer in JSON data: beyond 2^53, parsers that read numbers as
#: doubles (JavaScript's, and many others by default) silently return a different number.
MAX_JSON_INTEGER = 2**53


# A JSON string, or the unterminated rest of a malformed body. Possessive, so a hostile body
# cannot make it backtrack.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# Opening brackets become 1, closing ones -1 (read as signed bytes).
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def nested_too_deep(body: bytes) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than ``MAX_JSON_DEPTH``.

    Counted on the text, because decoding is recursive: msgspec raises RecursionError below
    1000 levels. Brackets inside strings do not count.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False  # not even that many openings, in strings or not: the usual case
    steps = _STRING.sub(b"", body).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b"))) > MAX_JSON_DEPTH


def unstorable_value(fields: dict[str, Any]) -> tuple[str, str] | None:
    """Where (``request_data.a[2]``) decoded JSON holds what not every backend can store and
    read back, and why; None when there is nothing of the kind.

    ``fields`` are the top-level fields of a body. Refused: integers beyond
    ``MAX_JSON_INTEGER`` (JSON parsers do not all read them back exactly), and text with a NUL
    character (PostgreSQL's text and jsonb cannot hold it; refused on SQLite too, so both
    backends answer the same).
    """
    pending: list[tuple[dict[str, Any] | list[Any], str]] = [(fields, "")]
    while pending:
        container, path = pending.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            if isinstance(key, str) and "\x00" in key:
                return _path(path, key.replace("\x00", "\\u0000")), NUL_TEXT
            if isinstance(item, (dict, list)):
                pending.append((item, _path(path, key)))
            elif isinstance(item, str) and "\x00" in item:
                return _path(path, key), NUL_TEXT
            elif isinstance(item, int) and abs(item) > MAX_JSON_INTEGER:
                return _path(path, key), BIG_INTEGER
    return None


#: Why a value cannot be stored (the end of the 422's detail).
BIG_INTEGER = "is an integer beyond ±2^53, which JSON parsers do not all read back exactly; send it as a string"
NUL_TEXT = "contains a NUL character (\\u0000), which the database cannot store"


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def unstorable_result(value: Any) -> str | None:
    """Why a handler's return value cannot become a job's ``result_data``, or None when it can:
    it does not encode as JSON, or breaks the bounds a request body is held to."""
    if value is None or isinstance(value, (bool, float, str)) or (isinstance(value, int) and abs(value) <= MAX_JSON_INTEGER):
        if not (isinstance(value, str) and "\x00" in value):
            return None  # the usual results of no-op and simple handlers: nothing to walk
    try:
        encoded = msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        return f"it is not JSON ({exc})"
    if nested_too_deep(encoded):
        return f"its JSON nests deeper than {MAX_JSON_DEPTH} levels"
    found = unstorable_value({"result": msgspec.json.decode(encoded)})
    return None if found is None else f"{found[0]} {found[1]}"
