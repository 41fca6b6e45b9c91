"""Completing an asynchronous step later, from a participant: `StepCompleter`.

An action of an asynchronous step accepts the work and replies; its request's
`context.completion_token` is what completes the step later. Keep the token with the
work (in the handler's own transaction, so a redelivery finds it), then, when the work
is done, call `complete` (or `fail`, or `heartbeat` while it runs):

    async with StepCompleter("orchestrator:50051") as completer:
        await completer.complete(token, BookFlightResponse(booking_id="F-1"))

Each call is retried on transient errors with the same completion id, derived from the
token unless one is given, so a retry (even from a participant that restarted with the
token it kept) gets the first answer instead of a conflict. A refusal the orchestrator
means (a wrong token, a step that stopped waiting, another completion first) raises
`CompletionRefused` at once. The token is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from types import TracebackType

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from saga.participants.common.v1 import callbacks_pb2 as pb
from saga.participants.common.v1 import callbacks_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


class CompletionRefused(Exception):
    """The orchestrator refused a completion, failure or heartbeat for good: `code` is
    PERMISSION_DENIED (not this step's token), FAILED_PRECONDITION (the step stopped
    waiting, or another completion was recorded first) or INVALID_ARGUMENT (a result
    of the wrong type, too large)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def completion_id_of(token: str, kind: str) -> str:
    """The completion id a retry of the same call repeats: derived from the token."""
    return f"kit-{kind}-" + hashlib.sha256(token.encode()).hexdigest()[:32]


class StepCompleter:
    """A channel to the orchestrator's SagaCallbacks, with bounded retries per call.

    `credentials` (channel credentials, for TLS) and `bearer` (a token of a caller with
    the `participant` role in the orchestrator's auth file) as the orchestrator requires.
    """

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        bearer: str | None = None,
        timeout: float = 5.0,
        attempts: int = 5,
        backoff: float = 0.2,
    ) -> None:
        self._channel = (
            grpc.aio.secure_channel(target, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        self._stub = pb_grpc.SagaCallbacksStub(self._channel)
        self._metadata = (("authorization", f"Bearer {bearer}"),) if bearer else None
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff

    async def complete(self, token: str, result: Message, completion_id: str | None = None) -> None:
        """Complete the step with `result` (a message of the step's result type)."""
        packed = any_pb2.Any()
        packed.Pack(result)
        request = pb.CompleteStepRequest(
            token=token,
            completion_id=completion_id or completion_id_of(token, "complete"),
            result=packed,
        )
        await self._call(self._stub.CompleteStep, request)

    async def fail(self, token: str, reason: str, completion_id: str | None = None) -> None:
        """Fail the step: the saga compensates what came before it."""
        request = pb.FailStepRequest(
            token=token,
            completion_id=completion_id or completion_id_of(token, "fail"),
            reason=reason,
        )
        await self._call(self._stub.FailStep, request)

    async def heartbeat(self, token: str) -> bool:
        """Keep the step waiting; True when the saga asks to stop (cancel requested)."""
        reply = await self._call(self._stub.HeartbeatStep, pb.HeartbeatStepRequest(token=token))
        assert isinstance(reply, pb.HeartbeatStepResponse)
        return reply.cancel_requested

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable, request: Message) -> Message:
        for attempt in range(1, self._attempts + 1):
            try:
                reply: Message = await method(
                    request, timeout=self._timeout, metadata=self._metadata
                )
                return reply
            except grpc.aio.AioRpcError as error:
                if error.code() not in TRANSIENT or attempt == self._attempts:
                    raise CompletionRefused(error.code(), error.details() or "") from None
                logger.info(
                    "SagaCallbacks attempt %d failed (%s); retrying", attempt, error.code().name
                )
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> StepCompleter:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
