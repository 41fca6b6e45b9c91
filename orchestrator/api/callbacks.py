"""The SagaCallbacks service: participants (and people) complete, fail or keep alive
the asynchronous steps they accepted.

Thin, like the orchestrator's servicer: the token and the step's state decide
(`orchestrator.engine.completions`, `orchestrator.core.waiting`); this checks the
request's shape and the result's type, and turns refusals into their status. A
token is a secret: it is never logged, nor echoed in an error.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import DecodeError

from orchestrator.api.handlers import mapped_errors
from orchestrator.api.request_checks import check_id
from orchestrator.core.errors import InvalidArgument, PayloadTooLarge
from orchestrator.core.limits import Limits
from orchestrator.core.payload import check_text
from orchestrator.engine.completions import StepCompletions
from orchestrator.security.auth import current_caller
from saga.participants.common.v1 import callbacks_pb2 as pb
from saga.participants.common.v1 import callbacks_pb2_grpc as pb_grpc

MAX_FAILURE_REASON = 1000
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SagaCallbacks"].full_name


class SagaCallbacksService(pb_grpc.SagaCallbacksServicer):
    """CompleteStep, FailStep and HeartbeatStep (protos/saga/participants/common/v1/
    callbacks.proto)."""

    def __init__(self, completions: StepCompletions, limits: Limits | None = None) -> None:
        self._completions = completions
        self._limits = limits or Limits()

    @mapped_errors
    async def CompleteStep(
        self, request: pb.CompleteStepRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CompleteStepResponse:
        _check_token(request.token)
        check_id("completion_id", request.completion_id)
        run, index, _ = await self._completions.load(request.token)
        completion = run.definition.all_steps[index].completion
        assert completion is not None  # only an asynchronous step has tokens
        expected = completion.result_type.DESCRIPTOR
        if not request.HasField("result") or request.result.TypeName() != expected.full_name:
            got = request.result.type_url.rsplit("/", 1)[-1] or "nothing"
            raise InvalidArgument(
                f"step {run.steps[index].name} takes a result of type {expected.full_name}, "
                f"got {got}"
            )
        if len(request.result.value) > self._limits.max_payload_bytes:
            raise PayloadTooLarge(
                f"the result is {len(request.result.value)} bytes, more than the "
                f"{self._limits.max_payload_bytes} bytes allowed (--max-payload-bytes)"
            )
        try:
            completion.result_type.FromString(request.result.value)
        except DecodeError:
            raise InvalidArgument(f"the result is not a valid {expected.full_name}") from None
        done = await self._completions.finish(
            request.token, request.completion_id, result=request.result.value, actor=_actor()
        )
        return pb.CompleteStepResponse(saga_id=done.saga_id, step=done.step)

    @mapped_errors
    async def FailStep(
        self, request: pb.FailStepRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FailStepResponse:
        _check_token(request.token)
        check_id("completion_id", request.completion_id)
        if not request.reason.strip():
            raise InvalidArgument("reason is required: say why the work failed")
        if len(request.reason) > MAX_FAILURE_REASON:
            raise InvalidArgument(f"reason is longer than {MAX_FAILURE_REASON} characters")
        check_text("reason", request.reason)
        await self._completions.load(request.token)
        done = await self._completions.finish(
            request.token,
            request.completion_id,
            error=f"failed by its participant: {request.reason}",
            actor=_actor(),
        )
        return pb.FailStepResponse(saga_id=done.saga_id, step=done.step)

    @mapped_errors
    async def HeartbeatStep(
        self, request: pb.HeartbeatStepRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatStepResponse:
        _check_token(request.token)
        answer = await self._completions.heartbeat(request.token)
        response = pb.HeartbeatStepResponse(cancel_requested=answer.cancel_requested)
        if answer.deadline is not None:
            response.wait_deadline.FromDatetime(answer.deadline)
        return response


def _check_token(token: str) -> None:
    """A missing token is a malformed request; a wrong one is PERMISSION_DENIED later."""
    if not token:
        raise InvalidArgument("token is required: the completion_token of the step's command")


def _actor() -> str:
    """Who completed the step, for the log: the authenticated caller, else "participant"."""
    caller = current_caller()
    return f"participant:{caller.name}" if caller is not None else "participant"
