"""Requests that protobuf cannot decode are the client's mistake: INVALID_ARGUMENT.

gRPC decodes a request before any servicer code runs, and a decoding failure (a
Struct nested past protobuf's depth limit, bytes that are no message, a string that
is not UTF-8 such as an unpaired surrogate in another language's encoding) would
leave the server as a bare UNKNOWN or INTERNAL with a traceback in the log.
This interceptor gives the API's methods a decoder that turns the failure into
an `Undecodable` value, and answers it INVALID_ARGUMENT before the servicer sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from orchestrator.api.status import log_refusal, rpc_status_of
from orchestrator.core.errors import InvalidArgument


@dataclass(frozen=True)
class Undecodable:
    """What the request decoder returns instead of raising: why decoding failed."""

    error: str


def _lenient(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode_or_explain(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as error:
            return Undecodable(str(error))

    return decode_or_explain


def _refusal(error: Undecodable) -> grpc.Status:
    if "UTF-8" in error.error:
        rule = (
            "every string must be well-formed UTF-8: a surrogate code point (U+D800 to "
            "U+DFFF) or a stray byte is not text"
        )
    else:
        rule = (
            "protobuf decodes at most 100 levels of nested messages, about 32 levels of "
            "payload objects and lists"
        )
    refused = InvalidArgument(f"the request is not a valid message ({error.error}); {rule}")
    log_refusal(refused)
    return rpc_status_of(refused)


class UndecodableRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Answers undecodable requests to the methods under `service` INVALID_ARGUMENT."""

    def __init__(self, service: str) -> None:
        self._prefix = f"/{service}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                if isinstance(request, Undecodable):
                    await context.abort_with_status(_refusal(request))
                return await unary(request, context)

            return handler._replace(
                request_deserializer=_lenient(handler.request_deserializer),
                unary_unary=unary_unary,
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            async def unary_stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                if isinstance(request, Undecodable):
                    await context.abort_with_status(_refusal(request))
                async for response in stream(request, context):
                    yield response

            return handler._replace(
                request_deserializer=_lenient(handler.request_deserializer),
                unary_stream=unary_stream,
            )
        return handler
