"""One JSON error shape for every failure, whatever the settings and whoever asks."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
from starlette.requests import Request
from starlette.responses import Response

from jobqueue.api.app import create_app
from jobqueue.settings import Settings

from .conftest import assert_error


@pytest.mark.parametrize("debug", [False, True])
async def test_an_unexpected_error_keeps_the_error_shape_even_in_debug(settings: Settings, debug: bool) -> None:
    """Starlette's own debug mode answers a browser with an HTML traceback page, and other
    clients with plain text; DEBUG=true only adds the traceback to the usual shape."""
    app = create_app(msgspec.structs.replace(settings, debug=debug))

    async def broken(request: Request) -> Response:
        raise RuntimeError("the disk caught fire")

    app.add_route("/broken", broken)
    async with app.router.lifespan_context(app) as state:

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state)  # what uvicorn does with lifespan state
            await app(scope, receive, send)

        # Starlette re-raises after answering (so servers log it); the client must not.
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for accept in ("text/html,*/*", "*/*"):
                body = assert_error(await client.get("/broken", headers={"accept": accept}), 500)
                assert body["error"] == "internal_error"
                if debug:
                    assert body["detail"].startswith("Traceback (most recent call last):")
                    assert body["detail"].rstrip().endswith("RuntimeError: the disk caught fire")
                else:
                    assert body["detail"] == "internal server error"
