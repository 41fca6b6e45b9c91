"""The SagaOrchestrator gRPC servicer: validate, call into the executor or the store,
map errors. Records become messages in `conversion`, page tokens are made and read in
`paging`, ids and operator fields are checked in `request_checks`; the bulk operator
actions (RetrySagas, ResolveSagas, AbortSagas) run in `bulk`, through the same changes
as the single calls.

Requests are checked completely before anything is stored: every string the stores
could not hold (`check_message_text`, first in every handler), every enum, timestamp,
number, page token and nesting depth (see `orchestrator.core.limits`). Every error leaves
through `orchestrator.api.handlers`, which turns a `SagaError` into a gRPC status with an ErrorInfo
(AIP-193) by the one table in `orchestrator.api.status`; anything else is logged with
its traceback and answered INTERNAL. A client's mistake is logged at INFO at most,
throttled, without a traceback.

Every request works within the caller's namespaces (`orchestrator.api.tenancy`): a start
goes to one of them, a saga id is looked up within them, and a saga outside them is
NOT_FOUND exactly as one that does not exist.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from orchestrator.api.bulk import BulkActions, abort_change, resolve_change, retry_change
from orchestrator.api.catalogue import definition_to_proto
from orchestrator.api.conversion import saga_to_proto, start_response, transition_to_proto
from orchestrator.api.handlers import abort_with, mapped_errors
from orchestrator.api.paging import (
    DEFAULT_HISTORY_PAGE,
    DEFAULT_PAGE_SIZE,
    MAX_HISTORY_PAGE,
    MAX_PAGE_SIZE,
    bounded_page,
    decode_history_token,
    decode_page_token,
    filter_of,
)
from orchestrator.api.request_checks import (
    check_id,
    check_operator_request,
    check_saga_id,
    operator_actor,
)
from orchestrator.api.status import log_refusal, status_proto_of
from orchestrator.api.tenancy import read_scope, start_namespace, visible
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.errors import InvalidArgument, ResourceExhausted, SagaError, SagaNotFound
from orchestrator.core.limits import MAX_FULL_VIEW_PAGE, Limits, check_enum, check_payload
from orchestrator.core.machine import SagaRun
from orchestrator.core.namespaces import unqualified
from orchestrator.core.opening import SagaStart
from orchestrator.core.payload import check_message_text, parse_input, parse_typed_input
from orchestrator.core.records import CreateSagaResult, SagaRecord, StepRecord
from orchestrator.core.registry import Registry
from orchestrator.core.webhooks import allowed_completion_url
from orchestrator.engine.executor import Executor
from orchestrator.security.auth import current_caller
from orchestrator.store.base import Store
from orchestrator.telemetry.tracing import context_from_metadata
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

WATCH_RETRY_SECONDS = 5.0
"""The retry delay a watch refused for the stream cap suggests."""

Response = TypeVar("Response")


class SagaOrchestratorService(pb_grpc.SagaOrchestratorServicer):
    """Thin servicer: every decision is in the executor, the machine or the store."""

    def __init__(
        self, registry: Registry, executor: Executor, store: Store, limits: Limits | None = None
    ) -> None:
        self._registry = registry
        self._executor = executor
        self._store = store
        self._limits = limits or Limits()
        self._watch_streams = 0
        self._bulk = BulkActions(registry, executor, store)
        self.completion_allow: tuple[str, ...] = ()  # --completion-webhook-allow

    @mapped_errors
    async def StartSaga(
        self, request: pb.StartSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StartSagaResponse:
        return start_response(await self._start(request, context))

    async def _start(
        self,
        request: pb.StartSagaRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        where: str = "",
    ) -> CreateSagaResult:
        start = self._saga_start(request, where)
        return await self._executor.start_saga(
            start.definition,
            correlation_id=start.correlation_id,
            payload=start.payload,
            idempotency_key=start.idempotency_key,
            trace_parent=context_from_metadata(context.invocation_metadata()),
            saga_input=start.saga_input,
            namespace=start.namespace,
            completion_webhook_url=start.completion_webhook_url,
        )

    @mapped_errors
    async def ExecuteSaga(
        self, request: pb.ExecuteSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ExecuteSagaResponse:
        """StartSaga, then the saga once it is COMPLETED or FAILED. A waiting
        call counts against the WatchSaga streams' budget: both hold a caller until a
        saga's end."""
        self._check_room_to_watch()
        self._watch_streams += 1
        try:
            started = await self._start(request.start, context, "start")
            saga = await self._settled(started.saga.saga_id)
        finally:
            self._watch_streams -= 1
        return pb.ExecuteSagaResponse(created=started.created, saga=saga)

    async def _settled(self, saga_id: str) -> pb.Saga:
        """The saga once it is COMPLETED or FAILED. While this replica drives it, nothing
        is read: its drive's end answers, from the run it committed last. Otherwise
        each of its commits (here or on another replica) wakes one read of its row."""
        with self._executor.watchers.subscription(saga_id) as committed:
            while True:
                committed.clear()  # before the read: a commit after it wakes us
                run = await self._executor.drive_stopped(saga_id)
                if run is not None and run.status.is_terminal and not run.saga.lock_keys:
                    return await self._full_saga(run.saga, run.steps)
                saga = await self._store.get_saga(saga_id)
                if saga is None:
                    raise SagaNotFound(f"saga {saga_id} is no longer stored")
                if saga.status.is_terminal:
                    return await self._full_saga(saga)
                await self._executor.watchers.wait(committed)

    @mapped_errors
    async def StartSagas(
        self, request: pb.StartSagasRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StartSagasResponse:
        """Each request is checked as StartSaga checks it; those that pass are started
        together (`Executor.start_sagas`), and every request gets its own answer."""
        limit = self._limits.max_batch_starts
        if not request.requests:
            raise InvalidArgument(f"requests is empty; a batch holds 1 to {limit} requests")
        if len(request.requests) > limit:
            raise InvalidArgument(
                f"requests holds {len(request.requests)} requests; the limit "
                f"(max batch starts) is {limit}"
            )
        answers: list[CreateSagaResult | SagaError | None] = []
        starts: list[SagaStart] = []
        for position, item in enumerate(request.requests):
            try:
                starts.append(self._saga_start(item, f"requests[{position}]"))
                answers.append(None)
            except SagaError as error:
                answers.append(error)
        started = iter(
            await self._executor.start_sagas(
                starts, trace_parent=context_from_metadata(context.invocation_metadata())
            )
        )
        response = pb.StartSagasResponse()
        for answer in answers:
            outcome = next(started) if answer is None else answer
            if isinstance(outcome, SagaError):
                log_refusal(outcome)
                response.results.add().error.CopyFrom(status_proto_of(outcome))
            else:
                response.results.add().saga.CopyFrom(start_response(outcome))
        return response

    def _saga_start(self, request: pb.StartSagaRequest, where: str = "") -> SagaStart:
        """A StartSaga request checked completely, its input parsed to the saga type's
        message and stored in canonical form; InvalidArgument (or UnknownSagaType) names
        the field and the rule. `where` is the request's own path (`requests[3]`), for
        the names of fields whose text cannot be stored."""
        check_message_text(request, where)
        check_id("saga_type", request.saga_type)
        check_id("correlation_id", request.correlation_id)
        check_id("idempotency_key", request.idempotency_key, required=False)
        check_payload(request.payload, self._limits)
        namespace = start_namespace(request.namespace)
        definition = self._registry.latest(request.saga_type)
        if request.WhichOneof("input_kind") == "input":
            saga_input = parse_typed_input(
                definition.input_type,
                request.input,
                definition.check_input,
                f"{where}.input" if where else "input",
            )
        else:
            saga_input = parse_input(
                definition.input_type,
                json_format.MessageToDict(request.payload),
                definition.check_input,
            )
        # Stored in canonical form: Struct numbers are doubles, the input's are typed.
        payload = json_format.MessageToDict(saga_input, preserving_proto_field_name=True)
        return SagaStart(
            definition,
            request.correlation_id,
            payload,
            request.idempotency_key or None,
            saga_input,
            namespace,
            allowed_completion_url(request.completion_webhook_url, self.completion_allow),
        )

    @mapped_errors
    async def GetSaga(
        self, request: pb.GetSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Saga:
        check_message_text(request)
        saga = await self._visible_saga(request.saga_id, request.namespace)
        return await self._full_saga(saga)

    async def _visible_saga(self, saga_id: str, namespace: str) -> SagaRecord:
        """The saga, if the request may see it (`tenancy.visible`): NOT_FOUND alike for a
        saga that does not exist and one in a namespace out of the request's reach."""
        check_saga_id(saga_id)
        scope = read_scope(namespace)
        return visible(await self._store.get_saga(saga_id), saga_id, scope)

    @mapped_errors
    async def ListSagas(
        self, request: pb.ListSagasRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSagasResponse:
        check_message_text(request)
        where = dataclasses.replace(filter_of(request), namespaces=read_scope(request.namespace))
        view = check_enum("view", pb.SagaView, request.view)
        after = decode_page_token(request.page_token, where)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        full = request.view == pb.SAGA_VIEW_FULL
        if full and size > MAX_FULL_VIEW_PAGE:
            raise InvalidArgument(
                f"view {view} is allowed for page_size up to {MAX_FULL_VIEW_PAGE}, got {size}"
            )
        sagas = await self._store.list_sagas(where, size + 1, after)
        return bounded_page(sagas, size, where, full)

    @mapped_errors
    async def GetSagaHistory(
        self, request: pb.GetSagaHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetSagaHistoryResponse:
        check_message_text(request)
        check_saga_id(request.saga_id)
        if request.page_size < 0:
            raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
        after = decode_history_token(request.page_token)
        await self._visible_saga(request.saga_id, request.namespace)
        size = min(request.page_size or DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
        rows = await self._store.get_transitions(request.saga_id, after_seq=after)
        page = rows[:size]
        token = ""
        if len(rows) > size:
            token = base64.urlsafe_b64encode(str(page[-1].seq).encode()).decode()
        return pb.GetSagaHistoryResponse(
            transitions=[transition_to_proto(t) for t in page], next_page_token=token
        )

    @property
    def watch_streams(self) -> int:
        """WatchSaga streams open on this replica now (the gauge reads it when scraped)."""
        return self._watch_streams

    async def WatchSaga(
        self, request: pb.WatchSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchSagaResponse]:
        """Stream the log from `after_seq` until the saga is terminal; the store is the
        source of truth, so it works whichever replica drives the saga. At most
        `max_watch_streams` streams are open at once on a replica."""
        try:
            self._check_room_to_watch()
        except ResourceExhausted as error:
            await abort_with(context, error)
        self._watch_streams += 1
        try:
            async for response in self._watch(request, context):
                yield response
        finally:
            self._watch_streams -= 1

    def _check_room_to_watch(self) -> None:
        limit = self._limits.max_watch_streams
        if self._watch_streams >= limit:
            raise ResourceExhausted(
                f"this replica serves at most {limit} WatchSaga streams and waiting "
                "ExecuteSaga calls at once (max watch streams); try another replica or later",
                reason="WATCH_STREAMS_EXHAUSTED",
                retry_after=WATCH_RETRY_SECONDS,
            )

    async def _watch(
        self, request: pb.WatchSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchSagaResponse]:
        try:
            check_message_text(request)
            check_saga_id(request.saga_id)
            if request.after_seq < 0:
                raise InvalidArgument(f"after_seq must not be negative, got {request.after_seq}")
            await self._visible_saga(request.saga_id, request.namespace)
        except SagaError as error:
            await abort_with(context, error)
        last = request.after_seq
        watchers = self._executor.watchers
        read_after_end = False
        with watchers.subscription(request.saga_id) as committed:
            while True:
                committed.clear()  # before the read: a commit after it wakes us
                try:
                    rows = await self._store.get_transitions(request.saga_id, after_seq=last)
                except SagaError as error:
                    await abort_with(context, error)
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
                    if current is not None and current.status.is_terminal and not read_after_end:
                        # The commit that ended it may have landed between the log read
                        # above and this one: read the log once more before ending.
                        read_after_end = True
                        continue
                    finished = current is None or current.status.is_terminal
                if finished:
                    return
                await watchers.wait(committed)

    @mapped_errors
    async def AbortSaga(
        self, request: pb.AbortSagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AbortSagaResponse:
        check_message_text(request)
        saga = await self._operator_change(request, abort_change)
        return pb.AbortSagaResponse(saga=saga)

    @mapped_errors
    async def RetrySaga(
        self, request: pb.RetrySagaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RetrySagaResponse:
        check_message_text(request)
        saga = await self._operator_change(request, retry_change)
        return pb.RetrySagaResponse(saga=saga)

    @mapped_errors
    async def ResolveStep(
        self, request: pb.ResolveStepRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResolveStepResponse:
        check_message_text(request)
        check_id("step", request.step)
        saga = await self._operator_change(request, resolve_change(request.step))
        return pb.ResolveStepResponse(saga=saga)

    @mapped_errors
    async def BreakLock(
        self, request: pb.BreakLockRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BreakLockResponse:
        check_message_text(request)
        saga = await self._operator_change(
            request, lambda run, now, actor, reason: run.lock_broken(now, actor, reason)
        )
        return pb.BreakLockResponse(saga=saga)

    async def _operator_change(
        self,
        request: (
            pb.AbortSagaRequest | pb.RetrySagaRequest | pb.ResolveStepRequest | pb.BreakLockRequest
        ),
        change: Callable[[SagaRun, datetime, str, str], None],
    ) -> pb.Saga:
        """An operator's call: checked, recorded with its actor (`operator_actor`),
        committed."""
        check_operator_request(
            request.saga_id,
            request.reason,
            request.requested_by,
            authenticated=current_caller() is not None,
        )
        await self._visible_saga(request.saga_id, request.namespace)
        actor, reason = operator_actor(request.requested_by, request.reason)
        saga = await self._executor.change_saga(
            request.saga_id, lambda run, now: change(run, now, actor, reason)
        )
        return await self._full_saga(saga)

    @mapped_errors
    async def RetrySagas(
        self, request: pb.RetrySagasRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RetrySagasResponse:
        check_message_text(request)
        return await self._bulk.run(request, pb.RetrySagasResponse(), "retry", retry_change)

    @mapped_errors
    async def ResolveSagas(
        self, request: pb.ResolveSagasRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResolveSagasResponse:
        check_message_text(request)
        check_id("step", request.step)
        change = resolve_change(request.step)
        return await self._bulk.run(request, pb.ResolveSagasResponse(), "resolve", change)

    @mapped_errors
    async def AbortSagas(
        self, request: pb.AbortSagasRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AbortSagasResponse:
        check_message_text(request)
        return await self._bulk.run(request, pb.AbortSagasResponse(), "abort", abort_change)

    @mapped_errors
    async def ListSagaTypes(
        self, request: pb.ListSagaTypesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSagaTypesResponse:
        check_message_text(request)
        check_id("saga_type", request.saga_type, required=False)
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

    async def _full_saga(self, saga: SagaRecord, steps: list[StepRecord] | None = None) -> pb.Saga:
        """The saga as GetSaga shows it; `steps` spares reading them."""
        if steps is None:
            steps = await self._store.get_steps(saga.saga_id)
        try:
            definition = self._registry.get(saga.saga_type, saga.definition_version)
        except SagaError:
            full = saga_to_proto(saga, steps)
        else:
            full = saga_to_proto(
                saga,
                steps,
                definition.group_of,
                self._reply_types(definition),
                definition=definition,
            )
        if saga.lock_keys:
            full.locks.extend(
                pb.SagaLock(
                    key=unqualified(lock.key, saga.namespace),
                    held=lock.holds,
                    queue_position=0 if lock.holds else lock.ahead + 1,
                )
                for lock in await self._store.lock_holdings(saga.saga_id)
            )
        return full

    def _reply_types(self, definition: SagaDefinition) -> Callable[[int], str]:
        def reply_type(index: int) -> str:
            step = definition.all_steps[index]
            response = self._registry.resolved_step(definition, step.name).result_type
            return response.DESCRIPTOR.full_name

        return reply_type
