"""A client of the orchestrator's API: one channel, a deadline on every unary call,
errors mapped to a small exception hierarchy, and `follow`/`wait`, which ride the
WatchSaga stream to the saga's end instead of polling GetSaga.

    async with SagaClient("localhost:50051") as client:
        handle = await client.start(
            TravelBookingInput(...), correlation_id="trip-7", output_type=TravelBookingOutput
        )
        booked = await handle.result(timeout=60)   # a TravelBookingOutput, or SagaFailed
        async for saga in client.list_sagas(status=pb.SAGA_STATUS_RUNNING):
            ...                                    # every page, fetched as iteration goes

`SyncSagaClient` (orchestrator.client.sync_client) is the same for code without an event loop.
Used by the `saga` command, the dev tools and the tests. A watch that loses its
stream (the orchestrator restarts, a replica dies) reopens it after the last seq it
saw, with backoff and for a bounded time, so no transition is missed or repeated.

Errors: every call raises a `ClientError` (orchestrator.client.errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any, Unpack, overload

import grpc
from google.protobuf.message import Message

from orchestrator.client.batches import START_BATCH_SIZE, SagaToStart, start_batches
from orchestrator.client.bulk import (
    BULK_METHODS,
    BulkAction,
    BulkFilters,
    BulkPage,
    bulk_filter,
    bulk_page,
)
from orchestrator.client.connection import (
    RECONNECT_CODES,
    WATCH_RECONNECT_SECONDS,
    Reconnection,
    in_namespace,
)
from orchestrator.client.errors import (
    ClientError,
    DeadlineExceeded,
    InvalidRequest,
    NotFound,
    Unavailable,
    client_error,
    describe_orchestrator_error,
    status_error,
)
from orchestrator.client.handle import OutputT, SagaHandle, output_of
from orchestrator.client.listing import LIST_PAGE_SIZE, SagaFilters, SagaPage, list_request
from orchestrator.client.watching import SagaWatching
from saga.v1 import events_admin_pb2 as events_pb
from saga.v1 import events_admin_pb2_grpc as events_pb_grpc
from saga.v1 import ingest_pb2 as ingest_pb
from saga.v1 import ingest_pb2_grpc as ingest_pb_grpc
from saga.v1 import orchestrator_pb2 as pb

SHORT_ID_SCAN = 10_000
"""How many of the newest sagas a short id is matched against."""


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


class SagaClient(SagaWatching):
    """The orchestrator's API as Python calls: start sagas (one, many, or start and wait
    in one call), list and read them, and the operator's abort, retry and resolve; the
    channel and the watching are its bases' (SagaChannel, SagaWatching)."""

    _catalogue: list[pb.SagaDefinition] | None = None
    """The server's ListSagaTypes, read once, when a start needs to find its saga type."""

    # --- starting and awaiting ---------------------------------------------------------

    @overload
    async def start(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
    ) -> SagaHandle[Message]: ...
    @overload
    async def start(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        output_type: type[OutputT],
    ) -> SagaHandle[OutputT]: ...
    async def start(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        output_type: type[Message] = Message,
    ) -> SagaHandle[Any]:
        """Start a saga with its typed input (packed in an Any). Without `saga_type`, the
        type is the one whose latest version takes this input message (ListSagaTypes).
        With an idempotency key already used, the handle is the first saga's. With
        `output_type`, the handle's `result()` is that message (typed for mypy too)."""
        request = await self._typed_request(saga_input, correlation_id, idempotency_key, saga_type)
        return self._handle_of(await self._call("StartSaga", request), output_type)

    async def _typed_request(
        self, saga_input: Message, correlation_id: str, idempotency_key: str, saga_type: str | None
    ) -> pb.StartSagaRequest:
        return await self._start_request(
            SagaToStart(saga_input, correlation_id, idempotency_key, saga_type)
        )

    async def start_json(
        self,
        saga_type: str,
        payload: dict[str, Any],
        *,
        correlation_id: str,
        idempotency_key: str = "",
    ) -> SagaHandle[Message]:
        """Start a saga with its input as JSON-like data (the Struct path)."""
        request = await self._start_request(
            SagaToStart(payload, correlation_id, idempotency_key, saga_type)
        )
        return self._handle_of(await self._call("StartSaga", request), Message)

    async def start_many(
        self,
        sagas: Iterable[SagaToStart | pb.StartSagaRequest],
        *,
        batch_size: int = START_BATCH_SIZE,
    ) -> list[SagaHandle[Message] | ClientError]:
        """Start many sagas with StartSagas, `batch_size` at a time: one answer per saga, in
        order, a handle or the ClientError StartSaga would have raised for it (one bad
        request fails no other). A call refused as a whole (the server unreachable, a batch
        past its limit) raises, after the earlier batches' sagas were started: give each
        saga an idempotency key and the same list can be sent again safely."""
        requests = [
            item if isinstance(item, pb.StartSagaRequest) else await self._start_request(item)
            for item in sagas
        ]
        answers: list[SagaHandle[Message] | ClientError] = []
        for batch in start_batches(requests, batch_size):
            answers.extend(await self.start_batch(batch))
        return answers

    async def start_batch(
        self, requests: Sequence[pb.StartSagaRequest]
    ) -> list[SagaHandle[Message] | ClientError]:
        """One StartSagas call: each request's handle, or its ClientError, in order."""
        response = await self._call("StartSagas", pb.StartSagasRequest(requests=requests))
        return [
            self._handle_of(result.saga, Message)
            if result.WhichOneof("result") == "saga"
            else status_error(result.error)
            for result in response.results
        ]

    async def _start_request(self, saga: SagaToStart) -> pb.StartSagaRequest:
        request = pb.StartSagaRequest(
            correlation_id=saga.correlation_id, idempotency_key=saga.idempotency_key
        )
        if isinstance(saga.saga_input, Message):
            request.input.Pack(saga.saga_input)
            request.saga_type = saga.saga_type or await self._saga_type_taking(
                saga.saga_input.DESCRIPTOR.full_name
            )
        else:
            if saga.saga_type is None:
                raise InvalidRequest("a saga whose input is JSON-like data needs its saga_type")
            request.saga_type = saga.saga_type
            request.payload.update(saga.saga_input)
        return request

    @overload
    async def execute(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Message: ...
    @overload
    async def execute(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        output_type: type[OutputT],
    ) -> OutputT: ...
    async def execute(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the same call as the sync client's)
        output_type: type[Message] = Message,
    ) -> Message:
        """Start a saga and return its output, as `start` then `SagaHandle.result` would,
        in one ExecuteSaga call that the orchestrator answers when the saga's last
        transition is committed. The request always carries an idempotency key (a new
        one when none is given), so a call lost while it waits (the orchestrator
        restarts) is sent again, for as long as `result` would reconnect, and waits for
        the same saga."""
        request = await self._typed_request(
            saga_input, correlation_id, idempotency_key or f"execute-{uuid.uuid4()}", saga_type
        )
        reconnect_for = WATCH_RECONNECT_SECONDS if timeout is None else timeout
        clock = Reconnection(timeout, reconnect_for)
        while True:
            remaining = clock.remaining()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"the saga did not finish within {timeout:g}s")
            try:
                response = await self.stub.ExecuteSaga(
                    in_namespace(pb.ExecuteSagaRequest(start=request), self.namespace),
                    timeout=remaining,
                )
                break
            except grpc.RpcError as error:
                if error.code() not in RECONNECT_CODES:
                    raise client_error(error, self.address, self.timeout) from None
                if clock.expired():
                    raise DeadlineExceeded(f"the saga did not finish within {timeout:g}s") from None
                cause = describe_orchestrator_error(error, self.address, self.timeout)
            pause = clock.next_pause()
            if pause is None:
                raise Unavailable(f"{cause}; gave up after {reconnect_for:g}s of retrying")
            await asyncio.sleep(pause)
            await self.reconnect()
        return output_of(response.saga, output_type)

    @overload
    def handle(self, saga_id: str) -> SagaHandle[Message]: ...
    @overload
    def handle(self, saga_id: str, output_type: type[OutputT]) -> SagaHandle[OutputT]: ...
    def handle(self, saga_id: str, output_type: type[Message] = Message) -> SagaHandle[Any]:
        """A handle on a saga started earlier (by this process or another)."""
        return SagaHandle(self, saga_id, False, pb.SAGA_STATUS_UNSPECIFIED, output_type)

    def _handle_of(
        self, response: pb.StartSagaResponse, output_type: type[OutputT]
    ) -> SagaHandle[OutputT]:
        return SagaHandle(self, response.saga_id, response.created, response.status, output_type)

    async def _saga_type_taking(self, input_name: str) -> str:
        if self._catalogue is None:
            self._catalogue = await self.list_saga_types()
        types = sorted({d.saga_type for d in self._catalogue if d.latest and d.input == input_name})
        if len(types) != 1:
            found = f"several ({', '.join(types)})" if types else "none"
            raise InvalidRequest(
                f"which saga type takes {input_name}? the orchestrator at {self.address} has "
                f"{found}; pass saga_type="
            )
        return types[0]

    # --- reading ------------------------------------------------------------------------

    async def list_sagas(
        self,
        *,
        page_size: int = LIST_PAGE_SIZE,
        view: pb.SagaView = pb.SAGA_VIEW_UNSPECIFIED,
        **filters: Unpack[SagaFilters],
    ) -> AsyncGenerator[pb.Saga, None]:
        """Every saga that matches the filters (status=, saga_type=, correlation_id=,
        lock_key=, needs_intervention=, created_after=, created_before=), newest first,
        fetching the next page of `page_size` as iteration reaches it."""
        token = ""
        while True:
            page = await self.list_saga_page(
                page_token=token, page_size=page_size, view=view, **filters
            )
            for saga in page.sagas:
                yield saga
            token = page.next_page_token
            if not token:
                return

    async def list_saga_page(
        self,
        *,
        page_token: str = "",
        page_size: int = LIST_PAGE_SIZE,
        view: pb.SagaView = pb.SAGA_VIEW_UNSPECIFIED,
        **filters: Unpack[SagaFilters],
    ) -> SagaPage:
        """One page of sagas, for a caller that pages itself (pass the page's
        `next_page_token` back, with the same filters, for the next)."""
        request = list_request(filters, page_token=page_token, page_size=page_size, view=view)
        response: pb.ListSagasResponse = await self._call("ListSagas", request)
        return SagaPage(list(response.sagas), response.next_page_token)

    async def history(self, saga_id: str) -> list[pb.Transition]:
        """The saga's whole transition log, every page of it."""
        transitions: list[pb.Transition] = []
        token = ""
        while True:
            page = await self._call(
                "GetSagaHistory", pb.GetSagaHistoryRequest(saga_id=saga_id, page_token=token)
            )
            transitions.extend(page.transitions)
            token = page.next_page_token
            if not token:
                return transitions

    async def list_saga_types(self, saga_type: str = "") -> list[pb.SagaDefinition]:
        """The server's catalogue: every registered definition (or every version of one)."""
        response = await self._call("ListSagaTypes", pb.ListSagaTypesRequest(saga_type=saga_type))
        return list(response.definitions)

    async def resolve_saga_id(self, text: str, *, scan: int = SHORT_ID_SCAN) -> str:
        """The whole id of the saga whose id ends in `text` (the short id `saga list`
        shows), among the newest `scan` sagas; a whole id is returned as it is. NotFound
        when none matches, InvalidRequest naming the candidates when several do."""
        if _is_uuid(text):
            return text
        matches: list[pb.Saga] = []
        seen = 0
        async with contextlib.aclosing(self.list_sagas(page_size=min(1000, scan))) as sagas:
            async for saga in sagas:
                if seen >= scan:
                    break
                seen += 1
                if saga.saga_id.endswith(text):
                    matches.append(saga)
        if len(matches) == 1:
            return matches[0].saga_id
        if not matches:
            raise NotFound(f"no saga id ends in {text!r} among the newest {seen} sagas")
        candidates = "; ".join(
            f"{saga.saga_id} ({saga.saga_type}, {pb.SagaStatus.Name(saga.status)})"
            for saga in matches[:10]
        )
        raise InvalidRequest(
            f"{len(matches)} saga ids end in {text!r}; give more of the id: {candidates}"
        )

    # --- operator calls -------------------------------------------------------------------

    async def abort(self, saga_id: str, *, reason: str, requested_by: str) -> pb.Saga:
        """Stop a RUNNING saga and compensate it (Conflict past its pivot or when ended)."""
        request = pb.AbortSagaRequest(saga_id=saga_id, reason=reason, requested_by=requested_by)
        response: pb.AbortSagaResponse = await self._call("AbortSaga", request)
        return response.saga

    async def retry(self, saga_id: str, *, reason: str, requested_by: str) -> pb.Saga:
        """Resume a saga that needs intervention, with a fresh budget of attempts."""
        request = pb.RetrySagaRequest(saga_id=saga_id, reason=reason, requested_by=requested_by)
        response: pb.RetrySagaResponse = await self._call("RetrySaga", request)
        return response.saga

    async def resolve(self, saga_id: str, step: str, *, reason: str, requested_by: str) -> pb.Saga:
        """Record that an operator finished a stuck step by hand."""
        request = pb.ResolveStepRequest(
            saga_id=saga_id, step=step, reason=reason, requested_by=requested_by
        )
        response: pb.ResolveStepResponse = await self._call("ResolveStep", request)
        return response.saga

    async def act_on_sagas(
        self,
        action: BulkAction,
        *,
        reason: str,
        requested_by: str,
        step: str = "",
        dry_run: bool = False,
        page_size: int = 0,
        page_token: str = "",
        **filters: Unpack[BulkFilters],
    ) -> BulkPage:
        """Retry, resolve (at `step`) or abort one page of the sagas matching the filters
        (RetrySagas, ResolveSagas, AbortSagas); pass `next_page_token` back, with the
        same filters, for the next page. A dry run counts them and changes nothing."""
        method, request_type = BULK_METHODS[action]
        request = request_type(
            filter=bulk_filter(filters),
            reason=reason,
            requested_by=requested_by,
            dry_run=dry_run,
            page_size=page_size,
            page_token=page_token,
        )
        if isinstance(request, pb.ResolveSagasRequest):
            request.step = step
        elif step:
            raise InvalidRequest(f"step is for resolve only, not for {action}")
        return bulk_page(await self._call(method, request))

    # --- the event sinks (operators) --------------------------------------------------------

    async def _events_call(
        self, method: str, request: Message, service: Any = events_pb_grpc.SagaEventsStub
    ) -> Any:
        """One unary call of SagaEvents (or `service`, another stub class) on this
        client's channel (see `_call`)."""
        if self._channel is None:
            raise InvalidRequest("a client over a caller's stub cannot reach that service")
        stub = service(self._channel)
        try:
            scoped = in_namespace(request, self.namespace)
            return await getattr(stub, method)(scoped, timeout=self.timeout)
        except grpc.RpcError as error:
            raise client_error(error, self.address, self.timeout) from None

    async def event_sinks(self) -> events_pb.ListEventSinksResponse:
        """Every event sink with its backlog, dead letters and partition owners."""
        response: events_pb.ListEventSinksResponse = await self._events_call(
            "ListEventSinks", events_pb.ListEventSinksRequest()
        )
        return response

    async def replay_events(
        self, request: events_pb.ReplayEventsRequest
    ) -> events_pb.ReplayEventsResponse:
        """Queue events again from the transition log (one call: follow next_page_token)."""
        response: events_pb.ReplayEventsResponse = await self._events_call("ReplayEvents", request)
        return response

    async def dead_events(
        self, sink: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> events_pb.ListDeadEventsResponse:
        """One page of dead-lettered events, oldest first."""
        request = events_pb.ListDeadEventsRequest(
            sink=sink, page_size=page_size, page_token=page_token
        )
        response: events_pb.ListDeadEventsResponse = await self._events_call(
            "ListDeadEvents", request
        )
        return response

    async def requeue_dead_events(
        self, sink: str, ids: Sequence[int] = (), *, all: bool = False
    ) -> int:
        """Move dead letters of `sink` back into the outbox; returns how many moved."""
        request = events_pb.RequeueDeadEventsRequest(sink=sink, ids=list(ids), all=all)
        response = await self._events_call("RequeueDeadEvents", request)
        return int(response.requeued)

    async def event_anomalies(
        self, request: ingest_pb.ListEventAnomaliesRequest
    ) -> ingest_pb.ListEventAnomaliesResponse:
        """One page of tracked sagas' event anomalies no saga's log could record (events
        for an instance that never started), newest first; follow next_page_token."""
        response: ingest_pb.ListEventAnomaliesResponse = await self._events_call(
            "ListEventAnomalies", request, ingest_pb_grpc.SagaEventIngestStub
        )
        return response
