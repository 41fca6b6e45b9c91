"""The console's reads and operator calls, made through the gRPC servicer's own handlers.

The console has no query layer of its own: every read and every operator action
calls a `SagaOrchestratorService` method in-process, so it validates, reads the
store and refuses exactly as the gRPC API does, on whichever replica serves it.
The handlers need only `abort_with_status` from their context; `_InProcessContext`
turns that into a `CallRefused` carrying the gRPC code, message and ErrorInfo
reason. Answers are the API's messages as JSON with proto field names.

What the browser sends becomes a request message here and nowhere else: query
parameters that are numbers are parsed and range-checked by `query_int`, and text
protobuf cannot carry (a JSON body's `"\\ud800"`) is refused by the same rule the
servicer applies to U+0000 (`orchestrator.core.payload.check_text`), so a malformed
value is a 400 naming the parameter, never a 500.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, TypeVar, cast

import grpc
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from orchestrator.api.catalogue import definition_document
from orchestrator.api.events_admin import SagaEventsService
from orchestrator.api.ingest import SagaEventIngestService
from orchestrator.api.paging import MAX_PAGE_SIZE, MAX_SEQ
from orchestrator.api.servicer import SagaOrchestratorService
from orchestrator.api.status import rpc_status_of
from orchestrator.api.tasks import SagaTasksService
from orchestrator.core.errors import InvalidArgument
from orchestrator.core.payload import check_text
from orchestrator.core.records import SagaStatus
from saga.v1 import events_admin_pb2 as events_pb
from saga.v1 import ingest_pb2, tasks_pb2
from saga.v1 import orchestrator_pb2 as pb

STATUS_DETAILS_KEY = "grpc-status-details-bin"
_Request = TypeVar("_Request", bound=Message)

COUNT_CAP = MAX_PAGE_SIZE
"""Counts per status stop here ("1000+"): each is one bounded ListSagas page, never a
scan of the whole table, so a console left open costs the same on a big store."""


class CallRefused(Exception):
    """The servicer refused a call: its gRPC code, message and ErrorInfo reason."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason

    @classmethod
    def of_status(cls, status: grpc.Status) -> CallRefused:
        reason = ""
        for key, value in status.trailing_metadata or ():
            if key == STATUS_DETAILS_KEY:
                details = status_pb2.Status.FromString(value)
                info = error_details_pb2.ErrorInfo()
                if details.details and details.details[0].Unpack(info):
                    reason = info.reason
        return cls(status.code, status.details, reason)


QUERY_INT_RANGES = {"page_size": (0, MAX_PAGE_SIZE), "after_seq": (0, MAX_SEQ)}
"""The console's integer query parameters and the values each may take (0 when absent)."""
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,40}")


def query_int(name: str, text: str) -> int:
    """A query parameter named in QUERY_INT_RANGES as an int (0 when empty); anything
    else (not a whole number, out of range) is INVALID_ARGUMENT naming the range."""
    low, high = QUERY_INT_RANGES[name]
    if not text:
        return 0
    value = int(text) if _WHOLE_NUMBER.fullmatch(text) else None
    if value is None or not low <= value <= high:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise CallRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{name} must be a whole number from {low} to {high}, got {shown!r}",
        )
    return value


def _request(message_type: type[_Request], **fields: Any) -> _Request:
    """The servicer's request of the console's values, each text checked first: protobuf
    cannot even hold a surrogate, and the servicer refuses U+0000 in the same words."""
    for name, value in fields.items():
        if isinstance(value, str):
            try:
                check_text(name, value)
            except InvalidArgument as error:
                raise CallRefused.of_status(rpc_status_of(error)) from None
    return message_type(**fields)


class _InProcessContext:
    """What the servicer's handlers use of `grpc.aio.ServicerContext`, for in-process calls."""

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        raise CallRefused.of_status(status)

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> NoReturn:
        raise CallRefused(code, details)


def message_json(message: Message) -> dict[str, Any]:
    """The API's JSON form of a message: proto field names, enums by name, and every
    field without presence spelled out (an empty list is `[]`, not missing)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The saga list's filters as the console's page sends them; empty means any."""

    status: str = ""
    saga_type: str = ""
    correlation_id: str = ""
    needs_intervention: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    lock_key: str = ""
    """Sagas holding or queueing for this semantic lock key."""
    id_prefix: str = ""
    """Sagas whose id starts with this."""

    def request(self, *, page_size: int = 0, page_token: str = "") -> pb.ListSagasRequest:
        """The ListSagas request of these filters; an unknown status is INVALID_ARGUMENT."""
        request = _request(
            pb.ListSagasRequest,
            saga_type=self.saga_type,
            correlation_id=self.correlation_id,
            lock_key=self.lock_key,
            saga_id_prefix=self.id_prefix,
            page_size=page_size,
            page_token=page_token,
        )
        if self.status:
            try:
                value = pb.SagaStatus.Value(f"SAGA_STATUS_{self.status}")
            except ValueError:
                raise CallRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, f"no saga status {self.status!r}"
                ) from None
            request.status = value  # type: ignore[assignment]
        if self.needs_intervention is not None:
            request.needs_intervention = self.needs_intervention
        if self.created_after is not None:
            request.create_time_after.CopyFrom(_timestamp("created_after", self.created_after))
        if self.created_before is not None:
            request.create_time_before.CopyFrom(_timestamp("created_before", self.created_before))
        return request


def list_query(params: Mapping[str, str]) -> ListQuery:
    """The list's filters from the query string; a malformed one is INVALID_ARGUMENT."""
    flag = params.get("needs_intervention", "")
    if flag not in ("", "true", "false"):
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "needs_intervention: true or false")
    return ListQuery(
        status=params.get("status", "").upper(),
        saga_type=params.get("saga_type", ""),
        correlation_id=params.get("correlation_id", ""),
        lock_key=params.get("lock_key", ""),
        id_prefix=params.get("id_prefix", ""),
        needs_intervention=None if not flag else flag == "true",
        created_after=_time_param(params.get("created_after", ""), "created_after"),
        created_before=_time_param(params.get("created_before", ""), "created_before"),
    )


def _time_param(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise CallRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{name} must be an ISO 8601 time with a zone, got {text!r}",
        )
    return moment


def _timestamp(name: str, moment: datetime) -> timestamp_pb2.Timestamp:
    """The time as a Timestamp; one that falls outside years 1 to 9999 once in UTC
    (0001-01-01T00:00:00+14:00) is INVALID_ARGUMENT, as the servicer says of its range."""
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromDatetime(moment)
    except OverflowError:
        raise CallRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{name} lies outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z in UTC",
        ) from None
    return stamp


ANOMALY_FILTERS = ("saga_type", "correlation", "source", "event_type")
"""The query parameters of the console's event anomalies (ListEventAnomalies' filters)."""

SAGA_STATUSES = tuple(status.value for status in SagaStatus)


class ConsoleCalls:
    """Every call the console makes, each one a servicer handler."""

    def __init__(
        self,
        servicer: SagaOrchestratorService,
        events: SagaEventsService | None = None,
        tasks: SagaTasksService | None = None,
        ingest: SagaEventIngestService | None = None,
    ) -> None:
        self._servicer = servicer
        self._events = events
        self._tasks = tasks
        self._ingest = ingest
        self._context: Any = _InProcessContext()

    async def event_sinks(self) -> dict[str, Any]:
        """ListEventSinks: every sink's backlog, dead letters and partition owners."""
        if self._events is None:
            raise CallRefused(grpc.StatusCode.UNIMPLEMENTED, "this console has no event sinks")
        reply = await self._events.ListEventSinks(events_pb.ListEventSinksRequest(), self._context)
        return message_json(reply)

    async def event_anomalies(
        self, params: Mapping[str, str], page_size: int, page_token: str
    ) -> dict[str, Any]:
        """ListEventAnomalies: tracked sagas' events no saga could record, newest first,
        filtered by `params` (saga_type, correlation, source, event_type)."""
        if self._ingest is None:
            raise CallRefused(
                grpc.StatusCode.UNIMPLEMENTED, "this orchestrator tracks no saga types"
            )
        request = _request(
            ingest_pb2.ListEventAnomaliesRequest,
            page_size=page_size,
            page_token=page_token,
            **{name: params.get(name, "") for name in ANOMALY_FILTERS},
        )
        reply = await self._ingest.ListEventAnomalies(request, self._context)
        return message_json(reply)

    async def list_sagas(self, query: ListQuery, page_size: int, page_token: str) -> dict[str, Any]:
        """One page of ListSagas, newest first."""
        reply = await self._servicer.ListSagas(
            query.request(page_size=page_size, page_token=page_token), self._context
        )
        return message_json(reply)

    async def count_by_status(self, query: ListQuery) -> dict[str, int]:
        """How many sagas match the filters in each status, each count capped at COUNT_CAP
        (a count equal to the cap means "at least")."""
        counts: dict[str, int] = {}
        for status in SAGA_STATUSES:
            request = ListQuery(
                status,
                query.saga_type,
                query.correlation_id,
                query.needs_intervention,
                query.created_after,
                query.created_before,
                query.lock_key,
                query.id_prefix,
            ).request(page_size=COUNT_CAP)
            reply = await self._servicer.ListSagas(request, self._context)
            counts[status] = len(reply.sagas)
        return counts

    async def get_saga(self, saga_id: str) -> dict[str, Any]:
        reply = await self._servicer.GetSaga(
            _request(pb.GetSagaRequest, saga_id=saga_id), self._context
        )
        return message_json(reply)

    async def saga_types(self, saga_type: str = "") -> list[dict[str, Any]]:
        """ListSagaTypes: the catalogue, each definition as `saga describe --json` prints it."""
        reply = await self._servicer.ListSagaTypes(
            _request(pb.ListSagaTypesRequest, saga_type=saga_type), self._context
        )
        return [definition_document(definition) for definition in reply.definitions]

    async def history(self, saga_id: str) -> list[dict[str, Any]]:
        """The whole transition log, page after page."""
        rows: list[dict[str, Any]] = []
        token = ""
        while True:
            reply = await self._servicer.GetSagaHistory(
                _request(pb.GetSagaHistoryRequest, saga_id=saga_id, page_token=token),
                self._context,
            )
            rows.extend(message_json(row) for row in reply.transitions)
            token = reply.next_page_token
            if not token:
                return rows

    async def watch(self, saga_id: str, after_seq: int) -> AsyncIterator[dict[str, Any]]:
        """WatchSaga itself: the log rows after `after_seq`, then each new one as it is
        committed, until the saga is COMPLETED or FAILED."""
        request = _request(pb.WatchSagaRequest, saga_id=saga_id, after_seq=after_seq)
        stream = cast(
            AsyncGenerator[pb.WatchSagaResponse], self._servicer.WatchSaga(request, self._context)
        )
        async with contextlib.aclosing(stream):
            async for reply in stream:
                yield message_json(reply.transition)

    async def abort(self, saga_id: str, reason: str, requested_by: str) -> dict[str, Any]:
        request = _request(
            pb.AbortSagaRequest, saga_id=saga_id, reason=reason, requested_by=requested_by
        )
        reply = await self._servicer.AbortSaga(request, self._context)
        return message_json(reply.saga)

    async def retry(self, saga_id: str, reason: str, requested_by: str) -> dict[str, Any]:
        request = _request(
            pb.RetrySagaRequest, saga_id=saga_id, reason=reason, requested_by=requested_by
        )
        reply = await self._servicer.RetrySaga(request, self._context)
        return message_json(reply.saga)

    async def resolve(
        self, saga_id: str, step: str, reason: str, requested_by: str
    ) -> dict[str, Any]:
        request = _request(
            pb.ResolveStepRequest,
            saga_id=saga_id,
            step=step,
            reason=reason,
            requested_by=requested_by,
        )
        reply = await self._servicer.ResolveStep(request, self._context)
        return message_json(reply.saga)

    async def bulk(
        self, action: str, fields: dict[str, Any]
    ) -> pb.RetrySagasResponse | pb.AbortSagasResponse:
        """One page of RetrySagas or AbortSagas (a dry run only counts and samples)."""
        if action == "retry":
            return await self._servicer.RetrySagas(
                _request(pb.RetrySagasRequest, **fields), self._context
            )
        return await self._servicer.AbortSagas(
            _request(pb.AbortSagasRequest, **fields), self._context
        )

    def _tasks_service(self) -> SagaTasksService:
        if self._tasks is None:
            raise CallRefused(grpc.StatusCode.UNIMPLEMENTED, "this console has no human tasks")
        return self._tasks

    async def list_tasks(self, page_size: int) -> dict[str, Any]:
        """ListTasks: the waiting steps people decide, the longest waiting first."""
        request = _request(tasks_pb2.ListTasksRequest, page_size=page_size)
        reply = await self._tasks_service().ListTasks(request, self._context)
        return message_json(reply)

    async def complete_task(
        self, saga_id: str, step: str, result_json: str, reason: str, requested_by: str
    ) -> None:
        request = _request(
            tasks_pb2.CompleteTaskRequest,
            saga_id=saga_id,
            step=step,
            result_json=result_json,
            reason=reason,
            requested_by=requested_by,
        )
        await self._tasks_service().CompleteTask(request, self._context)

    async def reject_task(self, saga_id: str, step: str, reason: str, requested_by: str) -> None:
        request = _request(
            tasks_pb2.RejectTaskRequest,
            saga_id=saga_id,
            step=step,
            reason=reason,
            requested_by=requested_by,
        )
        await self._tasks_service().RejectTask(request, self._context)
