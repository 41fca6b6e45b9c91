"""The client for code without an event loop: `SagaClient` run on a loop of its own.

    with SyncSagaClient("localhost:50051") as client:
        booked = client.execute(
            TravelBookingInput(...), correlation_id="trip-7", output_type=TravelBookingOutput,
            timeout=60,
        )
        for saga in client.list_sagas(needs_intervention=True):
            ...

Every method is the async client's, run to completion on a private event loop in a
daemon thread, so behaviour (deadlines, reconnecting watches, the exception hierarchy)
is the same in both; nothing here re-implements a call. Callbacks (`on_notice`,
`on_transition`) run on that thread. tests/unit/test_client_surface.py fails when an
async method has no twin here, or a twin whose parameters differ.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar, Unpack, overload

from google.protobuf import descriptor_pool as pool
from google.protobuf.message import Message

from orchestrator.client.async_client import SHORT_ID_SCAN, SagaClient
from orchestrator.client.batches import START_BATCH_SIZE, SagaToStart
from orchestrator.client.bulk import BulkAction, BulkFilters, BulkPage
from orchestrator.client.connection import CLIENT_TIMEOUT_SECONDS, WATCH_RECONNECT_SECONDS
from orchestrator.client.errors import ClientError
from orchestrator.client.handle import OutputT, SagaHandle
from orchestrator.client.listing import LIST_PAGE_SIZE, SagaFilters, SagaPage
from orchestrator.client.watching import WAIT_ALL_STREAMS
from orchestrator.security.tls import ClientTls
from saga.v1 import events_admin_pb2 as events_pb
from saga.v1 import ingest_pb2 as ingest_pb
from saga.v1 import orchestrator_pb2 as pb

Result = TypeVar("Result")
Item = TypeVar("Item")


def _ignore(_: object) -> None:
    return None


class SyncSagaClient:
    """A SagaClient behind blocking calls; close it (or use `with`) to stop its thread."""

    def __init__(
        self,
        address: str,
        timeout: float = CLIENT_TIMEOUT_SECONDS,
        *,
        tls: ClientTls | None = None,
        token: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="saga-client", daemon=True
        )
        self._thread.start()
        self._client = self.run(self._open(address, timeout, tls, token, namespace))

    @staticmethod
    async def _open(
        address: str,
        call_timeout: float,
        tls: ClientTls | None,
        token: str | None,
        namespace: str | None,
    ) -> SagaClient:
        # Its channel belongs to the client's loop.
        return SagaClient(address, call_timeout, tls=tls, token=token, namespace=namespace)

    def run(self, call: Coroutine[Any, Any, Result]) -> Result:
        """Run a coroutine of the async client (`aio`) on its loop and return its result."""
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    def _iterate(self, stream: AsyncGenerator[Item, None]) -> Iterator[Item]:
        """Each item of one of the async client's generators, taken on its loop; the
        generator is closed there when the caller stops early."""

        async def next_item() -> tuple[Item] | None:
            try:
                return (await anext(stream),)
            except StopAsyncIteration:
                return None

        try:
            while (item := self.run(next_item())) is not None:
                yield item[0]
        finally:
            self.run(stream.aclose())

    @property
    def aio(self) -> SagaClient:
        """The async client underneath; its coroutines go through `run`."""
        return self._client

    @property
    def address(self) -> str:
        return self._client.address

    def reconnect(self) -> None:
        """See SagaClient.reconnect."""
        self.run(self._client.reconnect())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def server_types(self) -> pool.DescriptorPool:
        """See SagaClient.server_types."""
        return self._client.server_types()

    def __enter__(self) -> SyncSagaClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # --- starting and awaiting ---------------------------------------------------------

    @overload
    def start(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
    ) -> SyncSagaHandle[Message]: ...
    @overload
    def start(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        output_type: type[OutputT],
    ) -> SyncSagaHandle[OutputT]: ...
    def start(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        output_type: type[Message] = Message,
    ) -> SyncSagaHandle[Any]:
        """See SagaClient.start."""
        handle = self.run(
            self._client.start(
                saga_input,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
                saga_type=saga_type,
                output_type=output_type,
            )
        )
        return SyncSagaHandle(self, handle)

    def start_json(
        self,
        saga_type: str,
        payload: dict[str, Any],
        *,
        correlation_id: str,
        idempotency_key: str = "",
    ) -> SyncSagaHandle[Message]:
        """See SagaClient.start_json."""
        handle = self.run(
            self._client.start_json(
                saga_type, payload, correlation_id=correlation_id, idempotency_key=idempotency_key
            )
        )
        return SyncSagaHandle(self, handle)

    def start_many(
        self,
        sagas: Iterable[SagaToStart | pb.StartSagaRequest],
        *,
        batch_size: int = START_BATCH_SIZE,
    ) -> list[SyncSagaHandle[Message] | ClientError]:
        """See SagaClient.start_many."""
        return self._handles(self.run(self._client.start_many(sagas, batch_size=batch_size)))

    def start_batch(
        self, requests: Sequence[pb.StartSagaRequest]
    ) -> list[SyncSagaHandle[Message] | ClientError]:
        """See SagaClient.start_batch."""
        return self._handles(self.run(self._client.start_batch(requests)))

    def _handles(
        self, answers: list[SagaHandle[Message] | ClientError]
    ) -> list[SyncSagaHandle[Message] | ClientError]:
        return [
            answer if isinstance(answer, ClientError) else SyncSagaHandle(self, answer)
            for answer in answers
        ]

    @overload
    def execute(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        timeout: float | None = None,
    ) -> Message: ...
    @overload
    def execute(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        timeout: float | None = None,
        output_type: type[OutputT],
    ) -> OutputT: ...
    def execute(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        timeout: float | None = None,
        output_type: type[Message] = Message,
    ) -> Message:
        """See SagaClient.execute."""
        return self.run(
            self._client.execute(
                saga_input,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
                saga_type=saga_type,
                timeout=timeout,
                output_type=output_type,
            )
        )

    @overload
    def handle(self, saga_id: str) -> SyncSagaHandle[Message]: ...
    @overload
    def handle(self, saga_id: str, output_type: type[OutputT]) -> SyncSagaHandle[OutputT]: ...
    def handle(self, saga_id: str, output_type: type[Message] = Message) -> SyncSagaHandle[Any]:
        """See SagaClient.handle."""
        return SyncSagaHandle(self, self._client.handle(saga_id, output_type))

    # --- reading ------------------------------------------------------------------------

    def get_saga(self, saga_id: str) -> pb.Saga:
        """See SagaClient.get_saga."""
        return self.run(self._client.get_saga(saga_id))

    get = get_saga

    def list_sagas(
        self,
        *,
        page_size: int = LIST_PAGE_SIZE,
        view: pb.SagaView = pb.SAGA_VIEW_UNSPECIFIED,
        **filters: Unpack[SagaFilters],
    ) -> Iterator[pb.Saga]:
        """See SagaClient.list_sagas: every matching saga, pages fetched as needed."""
        return self._iterate(self._client.list_sagas(page_size=page_size, view=view, **filters))

    def list_saga_page(
        self,
        *,
        page_token: str = "",
        page_size: int = LIST_PAGE_SIZE,
        view: pb.SagaView = pb.SAGA_VIEW_UNSPECIFIED,
        **filters: Unpack[SagaFilters],
    ) -> SagaPage:
        """See SagaClient.list_saga_page."""
        return self.run(
            self._client.list_saga_page(
                page_token=page_token, page_size=page_size, view=view, **filters
            )
        )

    def history(self, saga_id: str) -> list[pb.Transition]:
        """See SagaClient.history."""
        return self.run(self._client.history(saga_id))

    def list_saga_types(self, saga_type: str = "") -> list[pb.SagaDefinition]:
        """See SagaClient.list_saga_types."""
        return self.run(self._client.list_saga_types(saga_type))

    def resolve_saga_id(self, text: str, *, scan: int = SHORT_ID_SCAN) -> str:
        """See SagaClient.resolve_saga_id."""
        return self.run(self._client.resolve_saga_id(text, scan=scan))

    # --- operator calls -------------------------------------------------------------------

    def abort(self, saga_id: str, *, reason: str, requested_by: str) -> pb.Saga:
        """See SagaClient.abort."""
        return self.run(self._client.abort(saga_id, reason=reason, requested_by=requested_by))

    def retry(self, saga_id: str, *, reason: str, requested_by: str) -> pb.Saga:
        """See SagaClient.retry."""
        return self.run(self._client.retry(saga_id, reason=reason, requested_by=requested_by))

    def resolve(self, saga_id: str, step: str, *, reason: str, requested_by: str) -> pb.Saga:
        """See SagaClient.resolve."""
        return self.run(
            self._client.resolve(saga_id, step, reason=reason, requested_by=requested_by)
        )

    def act_on_sagas(
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
        """See SagaClient.act_on_sagas."""
        return self.run(
            self._client.act_on_sagas(
                action,
                reason=reason,
                requested_by=requested_by,
                step=step,
                dry_run=dry_run,
                page_size=page_size,
                page_token=page_token,
                **filters,
            )
        )

    # --- the event sinks (operators) ----------------------------------------------------

    def event_sinks(self) -> events_pb.ListEventSinksResponse:
        """See SagaClient.event_sinks."""
        return self.run(self._client.event_sinks())

    def replay_events(
        self, request: events_pb.ReplayEventsRequest
    ) -> events_pb.ReplayEventsResponse:
        """See SagaClient.replay_events."""
        return self.run(self._client.replay_events(request))

    def dead_events(
        self, sink: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> events_pb.ListDeadEventsResponse:
        """See SagaClient.dead_events."""
        return self.run(self._client.dead_events(sink, page_size=page_size, page_token=page_token))

    def requeue_dead_events(self, sink: str, ids: Sequence[int] = (), *, all: bool = False) -> int:
        """See SagaClient.requeue_dead_events."""
        return self.run(self._client.requeue_dead_events(sink, ids, all=all))

    def event_anomalies(
        self, request: ingest_pb.ListEventAnomaliesRequest
    ) -> ingest_pb.ListEventAnomaliesResponse:
        """See SagaClient.event_anomalies."""
        return self.run(self._client.event_anomalies(request))

    # --- watching -----------------------------------------------------------------------

    def watch(
        self,
        saga_id: str,
        *,
        after_seq: int = 0,
        within: float | None = None,
        reconnect_for: float = WATCH_RECONNECT_SECONDS,
        on_notice: Callable[[str], None] = _ignore,
    ) -> Iterator[pb.WatchSagaResponse]:
        """See SagaClient.watch: each response as it arrives; the last carries the saga."""
        return self._iterate(
            self._client.watch(
                saga_id,
                after_seq=after_seq,
                within=within,
                reconnect_for=reconnect_for,
                on_notice=on_notice,
            )
        )

    def follow(
        self,
        saga_id: str,
        *,
        after_seq: int = 0,
        within: float | None = None,
        reconnect_for: float = WATCH_RECONNECT_SECONDS,
        on_transition: Callable[[pb.Transition], None] = _ignore,
        on_notice: Callable[[str], None] = _ignore,
    ) -> pb.Saga:
        """See SagaClient.follow (the callbacks run on the client's thread)."""
        return self.run(
            self._client.follow(
                saga_id,
                after_seq=after_seq,
                within=within,
                reconnect_for=reconnect_for,
                on_transition=on_transition,
                on_notice=on_notice,
            )
        )

    def wait(self, saga_id: str, within: float) -> pb.Saga:
        """See SagaClient.wait."""
        return self.run(self._client.wait(saga_id, within))

    def wait_all(
        self, saga_ids: Iterable[str], within: float, *, streams: int = WAIT_ALL_STREAMS
    ) -> tuple[dict[str, pb.Saga], bool]:
        """See SagaClient.wait_all."""
        return self.run(self._client.wait_all(saga_ids, within, streams=streams))


@dataclass(frozen=True, slots=True)
class SyncSagaHandle(Generic[OutputT]):
    """A started saga, for blocking code (see SagaHandle)."""

    client: SyncSagaClient
    handle: SagaHandle[OutputT]

    @property
    def saga_id(self) -> str:
        return self.handle.saga_id

    @property
    def created(self) -> bool:
        return self.handle.created

    @property
    def status(self) -> pb.SagaStatus:
        return self.handle.status

    @property
    def output_type(self) -> type[OutputT]:
        return self.handle.output_type

    def get(self) -> pb.Saga:
        """See SagaHandle.get."""
        return self.client.get_saga(self.saga_id)

    def result(self, timeout: float | None = None) -> OutputT:
        """See SagaHandle.result."""
        return self.client.run(self.handle.result(timeout))
