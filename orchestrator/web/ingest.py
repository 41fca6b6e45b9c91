"""The CloudEvents HTTP binding on the console's listener: `POST /v1/events`.

Choreographed services (or a bridge from their broker) post tracked sagas' events here,
in any of the binding's modes: binary (attributes in `ce-*` headers, the data the body),
structured (`application/cloudevents+json`) or batched
(`application/cloudevents-batch+json`, at most the gRPC batch limit). Events are read
by the reader every way in shares and applied through `SagaEventIngestService.ingest`,
the same call IngestEvents makes.

Auth is the gRPC API's: `Authorization: Bearer <token>` looked up in the server's auth
file, allowed to whoever may call IngestEvents (participants and operators); never a
console session cookie. Without an auth file the path is open, like the gRPC API (the
console refuses to listen beyond loopback without one unless told to).

Answers: 200 with `{"verdicts": [...]}` once the ingestor returned, i.e. once what the
events did is committed; 400 naming what is wrong (nothing of the request applied);
401/403; 413 over the body limit; 415 for a content type no mode reads; 503 when the
store is away (send it again: an event already applied is answered DUPLICATE).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from orchestrator.api.ingest import SERVICE_NAME, SagaEventIngestService
from orchestrator.api.status import GRPC_CODES
from orchestrator.core.errors import SagaError
from orchestrator.events.ingest.cloudevents import (
    MalformedEvent,
    UnsupportedFormat,
    parse_message,
)
from orchestrator.security.auth import AuthPolicy
from orchestrator.web.auth import bearer_token

logger = logging.getLogger(__name__)

INGEST_PATH = "/v1/events"
INGEST_METHOD = f"/{SERVICE_NAME}/IngestEvents"
"""The gRPC method whose rule says who may post events here."""
MAX_BODY_BYTES = 4 * 1024 * 1024
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}


@dataclass(frozen=True, slots=True)
class EventIngestRoute:
    """What the route needs: the service that applies events, the auth policy (None:
    auth off), the body limit, and how long a body may take to arrive."""

    service: SagaEventIngestService
    policy: AuthPolicy | None
    max_body_bytes: int = MAX_BODY_BYTES
    body_seconds: float = 10.0


_ROUTE = web.AppKey("event_ingest_route", EventIngestRoute)


def _refusal(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers or None)


def _admit(request: web.Request, policy: AuthPolicy | None) -> web.Response | None:
    """None when the caller may post events; the refusal otherwise."""
    if policy is None:
        return None
    token = bearer_token(request)
    caller = policy.authenticate(token, ()) if token else None
    if caller is None:
        return _refusal(
            401,
            "UNAUTHENTICATED",
            "send Authorization: Bearer <token> of a caller in the server's auth file",
            **{"WWW-Authenticate": 'Bearer realm="saga"'},
        )
    if not policy.may_call(caller, INGEST_METHOD):
        return _refusal(
            403,
            "PERMISSION_DENIED",
            f"{caller.name} may not post events: that needs the participant or operator role",
        )
    return None


async def _body(request: web.Request, route: EventIngestRoute) -> bytes | web.Response:
    declared = request.content_length
    if declared is not None and declared > route.max_body_bytes:
        return _refusal(413, "INVALID_ARGUMENT", f"the body is over {route.max_body_bytes} bytes")
    try:
        async with asyncio.timeout(route.body_seconds):
            body = await request.content.read(route.max_body_bytes + 1)
            # read(n) may stop short of n: read on until the end or past the limit.
            while len(body) <= route.max_body_bytes and not request.content.at_eof():
                chunk = await request.content.read(route.max_body_bytes + 1 - len(body))
                if not chunk:
                    break
                body += chunk
    except TimeoutError:
        return _refusal(400, "INVALID_ARGUMENT", "the body came too slowly")
    if len(body) > route.max_body_bytes:
        return _refusal(413, "INVALID_ARGUMENT", f"the body is over {route.max_body_bytes} bytes")
    return body


async def _post_events(request: web.Request) -> web.StreamResponse:
    route = request.app[_ROUTE]
    refused = _admit(request, route.policy)
    if refused is not None:
        return refused
    body = await _body(request, route)
    if isinstance(body, web.Response):
        return body
    try:
        events = parse_message(
            request.headers.items(),
            request.headers.get("Content-Type"),
            body,
            via="http",
            percent_encoded=True,
            batch_limit=route.service.max_batch,
        )
    except UnsupportedFormat as problem:
        route.service.metrics.malformed.labels("http").inc()
        return _refusal(415, "INVALID_ARGUMENT", problem.message)
    except MalformedEvent as problem:
        route.service.metrics.malformed.labels("http").inc()
        return _refusal(400, "INVALID_ARGUMENT", problem.message)
    try:
        verdicts = await route.service.ingest(events, "http")
    except SagaError as error:
        code = GRPC_CODES[error.code].name
        return _refusal(_HTTP_STATUS.get(code, 500), code, error.message)
    except Exception:
        logger.exception("posted events could not be applied")
        return _refusal(500, "INTERNAL", "internal error; the request may be retried")
    return web.json_response({"verdicts": [str(verdict) for verdict in verdicts]})


def add_ingest_route(app: web.Application, route: EventIngestRoute | None) -> None:
    """Serve `POST /v1/events` on `app` (before any catch-all under /v1/); nothing
    without a route (the server tracks no sagas)."""
    if route is None:
        return
    app[_ROUTE] = route
    app.router.add_post(INGEST_PATH, _post_events)


__all__ = ["INGEST_PATH", "MAX_BODY_BYTES", "EventIngestRoute", "add_ingest_route"]
