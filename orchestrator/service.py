"""The SagaOrchestrator gRPC servicer: validate, call into the executor or the store,
map errors.

Requests are checked completely before anything is stored. Every error leaves
through `_abort`, which turns a `SagaError` into a gRPC status with an ErrorInfo
(AIP-193) by the one table in `orchestrator.status`; anything else is logged and
answered INTERNAL.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, json_format, struct_pb2

from orchestrator.catalogue import definition_to_proto
from orchestrator.definition import SagaDefinition
from orchestrator.errors import InvalidArgument, SagaError, SagaNotFound
from orchestrator.executor import Executor
from orchestrator.machine import SagaRun
from orchestrator.payload import parse_input, parse_typed_input
from orchestrator.records import (
    PagePosition,
    SagaFilter,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.registry import Registry
from orchestrator.status import rpc_status_of
from orchestrator.store.base import Store
from orchestrator.telemetry.tracing import context_from_metadata
from orchestrator.timestamps import optional_timestamp
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

MAX_ID_LENGTH = 256

_SAGA_STATUS: dict[SagaStatus, Any] = {
    status: pb.SagaStatus.Value(f"SAGA_STATUS_{status.value}") for status in SagaStatus
}
_STEP_STATUS: dict[StepStatus, Any] = {
    status: pb.StepStatus.Value(f"STEP_STATUS_{status.value}") for status in StepStatus
}

Response = TypeVar("Response")


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: SagaError) -> NoReturn:
    await context.abort_with_status(rpc_status_of(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def _mapped_errors(
    method: Callable[[Any, Any, Any], Awaitable[Response]],
) -> Callable[[Any, Any, Any], Awaitable[Response]]:
    """Turn SagaErrors into their gRPC status; log and hide anything unexpected."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> Response:
        try:
            return await method(self, request, context)
        except SagaError as error:
            await _abort(context, error)
        except Exception:
            logger.exception("unexpected error in %s", method.__name__)
            await _abort(context, SagaError("internal error; the request may be retried"))

    return wrapper


def _check_id(name: str, value: str, *, required: bool = True) -> None:
    """Ids are non-empty printable text of bounded length, so they index and log safely."""
    if not value:
        if required:
            raise InvalidArgument(f"{name} is required")
        return
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{name} is longer than {MAX_ID_LENGTH} characters")
    if not value.isprintable() or value != value.strip():
        raise InvalidArgument(
            f"{name} must be printable text without leading or trailing spaces: {value!r}"
        )


def _check_saga_id(saga_id: str) -> None:
    _check_id("saga_id", saga_id)
    try:
        canonical = str(uuid.UUID(saga_id))
    except ValueError:
        canonical = ""
    if canonical != saga_id:
        raise InvalidArgument(f"saga_id must be a UUID as returned by StartSaga, got {saga_id!r}")


ANY_TYPE_URL_PREFIX = "type.googleapis.com/"


def _packed(type_name: str, value: bytes | None) -> any_pb2.Any | None:
    return (
        None
        if value is None
        else any_pb2.Any(type_url=ANY_TYPE_URL_PREFIX + type_name, value=value)
    )


def saga_to_proto(
    saga: SagaRecord,
    steps: list[StepRecord],
    groups: Callable[[int], str] | None = None,
    reply_types: Callable[[int], str] | None = None,
    *,
    with_output: bool = True,
) -> pb.Saga:
    """The API's view of a stored saga; `groups` names each step's Parallel group and
    `reply_types` the full name of its action's reply (without it, replies are left out)."""
    payload = struct_pb2.Struct()
    payload.update(saga.payload)
    output = None
    if with_output and saga.output is not None:
        output = any_pb2.Any.FromString(saga.output)
    return pb.Saga(
        saga_id=saga.saga_id,
        saga_type=saga.saga_type,
        definition_version=saga.definition_version,
        correlation_id=saga.correlation_id,
        status=_SAGA_STATUS[saga.status],
        failure_reason=saga.failure_reason,
        failed_step=saga.failed_step,
        needs_intervention=saga.needs_intervention,
        create_time=optional_timestamp(saga.create_time),
        update_time=optional_timestamp(saga.update_time),
        payload=payload,
        idempotency_key=saga.idempotency_key or "",
        deadline_time=optional_timestamp(saga.deadline_time),
        output=output,
        steps=[
            pb.Step(
                name=step.name,
                status=_STEP_STATUS[step.status],
                attempts=step.attempts,
                error=step.error,
                compensation_attempts=step.compensation_attempts,
                start_time=optional_timestamp(step.start_time),
                update_time=optional_timestamp(step.update_time),
                next_attempt_time=optional_timestamp(step.next_attempt_time),
                group=groups(step.index) if groups is not None else "",
                reply=(
                    _packed(reply_types(step.index), step.result)
                    if reply_types is not None
                    else None
                ),
            )
            for step in steps
        ],
    )


DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DEFAULT_HISTORY_PAGE = 500
MAX_HISTORY_PAGE = 5000
WATCH_POLL_SECONDS = 0.25
"""How often a watch re-reads the log when the saga is driven by another replica."""

_EVENT: dict[TransitionEvent, Any] = {
    event: pb.TransitionEvent.Value(f"TRANSITION_EVENT_{event.value}") for event in TransitionEvent
}


def transition_to_proto(transition: TransitionRecord) -> pb.Transition:
    """The API's view of one log row."""
    return pb.Transition(
        seq=transition.seq,
        event=_EVENT[transition.event],
        time=optional_timestamp(transition.time),
        step=transition.step,
        saga_status=_SAGA_STATUS[transition.saga_status],
        step_status=(
            _STEP_STATUS[transition.step_status]
            if transition.step_status is not None
            else pb.STEP_STATUS_UNSPECIFIED
        ),
        attempt=transition.attempt,
        error=transition.error,
        actor=transition.actor,
        reason=transition.reason,
    )


def _filter_of(request: pb.ListSagasRequest) -> SagaFilter:
    _check_id("saga_type", request.saga_type, required=False)
    _check_id("correlation_id", request.correlation_id, required=False)
    if request.page_size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
    status = None
    if request.status != pb.SAGA_STATUS_UNSPECIFIED:
        name = pb.SagaStatus.Name(request.status).removeprefix("SAGA_STATUS_")
        status = SagaStatus(name)
    return SagaFilter(
        status=status,
        saga_type=request.saga_type or None,
        correlation_id=request.correlation_id or None,
        needs_intervention=(
            request.needs_intervention if request.HasField("needs_intervention") else None
        ),
        created_after=(
            request.create_time_after.ToDatetime(tzinfo=UTC)
            if request.HasField("create_time_after")
            else None
        ),
        created_before=(
            request.create_time_before.ToDatetime(tzinfo=UTC)
            if request.HasField("create_time_before")
            else None
        ),
    )


def _filter_digest(where: SagaFilter) -> str:
    return hashlib.sha256(repr(where).encode()).hexdigest()[:16]


def encode_page_token(last: SagaRecord, where: SagaFilter) -> str:
    """Opaque to clients: where the page ended, bound to the filter it was made for."""
    position = {
        "t": last.create_time.isoformat(),
        "id": last.saga_id,
        "f": _filter_digest(where),
    }
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_page_token(token: str, where: SagaFilter) -> PagePosition | None:
    if not token:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = PagePosition(datetime.fromisoformat(position["t"]), str(position["id"]))
        digest = position["f"]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(f"page_token is not one this server issued: {error}") from None
    if digest != _filter_digest(where):
        raise InvalidArgument("page_token was issued for different filters; start again")
    return after


def _check_operator_request(saga_id: str, reason: str, requested_by: str) -> None:
    _check_saga_id(saga_id)
    _check_id("requested_by", requested_by)
    if not reason.strip():
        raise InvalidArgument("reason is required: say why, it goes into the saga's log")
    if len(reason) > 2000:
        raise InvalidArgument("reason is longer than 2000 characters")


class SagaOrchestratorService(pb_grpc.SagaOrchestratorServicer):
    """Thin servicer: every decision is in the executor, the machine or the store."""

    def __init__(self, registry: Registry, executor: Executor, store: Store) -> None:
        self._registry = registry
        self._executor = executor
        self._store = store

    @_mapped_errors
    async def StartSaga(
        self, request: pb.StartSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StartSagaResponse:
        _check_id("saga_type", request.saga_type)
        _check_id("correlation_id", request.correlation_id)
        _check_id("idempotency_key", request.idempotency_key, required=False)
        definition = self._registry.latest(request.saga_type)
        if request.WhichOneof("input_kind") == "input":
            saga_input = parse_typed_input(
                definition.input_type, request.input, definition.check_input
            )
        else:
            saga_input = parse_input(
                definition.input_type,
                json_format.MessageToDict(request.payload),
                definition.check_input,
            )
        # Stored in canonical form: Struct numbers are doubles, the input's are typed.
        payload = json_format.MessageToDict(saga_input, preserving_proto_field_name=True)
        result = await self._executor.start_saga(
            definition,
            correlation_id=request.correlation_id,
            payload=payload,
            idempotency_key=request.idempotency_key or None,
            trace_parent=context_from_metadata(context.invocation_metadata()),
        )
        return pb.StartSagaResponse(
            saga_id=result.saga.saga_id,
            status=_SAGA_STATUS[result.saga.status],
            created=result.created,
        )

    @_mapped_errors
    async def GetSaga(
        self, request: pb.GetSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Saga:
        _check_saga_id(request.saga_id)
        saga = await self._store.get_saga(request.saga_id)
        if saga is None:
            raise SagaNotFound(f"no saga with id {request.saga_id}")
        return await self._full_saga(saga)

    @_mapped_errors
    async def ListSagas(
        self, request: pb.ListSagasRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSagasResponse:
        where = _filter_of(request)
        after = decode_page_token(request.page_token, where)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        sagas = await self._store.list_sagas(where, size + 1, after)
        page, more = sagas[:size], len(sagas) > size
        return pb.ListSagasResponse(
            sagas=[saga_to_proto(saga, [], with_output=False) for saga in page],
            next_page_token=encode_page_token(page[-1], where) if more else "",
        )

    @_mapped_errors
    async def GetSagaHistory(
        self, request: pb.GetSagaHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetSagaHistoryResponse:
        _check_saga_id(request.saga_id)
        if request.page_size < 0:
            raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
        after = 0
        if request.page_token:
            try:
                after = int(base64.urlsafe_b64decode(request.page_token.encode()).decode())
            except ValueError:
                raise InvalidArgument("page_token is not one this server issued") from None
        if await self._store.get_saga(request.saga_id) is None:
            raise SagaNotFound(f"no saga with id {request.saga_id}")
        size = min(request.page_size or DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
        rows = await self._store.get_transitions(request.saga_id, after_seq=after)
        page = rows[:size]
        token = ""
        if len(rows) > size:
            token = base64.urlsafe_b64encode(str(page[-1].seq).encode()).decode()
        return pb.GetSagaHistoryResponse(
            transitions=[transition_to_proto(t) for t in page], next_page_token=token
        )

    async def WatchSaga(
        self, request: pb.WatchSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchSagaResponse]:
        """Stream the log from `after_seq` until the saga is terminal; the store is the
        source of truth, so it works whichever replica drives the saga."""
        try:
            _check_saga_id(request.saga_id)
            if request.after_seq < 0:
                raise InvalidArgument(f"after_seq must not be negative, got {request.after_seq}")
            saga = await self._store.get_saga(request.saga_id)
            if saga is None:
                raise SagaNotFound(f"no saga with id {request.saga_id}")
        except SagaError as error:
            await _abort(context, error)
        last = request.after_seq
        while True:
            try:
                rows = await self._store.get_transitions(request.saga_id, after_seq=last)
            except SagaError as error:
                await _abort(context, error)
            for row in rows:
                response = pb.WatchSagaResponse(transition=transition_to_proto(row))
                if row is rows[-1] and row.saga_status.is_terminal:
                    ended = await self._ended_saga(request.saga_id, row.seq)
                    if ended is not None:
                        response.saga.CopyFrom(ended)
                yield response
                last = row.seq
            if rows:
                finished = rows[-1].saga_status.is_terminal
            else:
                current = await self._store.get_saga(request.saga_id)
                finished = current is None or current.status.is_terminal
            if finished:
                return
            await self._executor.wait_for_commit(request.saga_id, WATCH_POLL_SECONDS)

    @_mapped_errors
    async def AbortSaga(
        self, request: pb.AbortSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AbortSagaResponse:
        saga = await self._operator_change(
            request, lambda run, now, actor: run.abort(now, actor, request.reason)
        )
        return pb.AbortSagaResponse(saga=saga)

    @_mapped_errors
    async def RetrySaga(
        self, request: pb.RetrySagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RetrySagaResponse:
        saga = await self._operator_change(
            request, lambda run, now, actor: run.retry(now, actor, request.reason)
        )
        return pb.RetrySagaResponse(saga=saga)

    @_mapped_errors
    async def ResolveStep(
        self, request: pb.ResolveStepRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResolveStepResponse:
        _check_id("step", request.step)
        saga = await self._operator_change(
            request, lambda run, now, actor: run.resolve(request.step, now, actor, request.reason)
        )
        return pb.ResolveStepResponse(saga=saga)

    async def _operator_change(
        self,
        request: pb.AbortSagaRequest | pb.RetrySagaRequest | pb.ResolveStepRequest,
        change: Callable[[SagaRun, datetime, str], None],
    ) -> pb.Saga:
        """An operator's call: checked, recorded as `operator:<requested_by>`, committed."""
        _check_operator_request(request.saga_id, request.reason, request.requested_by)
        actor = f"operator:{request.requested_by}"
        saga = await self._executor.change_saga(
            request.saga_id, lambda run, now: change(run, now, actor)
        )
        return await self._full_saga(saga)

    @_mapped_errors
    async def ListSagaTypes(
        self, request: pb.ListSagaTypesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSagaTypesResponse:
        _check_id("saga_type", request.saga_type, required=False)
        if request.saga_type:
            self._registry.latest(request.saga_type)  # UnknownSagaType lists what exists
        definitions = [
            definition
            for definition in self._registry.definitions
            if not request.saga_type or definition.name == request.saga_type
        ]
        return pb.ListSagaTypesResponse(
            definitions=[
                definition_to_proto(
                    definition, latest=self._registry.latest(definition.name) is definition
                )
                for definition in definitions
            ]
        )

    async def _ended_saga(self, saga_id: str, seq: int) -> pb.Saga | None:
        """The saga for a watch's last message: only if it ended with the row at `seq`
        (not a FAILED that an operator's retry has since taken up again)."""
        saga = await self._store.get_saga(saga_id)
        if saga is None or not saga.status.is_terminal:
            return None
        if await self._store.last_seq(saga_id) != seq:
            return None
        return await self._full_saga(saga)

    async def _full_saga(self, saga: SagaRecord) -> pb.Saga:
        steps = await self._store.get_steps(saga.saga_id)
        try:
            definition = self._registry.get(saga.saga_type, saga.definition_version)
        except SagaError:
            return saga_to_proto(saga, steps)
        return saga_to_proto(saga, steps, definition.group_of, self._reply_types(definition))

    def _reply_types(self, definition: SagaDefinition) -> Callable[[int], str]:
        def reply_type(index: int) -> str:
            step = definition.all_steps[index]
            response = self._registry.resolved_step(definition, step.name).action.response_type
            return response.DESCRIPTOR.full_name

        return reply_type
