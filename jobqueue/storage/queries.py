"""Named SQL blocks from a backend's ``queries.sql``, parsed once at import.

A block starts with ``-- name: <query>``; the comment lines after it say what it does. Values
are always bound parameters, never formatted into the text.
"""

from __future__ import annotations

import re
from importlib import resources


def load_queries(package: str) -> dict[str, str]:
    text = (resources.files(package) / "queries.sql").read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        sql = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--")).strip()
        queries[name.strip()] = sql.rstrip(";")
    return queries
