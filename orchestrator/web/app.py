"""The console's HTTP side: a JSON API over the servicer, server-sent events, the page.

aiohttp serves it from the orchestrator's own asyncio loop (`serving.py`), beside the
HTTP/JSON API under /v1 (`rest/`). Every read and action goes through `ConsoleCalls`,
i.e. the gRPC servicer's handlers; live updates stream WatchSaga.

Every response carries a Content-Security-Policy that allows only this origin's
own scripts, styles and connections: the page loads nothing from elsewhere, and
even a rendering mistake could not run an injected script. Actions are POSTs
with a JSON body from this origin only (a cross-site form cannot send one).

The guards that run before any handler (security headers, the Host check in laptop
mode, quiet parser errors, the header-read bound) are in `hardening.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from importlib import resources
from typing import Any

import grpc
from aiohttp import web
from aiohttp_sse import sse_response

from orchestrator.api.events_admin import SagaEventsService
from orchestrator.api.servicer import SagaOrchestratorService
from orchestrator.api.tasks import SagaTasksService
from orchestrator.api.tenancy import bind_namespaces
from orchestrator.web.auth import (
    CALLER,
    LEGACY_TOKEN_COOKIE,
    OPERATOR,
    READER,
    Authenticator,
    Identity,
    TokenAuthenticator,
    bearer_token,
    laptop_mode,
    token_digest,
)
from orchestrator.web.bulk import add_bulk_routes
from orchestrator.web.calls import (
    COUNT_CAP,
    CallRefused,
    ConsoleCalls,
    ListQuery,
    list_query,
    query_int,
)
from orchestrator.web.hardening import (
    ALLOWED_HOSTS,
    HEADER_TIMEOUT_SECONDS,
    Handler,
    host_check,
    host_name,
    security_headers,
)
from orchestrator.web.ingest import EventIngestRoute, add_ingest_route
from orchestrator.web.rest import RestServices, add_api
from orchestrator.web.rest.stream import CLIENT_GONE
from orchestrator.web.sessions import SESSION_COOKIE, SessionTable

logger = logging.getLogger(__name__)

STATIC = resources.files("orchestrator.web") / "static"
SHUTDOWN_SECONDS = 2.0
SSE_PING_SECONDS = 15.0
CONSOLE_BODY_BYTES = 1024**2
"""The console's own requests are small; aiohttp's default bound (the API's is its own)."""
ACTIONS = ("abort", "retry", "resolve")

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
}

IDENTITY = web.AppKey("identity", Identity)
_CALLS = web.AppKey("calls", ConsoleCalls)
_AUTHENTICATE: web.AppKey[Authenticator] = web.AppKey("authenticate")
_SESSIONS = web.AppKey("sessions", SessionTable)
_BODY_SECONDS: web.AppKey[float] = web.AppKey("body_seconds")
_TASK_PATHS = ("/api/whoami", "/api/session", "/api/tasks")
"""What an approver without a reading role may call: who they are, and the tasks."""
_BY_SESSION = web.RequestKey("by_session", bool)
"""Set on a request whose caller is known by its session cookie."""


def _error(code: grpc.StatusCode, message: str, reason: str = "") -> web.Response:
    body = {"error": {"code": code.name, "message": message, "reason": reason}}
    return web.json_response(body, status=_HTTP_STATUS.get(code, 500))


def _identity(request: web.Request) -> Identity:
    return request[CALLER]


async def _caller(request: web.Request) -> Identity | None:
    """Who calls: the authenticator's answer (a bearer token, or laptop mode), else,
    for a request without an Authorization header, the session its cookie names."""
    identity = await request.app[_AUTHENTICATE](request)
    if identity is not None or "Authorization" in request.headers:
        return identity
    authenticate = request.app[_AUTHENTICATE]
    revalidate = authenticate.identity_of if isinstance(authenticate, TokenAuthenticator) else None
    request[_BY_SESSION] = True
    return request.app[_SESSIONS].identity(request.cookies.get(SESSION_COOKIE, ""), revalidate)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate API calls, and answer a refused call as JSON with its HTTP status."""
    if request.path.startswith("/api/") and request.method != "DELETE":
        identity = await _caller(request)
        if identity is None:
            return _error(grpc.StatusCode.UNAUTHENTICATED, "sign in with a console token")
        request[CALLER] = identity
        if not identity.may_read_sagas and not request.path.startswith(_TASK_PATHS):
            return _error(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{identity.name} may decide tasks but not read sagas: that needs a "
                "client, reader or operator role",
            )
        bind_namespaces(identity.namespaces)  # the servicer's reads stay in them
    try:
        return await handler(request)
    except CallRefused as refused:
        return _error(refused.code, refused.message, refused.reason)


def _int_param(request: web.Request, name: str, header: str = "") -> int:
    """A numeric query parameter (0 when absent); `header`, when sent, takes precedence
    (a reconnecting EventSource sends Last-Event-Id with its original URL)."""
    text = (request.headers.get(header, "") if header else "") or request.query.get(name, "")
    return query_int(name, text)


async def _index(request: web.Request) -> web.StreamResponse:
    page = (STATIC / "index.html").read_bytes()
    return web.Response(body=page, content_type="text/html", charset="utf-8")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    asset = STATIC / name
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in types or not asset.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=asset.read_bytes(), content_type=types[suffix], charset="utf-8")


async def _whoami(request: web.Request) -> web.StreamResponse:
    identity = _identity(request)
    return web.json_response(
        {
            "name": identity.name,
            "roles": sorted(identity.roles),
            "authenticated": identity.authenticated,
            "may_act": identity.may_act,
            "may_decide": identity.may_decide,
            "may_read_sagas": identity.may_read_sagas,
        }
    )


def _served_over_tls(request: web.Request) -> bool:
    """TLS here, or at a proxy that says so. Trusting the proxy's header is harmless for
    this use: a forged one only makes the browser keep the cookie from plain HTTP."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def _sign_in(request: web.Request) -> web.StreamResponse:
    """Open a session for the caller the page signed in as (with a bearer token, which
    the guard has already checked) and name it in an HttpOnly, same-site cookie; the
    token itself stays with the page that typed it."""
    await _json_body(request)  # same origin, JSON: no cross-site sign-in
    if request.get(_BY_SESSION):
        # A session must not renew itself past its lifetime: signing in takes the token.
        return _error(grpc.StatusCode.UNAUTHENTICATED, "sign in with a console token")
    identity = _identity(request)
    response = web.json_response({"name": identity.name})
    if not identity.authenticated:
        return response  # laptop mode: nothing to remember
    token = bearer_token(request)
    sessions = request.app[_SESSIONS]
    sessions.revoke(request.cookies.get(SESSION_COOKIE, ""))  # signing in again replaces it
    session_id = sessions.open(identity, token_digest(token) if token else None)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=_served_over_tls(request),
        max_age=int(sessions.lifetime_seconds),
    )
    response.del_cookie(LEGACY_TOKEN_COOKIE, path="/")
    return response


async def _sign_out(request: web.Request) -> web.StreamResponse:
    """End the session on the server (its cookie is worthless from now on), then in
    the browser."""
    request.app[_SESSIONS].revoke(request.cookies.get(SESSION_COOKIE, ""))
    response = web.json_response({})
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(LEGACY_TOKEN_COOKIE, path="/")
    return response


async def _list(request: web.Request) -> web.StreamResponse:
    page_size = _int_param(request, "page_size")
    page = await request.app[_CALLS].list_sagas(
        list_query(request.query), page_size, request.query.get("page_token", "")
    )
    return web.json_response(page)


async def _counts(request: web.Request) -> web.StreamResponse:
    counts = await request.app[_CALLS].count_by_status(list_query(request.query))
    return web.json_response({"counts": counts, "cap": COUNT_CAP})


async def _definition(calls: ConsoleCalls, saga_type: str, version: int) -> dict[str, Any] | None:
    """The saga's definition from the catalogue (ListSagaTypes); None if this server
    does not know that type and version."""
    try:
        documents = await calls.saga_types(saga_type)
    except CallRefused:
        return None
    return next((d for d in documents if d["version"] == version), None)


async def _saga(request: web.Request) -> web.StreamResponse:
    calls = request.app[_CALLS]
    saga = await calls.get_saga(request.match_info["saga_id"])
    definition = await _definition(calls, saga["saga_type"], int(saga.get("definition_version", 0)))
    return web.json_response({"saga": saga, "definition": definition})


async def _history(request: web.Request) -> web.StreamResponse:
    rows = await request.app[_CALLS].history(request.match_info["saga_id"])
    return web.json_response({"transitions": rows})


async def _events(request: web.Request) -> web.StreamResponse:
    """WatchSaga as server-sent events: `transition` per log row (its seq as the event id,
    so a reconnecting browser resumes after it), then `end` once the saga is terminal."""
    calls = request.app[_CALLS]
    saga_id = request.match_info["saga_id"]
    after_seq = _int_param(request, "after_seq", header="Last-Event-Id")
    await calls.get_saga(saga_id)  # an unknown saga is a 404 before the stream starts
    events: web.StreamResponse | None = None
    try:  # a browser that leaves mid-stream is how streams end: no traceback
        async with sse_response(request, ping_interval=SSE_PING_SECONDS) as events:
            try:
                async for row in calls.watch(saga_id, after_seq):
                    await events.send(json.dumps(row), id=str(row["seq"]), event="transition")
                await events.send("{}", event="end")
            except CallRefused as refused:
                await events.send(json.dumps({"message": refused.message}), event="failure")
    except CLIENT_GONE:
        pass
    return events if events is not None else web.Response(status=499)


async def _intervention(request: web.Request) -> web.StreamResponse:
    """Sagas that need an operator, newest first, each with its steps (for the stuck one)."""
    calls = request.app[_CALLS]
    page = await calls.list_sagas(
        ListQuery(needs_intervention=True),
        _int_param(request, "page_size"),
        request.query.get("page_token", ""),
    )
    sagas = [await calls.get_saga(saga["saga_id"]) for saga in page.get("sagas", [])]
    return web.json_response({"sagas": sagas, "next_page_token": page.get("next_page_token", "")})


async def _definitions(request: web.Request) -> web.StreamResponse:
    return web.json_response({"definitions": await request.app[_CALLS].saga_types()})


async def _event_sinks(request: web.Request) -> web.StreamResponse:
    """The sinks' health, for readers and operators (as ListEventSinks is over gRPC)."""
    if not _identity(request).roles & {READER, OPERATOR}:
        raise CallRefused(
            grpc.StatusCode.PERMISSION_DENIED, "the event sinks are for readers and operators"
        )
    return web.json_response(await request.app[_CALLS].event_sinks())


async def _event_anomalies(request: web.Request) -> web.StreamResponse:
    """Tracked sagas' events no saga could record, for readers and operators (as
    ListEventAnomalies is over gRPC)."""
    if not _identity(request).roles & {READER, OPERATOR}:
        raise CallRefused(
            grpc.StatusCode.PERMISSION_DENIED, "event anomalies are for readers and operators"
        )
    answer = await request.app[_CALLS].event_anomalies(
        request.query, _int_param(request, "page_size"), request.query.get("page_token", "")
    )
    return web.json_response(answer)


async def _json_body(request: web.Request) -> dict[str, Any]:
    """A POST's JSON object, from this origin only: a cross-site page cannot send JSON
    without a preflight, and a cross-origin Origin header is refused outright."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise CallRefused(grpc.StatusCode.PERMISSION_DENIED, "cross-origin request refused")
    if request.content_type != "application/json":
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "send application/json")
    try:
        async with asyncio.timeout(request.app[_BODY_SECONDS]):
            body = await request.json()
    except ValueError:
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the body is not JSON") from None
    except TimeoutError:
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the body came too slowly") from None
    if not isinstance(body, dict):
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the body must be a JSON object")
    return body


async def _action(request: web.Request) -> web.StreamResponse:
    """Abort, retry or resolve. The recorded operator is the authenticated name; only in
    laptop mode does the page's `requested_by` name the operator."""
    identity = _identity(request)
    if not identity.may_act:
        raise CallRefused(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{identity.name} may read but not act: operator actions need the operator role",
        )
    body = await _json_body(request)
    saga_id = request.match_info["saga_id"]
    action = request.match_info["action"]
    reason = str(body.get("reason", ""))
    operator = identity.name if identity.authenticated else str(body.get("requested_by", ""))
    calls = request.app[_CALLS]
    if action == "abort":
        saga = await calls.abort(saga_id, reason, operator)
    elif action == "retry":
        saga = await calls.retry(saga_id, reason, operator)
    elif action == "resolve":
        saga = await calls.resolve(saga_id, str(body.get("step", "")), reason, operator)
    else:
        raise web.HTTPNotFound()
    logger.info("console action %s by %s", action, operator, extra={"saga_id": saga_id})
    return web.json_response({"saga": saga})


async def _tasks(request: web.Request) -> web.StreamResponse:
    """The waiting human tasks (ListTasks), for anyone who may decide them."""
    _may_decide(_identity(request))
    return web.json_response(await request.app[_CALLS].list_tasks(_int_param(request, "page_size")))


def _may_decide(identity: Identity) -> None:
    if not identity.may_decide:
        raise CallRefused(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{identity.name} may not decide tasks: that needs the approver or operator role",
        )


async def _decide(request: web.Request) -> web.StreamResponse:
    """Complete or reject a waiting step. As for operator actions, the recorded decider
    is the authenticated name; only in laptop mode does the page's `requested_by` name
    them. The reason is required (the servicer refuses an empty one)."""
    identity = _identity(request)
    _may_decide(identity)
    body = await _json_body(request)
    saga_id, step = request.match_info["saga_id"], request.match_info["step"]
    decision = request.match_info["decision"]
    reason = str(body.get("reason", ""))
    by = identity.name if identity.authenticated else str(body.get("requested_by", ""))
    calls = request.app[_CALLS]
    if decision == "complete":
        result = str(body.get("result_json", "") or "{}")
        await calls.complete_task(saga_id, step, result, reason, by)
    else:
        await calls.reject_task(saga_id, step, reason, by)
    logger.info("console task %s of step %s by %s", decision, step, by, extra={"saga_id": saga_id})
    return web.json_response({"decision": decision})


def create_console_app(
    servicer: SagaOrchestratorService,
    authenticate: Authenticator | None = None,
    *,
    allowed_hosts: Collection[str] = (),
    sessions: SessionTable | None = None,
    body_seconds: float = HEADER_TIMEOUT_SECONDS,
    events: SagaEventsService | None = None,
    tasks: SagaTasksService | None = None,
    ingest: EventIngestRoute | None = None,
    api: RestServices | None = None,
) -> web.Application:
    """The console as an aiohttp application (mountable, or served by `start_web_console`).

    Host names: in laptop mode (no `authenticate`) loopback and `allowed_hosts` only;
    with an authenticator any, unless `allowed_hosts` names some (then those and
    loopback). `sessions` keeps the signed-in pages' sessions (a fresh table by default).
    With `api`, the HTTP/JSON API is served under /v1 too (`orchestrator.web.rest`).
    """
    max_body = CONSOLE_BODY_BYTES if api is None else api.max_body_bytes
    app = web.Application(middlewares=[host_check, _guard], client_max_size=max_body)
    app[_CALLS] = ConsoleCalls(servicer, events, tasks, ingest.service if ingest else None)
    app[_AUTHENTICATE] = authenticate or laptop_mode
    app[_SESSIONS] = SessionTable() if sessions is None else sessions
    app[_BODY_SECONDS] = body_seconds
    names = frozenset(host_name(name) for name in allowed_hosts)
    app[ALLOWED_HOSTS] = names if authenticate is None or names else None
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/whoami", _whoami)
    app.router.add_post("/api/session", _sign_in)
    app.router.add_delete("/api/session", _sign_out)
    app.router.add_get("/api/sagas", _list)
    app.router.add_get("/api/counts", _counts)
    app.router.add_get("/api/intervention", _intervention)
    app.router.add_get("/api/definitions", _definitions)
    app.router.add_get("/api/event-sinks", _event_sinks)
    app.router.add_get("/api/event-anomalies", _event_anomalies)
    app.router.add_get("/api/sagas/{saga_id}", _saga)
    app.router.add_get("/api/sagas/{saga_id}/history", _history)
    app.router.add_get("/api/sagas/{saga_id}/events", _events)
    app.router.add_post("/api/sagas/{saga_id}/{action:abort|retry|resolve}", _action)
    add_bulk_routes(app, _CALLS, _json_body)
    app.router.add_get("/api/tasks", _tasks)
    app.router.add_post("/api/tasks/{saga_id}/{step}/{decision:complete|reject}", _decide)
    add_ingest_route(app, ingest)  # POST /v1/events (the CloudEvents HTTP binding), if given
    if api is not None:  # last: its catch-all under /v1 answers what no route above does
        add_api(app, api, body_seconds=body_seconds)
    return app
