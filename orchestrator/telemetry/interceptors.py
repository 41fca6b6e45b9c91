"""grpc.aio server interceptors: request metrics for the orchestrator, log fields and
spans (children of the caller's step span) for the participants.

Both wrap the method's behaviour and keep its kind (coroutine or async
generator), because grpc.aio decides how to run a handler from that kind.
Synchronous behaviours are left alone: no servicer here has one.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import Token
from types import CodeType
from typing import Any, Final

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from orchestrator.telemetry.logs import bind_log_fields, unbind_log_fields
from orchestrator.telemetry.metrics import LabelledChildren, SagaMetrics
from orchestrator.telemetry.tracing import context_from_metadata

# The request field that carries a participant command's saga id, step and key.
COMMAND_CONTEXT_FIELD: Final = "context"

# A command's log fields under their span attribute names (as on the step span).
SPAN_ATTRIBUTES: Final = {
    "saga_id": "saga.id",
    "step": "saga.step",
    "idempotency_key": "saga.idempotency_key",
}

_HANDLER_FACTORIES: Final = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}

# Called once the RPC has ended: its status code and the exception, if it raised.
Finish = Callable[[grpc.StatusCode, BaseException | None], None]
# Called with the request (None for a client stream) and the context; returns `Finish`.
Begin = Callable[[Any, Any], Finish]


def status_code(context: Any, error: BaseException | None) -> grpc.StatusCode:
    """The code the server answers with: the one the servicer set (abort sets it),
    else OK, CANCELLED for a cancelled call and UNKNOWN for an uncaught exception."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


_ASYNC_GENERATOR: Final = "async generator"
_COROUTINE: Final = "coroutine"
_SYNCHRONOUS: Final = "synchronous"

# Behaviours' kinds by their code. The API's own interceptors hand on a fresh closure
# per call, whose code is the same each time; asking `inspect` costs more than the
# rest of the wrapping.
_KIND_BY_CODE: dict[CodeType, str] = {}


def _behavior_kind(behavior: Any) -> str:
    """An async generator, a coroutine or a synchronous function, as `inspect` tells."""
    code = getattr(behavior, "__code__", None)
    if isinstance(code, CodeType):
        kind = _KIND_BY_CODE.get(code)
        if kind is not None:
            return kind
    if inspect.isasyncgenfunction(behavior):
        kind = _ASYNC_GENERATOR
    elif inspect.iscoroutinefunction(behavior):
        kind = _COROUTINE
    else:
        kind = _SYNCHRONOUS
    if isinstance(code, CodeType):
        _KIND_BY_CODE[code] = kind
    return kind


def _wrap_handler(handler: Any, begin: Begin) -> Any:
    """`handler` with its behaviour wrapped by `begin`/finish; unchanged if not async."""
    kind = (bool(handler.request_streaming), bool(handler.response_streaming))
    attribute, factory = _HANDLER_FACTORIES[kind]
    behavior = getattr(handler, attribute)
    request_streaming = kind[0]
    behavior_kind = _behavior_kind(behavior)

    if behavior_kind is _ASYNC_GENERATOR:

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            finish = begin(None if request_streaming else request, context)
            error: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as raised:
                error = raised
                raise
            finally:
                finish(status_code(context, error), error)

        wrapped: Callable[..., Any] = stream
    elif behavior_kind is _COROUTINE:

        async def unary(request: Any, context: Any) -> Any:
            finish = begin(None if request_streaming else request, context)
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                finish(status_code(context, error), error)

        wrapped = unary
    else:
        return handler
    return factory(
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class ServerMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every request by method and status code (streams until they end)."""

    def __init__(self, metrics: SagaMetrics) -> None:
        self._metrics = metrics
        self._requests = LabelledChildren(metrics.grpc_requests)
        self._durations = LabelledChildren(metrics.grpc_duration)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)
        requests = self._requests
        durations = self._durations

        def begin(request: Any, context: Any) -> Finish:
            started = time.perf_counter()

            def finish(code: grpc.StatusCode, error: BaseException | None) -> None:
                labels = (method, code.name)
                requests[labels].inc()
                durations[labels].observe(time.perf_counter() - started)

            return finish

        return _wrap_handler(handler, begin)


class ParticipantInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Binds the command's log fields (service, saga_id, step, idempotency_key) and,
    with a tracer, opens a server span whose parent is the orchestrator's step span
    taken from the request metadata. Only participant services are wrapped: health
    checks and reflection get neither."""

    def __init__(self, services: Mapping[str, str], tracer: trace.Tracer | None = None) -> None:
        """`services` maps a service's full name (saga.participants.flight.v1.FlightService)
        to the short name logged as `service` (flight)."""
        self._services = dict(services)
        self._tracer = tracer

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        full_method = str(handler_call_details.method)
        service_full_name, _, method_name = full_method.lstrip("/").partition("/")
        service = self._services.get(service_full_name)
        if handler is None or service is None:
            return handler
        tracer = self._tracer
        metadata = handler_call_details.invocation_metadata

        def begin(request: Any, context: Any) -> Finish:
            fields = _command_fields(request)
            logs = bind_log_fields(service=service, **fields)
            span: trace.Span | None = None
            activation: Token[otel_context.Context] | None = None
            if tracer is not None:
                span = tracer.start_span(
                    f"{service_full_name}/{method_name}",
                    context=context_from_metadata(metadata),
                    kind=SpanKind.SERVER,
                    attributes={
                        "rpc.system": "grpc",
                        "rpc.service": service_full_name,
                        "rpc.method": method_name,
                        "participant.service": service,
                        **{SPAN_ATTRIBUTES[key]: value for key, value in fields.items()},
                    },
                )
                activation = otel_context.attach(trace.set_span_in_context(span))

            def finish(code: grpc.StatusCode, error: BaseException | None) -> None:
                if span is not None:
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code is not grpc.StatusCode.OK:
                        span.set_status(Status(StatusCode.ERROR, code.name))
                    span.end()
                if activation is not None:
                    otel_context.detach(activation)
                unbind_log_fields(logs)

            return finish

        return _wrap_handler(handler, begin)


def _command_fields(request: Any) -> dict[str, str]:
    """saga_id, step and idempotency_key of a participant command, when it has them."""
    if request is None:
        return {}
    try:
        if not request.HasField(COMMAND_CONTEXT_FIELD):
            return {}
    except ValueError:  # a message without a `context` field
        return {}
    command = getattr(request, COMMAND_CONTEXT_FIELD)
    fields = {
        "saga_id": command.saga_id,
        "step": command.step,
        "idempotency_key": command.idempotency_key,
    }
    return {key: value for key, value in fields.items() if value}
