"""The HTTP/JSON API under /v1: each call is one RPC, made through the servicer's own handler.

One aiohttp handler serves every path under /v1 from the table `rules.routes()` reads
from the protos. A call is transcoded into the RPC's request message, admitted by the
same `AuthInterceptor` and policy as a gRPC call (bearer token from `Authorization`, or
the client certificate when the listener serves mutual TLS; never a cookie), and handed
to the servicer's handler with an in-process context, as the console's calls are; so
validation, limits, roles, namespaces, the audit identity and the errors are the gRPC
API's. Without an auth policy the API is open, as gRPC then is.

A refusal is the google.rpc.Status as JSON under its HTTP status (`transcoding`), with
`Retry-After` when it says when to try again. WatchSaga is served as server-sent events
(`stream`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

import grpc
from aiohttp import web
from google.protobuf.message import Message
from google.rpc import status_pb2

from orchestrator.core.limits import Limits
from orchestrator.security.auth import AuthInterceptor, AuthPolicy
from orchestrator.web.rest.rules import PREFIX, Route, routes, split_path
from orchestrator.web.rest.transcoding import (
    Refusal,
    build_request,
    invalid,
    message_json,
    short,
)

logger = logging.getLogger(__name__)

JSON = "application/json"
DEFAULT_MAX_BODY_BYTES = 2 * Limits().grpc_message_bytes
_FORWARDED_METADATA = ("traceparent", "tracestate")
"""Request headers handed to the handlers as gRPC metadata (trace context)."""


class _CallDetails(NamedTuple):
    """What `grpc.HandlerCallDetails` carries, for the auth interceptor."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class InProcessContext:
    """What the handlers and the auth interceptor use of `grpc.aio.ServicerContext`, for
    a call that arrived over HTTP: its metadata, its peer's certificate names, and
    aborting, which raises a `Refusal` carrying the status."""

    def __init__(
        self, metadata: tuple[tuple[str, str], ...], identities: Mapping[str, list[bytes]]
    ) -> None:
        self._metadata = metadata
        self._identities = identities

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> Mapping[str, list[bytes]]:
        return self._identities

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        raise Refusal.of_grpc_status(status)

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> NoReturn:
        raise Refusal.of(code, details)


@dataclass
class RestServices:
    """The servicers the API calls, by gRPC service name; one missing is UNIMPLEMENTED."""

    by_name: dict[str, object] = field(default_factory=dict)
    policy: AuthPolicy | None = None
    """The gRPC auth policy; None when the server runs without auth (the API is open)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """A bigger request body is refused (413, RESOURCE_EXHAUSTED) before it is read: twice
    the gRPC message limit, as JSON spells a message out at length."""


def _peer_identities(request: web.Request) -> dict[str, list[bytes]]:
    """The verified client certificate's SANs and CN, as gRPC's auth context names them."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return {}
    names = [value.encode() for kind, value in peer.get("subjectAltName", ()) if kind == "DNS"]
    common = [
        value.encode()
        for rdn in peer.get("subject", ())
        for key, value in rdn
        if key == "commonName"
    ]
    return {"x509_subject_alternative_name": names, "x509_common_name": common}


def _context(request: web.Request) -> InProcessContext:
    metadata = tuple(
        (name, request.headers[name]) for name in _FORWARDED_METADATA if name in request.headers
    )
    if "Authorization" in request.headers:
        metadata += (("authorization", request.headers["Authorization"]),)
    return InProcessContext(metadata, _peer_identities(request))


Behavior = Callable[[Message, InProcessContext], Any]


class Gateway:
    """Serves the route table: finds the route, admits the caller, calls the handler."""

    def __init__(self, services: RestServices) -> None:
        self._services = services
        self._routes = routes()
        self._auth = None if services.policy is None else AuthInterceptor(services.policy)

    def match(self, request: web.Request) -> tuple[Route, dict[str, str]]:
        """The route and its path variables; a NOT_FOUND or 405 refusal otherwise."""
        segments, verb = split_path(request.raw_path.split("?", 1)[0])
        allowed: list[str] = []
        for route in self._routes:
            bindings = route.bindings(segments, verb)
            if bindings is None:
                continue
            if route.http_method == request.method:
                return route, bindings
            allowed.append(route.http_method)
        if allowed:
            raise MethodNotAllowed(allowed)
        raise Refusal.of(grpc.StatusCode.NOT_FOUND, f"no API at {request.method} {request.path}")

    def service_of(self, route: Route) -> Any:
        """The servicer of the route's service; UNIMPLEMENTED when this server has none."""
        service = self._services.by_name.get(route.method.containing_service.full_name)
        if service is None:
            raise Refusal.of(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{route.method.containing_service.name} is not served by this server",
            )
        return service

    def behavior(self, route: Route) -> Behavior:
        handler: Behavior = getattr(self.service_of(route), route.method.name)
        return handler

    async def admitted(
        self,
        route: Route,
        context: InProcessContext,
        behavior: Behavior | None = None,
        streaming: bool | None = None,
    ) -> Behavior:
        """The route's handler (or `behavior`, called as the route's RPC), wrapped by the
        auth interceptor when auth is on: calling it admits the caller (UNAUTHENTICATED,
        PERMISSION_DENIED) and makes it `current_caller()` for the rest of the request."""
        behavior = self.behavior(route) if behavior is None else behavior
        streaming = route.streaming if streaming is None else streaming
        if self._auth is None:
            return behavior
        if streaming:
            handler = grpc.unary_stream_rpc_method_handler(behavior)
        else:
            handler = grpc.unary_unary_rpc_method_handler(behavior)

        async def continuation(_: Any) -> grpc.RpcMethodHandler:
            return handler

        details = _CallDetails(route.grpc_method, context.invocation_metadata())
        wrapped = await self._auth.intercept_service(continuation, details)
        checked: Behavior = wrapped.unary_stream if streaming else wrapped.unary_unary
        return checked


class MethodNotAllowed(Exception):
    """The path is the API's, the method is not: answered 405 with the methods in Allow."""

    def __init__(self, allowed: list[str]) -> None:
        super().__init__("method not allowed")
        self.allowed = allowed


_GATEWAY = web.AppKey("rest_gateway", Gateway)


def refusal_response(refusal: Refusal, headers: Mapping[str, str] | None = None) -> web.Response:
    """The refusal's google.rpc.Status as JSON, with Retry-After / WWW-Authenticate."""
    response = web.json_response(refusal.body(), status=refusal.http_status, headers=headers)
    retry_after = refusal.retry_after()
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if refusal.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]:
        response.headers["WWW-Authenticate"] = 'Bearer realm="saga"'
    return response


async def _json_body(request: web.Request, route: Route, body_seconds: float) -> Any:
    """The decoded JSON body (None without one). Only `application/json`: a cross-site
    form cannot send that without a preflight, and a cross-origin page is refused."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Refusal.of(grpc.StatusCode.PERMISSION_DENIED, "cross-origin request refused")
    if not route.body or not request.body_exists:
        return None
    if request.content_type != JSON:
        raise invalid(f"send the body as {JSON}, not {request.content_type}")
    try:
        async with asyncio.timeout(body_seconds):
            text = await request.text()
        return json.loads(text) if text.strip() else None
    except TimeoutError:
        raise invalid("the body came too slowly") from None
    except web.HTTPRequestEntityTooLarge:
        status = status_pb2.Status(
            code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
            message=f"the body is over this server's {request.client_max_size} bytes",
        )
        raise Refusal(status, 413) from None
    except (ValueError, UnicodeError, RecursionError) as error:
        raise invalid(f"the body is not JSON: {short(str(error))}") from None


def add_rest_routes(
    app: web.Application,
    services: RestServices,
    *,
    body_seconds: float,
    watch: Callable[[web.Request, Gateway, Route, Message, InProcessContext], Awaitable[Any]],
) -> None:
    """Serve the API under /v1 on `app` (one catch-all route; the table does the rest)."""
    app[_GATEWAY] = Gateway(services)

    async def serve(request: web.Request) -> web.StreamResponse:
        gateway = request.app[_GATEWAY]
        try:
            route, bindings = gateway.match(request)
            body = await _json_body(request, route, body_seconds)
            message = build_request(route, bindings, request.query.items(), body)
            context = _context(request)
            if route.streaming:
                response: web.StreamResponse = await watch(
                    request, gateway, route, message, context
                )
                return response
            behavior = await gateway.admitted(route, context)
            reply = await behavior(message, context)
        except Refusal as refusal:
            return refusal_response(refusal)
        except MethodNotAllowed as refused:
            allow = ", ".join(sorted(set(refused.allowed)))
            status = status_pb2.Status(
                code=grpc.StatusCode.UNIMPLEMENTED.value[0],
                message=f"{request.method} is not allowed at {request.path}: {allow}",
            )
            return refusal_response(Refusal(status, 405), headers={"Allow": allow})
        return web.json_response(message_json(reply))

    # Every path under /v1, a newline (%0A) in it too: the table answers 404 itself.
    app.router.add_route("*", PREFIX + r"{tail:[\s\S]*}", serve)


async def stream_replies(
    behavior: Behavior, message: Message, context: InProcessContext
) -> AsyncGenerator[Message]:
    """A server-streaming handler's replies, closed when the consumer stops."""
    stream = behavior(message, context)
    try:
        async for reply in stream:
            yield reply
    finally:
        await stream.aclose()
