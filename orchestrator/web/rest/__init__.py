"""The HTTP/JSON API: every public saga.v1 RPC under /v1, beside the console.

Routes come from the protos' `google.api.http` rules (`rules`), requests and answers
follow the protobuf JSON mapping (`transcoding`), each call goes through the servicer's
own handler behind the gRPC auth policy (`gateway`), WatchSaga is server-sent events
(`stream`), and the OpenAPI document is generated from the same descriptors (`openapi`).
docs/http.md is its manual.

Same layer as the console: may import the core, the API, security and telemetry.
"""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

from orchestrator.web.rest.gateway import RestServices, add_rest_routes
from orchestrator.web.rest.openapi import OPENAPI_PATH
from orchestrator.web.rest.stream import serve_watch

__all__ = ["OPENAPI_PATH", "RestServices", "add_api"]


@functools.cache
def _document() -> bytes:
    """The shipped copy of docs/openapi.json (`make openapi` writes both)."""
    return (resources.files("orchestrator.web.rest") / "openapi.json").read_bytes()


async def _openapi(request: web.Request) -> web.StreamResponse:
    """The OpenAPI document (public: it describes the API, it holds no data)."""
    return web.Response(body=_document(), content_type="application/json")


def add_api(app: web.Application, services: RestServices, *, body_seconds: float) -> None:
    """Serve the API and its OpenAPI document on `app`."""
    app.router.add_get(OPENAPI_PATH, _openapi)
    add_rest_routes(app, services, body_seconds=body_seconds, watch=serve_watch)
