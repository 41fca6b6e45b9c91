"""The client for code without an event loop: `SagaClient` run on a loop of its own.

    with SyncSagaClient("localhost:50051") as client:
        booked = client.execute(TravelBookingInput(...), correlation_id="trip-7", timeout=60)

Every method is the async client's, run to completion on a private event loop in a
daemon thread, so behaviour (deadlines, reconnecting watches, the exception hierarchy)
is the same in both; nothing here re-implements a call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from google.protobuf.message import Message

from orchestrator.client.async_client import (
    CLIENT_TIMEOUT_SECONDS,
    START_BATCH_SIZE,
    WATCH_RECONNECT_SECONDS,
    ClientError,
    SagaClient,
    SagaHandle,
    SagaToStart,
)
from orchestrator.security.tls import ClientTls
from saga.v1 import orchestrator_pb2 as pb

Result = TypeVar("Result")


class SyncSagaClient:
    """A SagaClient behind blocking calls; close it (or use `with`) to stop its thread."""

    def __init__(
        self,
        address: str,
        timeout: float = CLIENT_TIMEOUT_SECONDS,
        *,
        tls: ClientTls | None = None,
        token: str | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="saga-client", daemon=True
        )
        self._thread.start()
        self._client = self.run(self._open(address, timeout, tls, token))

    @staticmethod
    async def _open(
        address: str, call_timeout: float, tls: ClientTls | None, token: str | None
    ) -> SagaClient:
        # Its channel belongs to the client's loop.
        return SagaClient(address, call_timeout, tls=tls, token=token)

    def run(self, call: Coroutine[Any, Any, Result]) -> Result:
        """Run a coroutine of the async client (`aio`) on its loop and return its result."""
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    @property
    def aio(self) -> SagaClient:
        """The async client underneath; its coroutines go through `run`."""
        return self._client

    @property
    def address(self) -> str:
        return self._client.address

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncSagaClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
    ) -> SyncSagaHandle:
        """See SagaClient.start."""
        handle = self.run(
            self._client.start(
                saga_input,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
                saga_type=saga_type,
            )
        )
        return SyncSagaHandle(self, handle)

    def start_many(
        self,
        sagas: Iterable[SagaToStart | pb.StartSagaRequest],
        *,
        batch_size: int = START_BATCH_SIZE,
    ) -> list[SyncSagaHandle | ClientError]:
        """See SagaClient.start_many."""
        answers = self.run(self._client.start_many(sagas, batch_size=batch_size))
        return [
            answer if isinstance(answer, ClientError) else SyncSagaHandle(self, answer)
            for answer in answers
        ]

    def execute(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """See SagaClient.execute."""
        return self.run(
            self._client.execute(
                saga_input,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
                saga_type=saga_type,
                timeout=timeout,
            )
        )

    def handle(self, saga_id: str) -> SyncSagaHandle:
        return SyncSagaHandle(self, self._client.handle(saga_id))

    def get_saga(self, saga_id: str) -> pb.Saga:
        return self.run(self._client.get_saga(saga_id))

    get = get_saga

    def list_sagas(self, request: pb.ListSagasRequest) -> pb.ListSagasResponse:
        return self.run(self._client.list_sagas(request))

    def history(self, saga_id: str) -> list[pb.Transition]:
        return self.run(self._client.history(saga_id))

    def list_saga_types(self, saga_type: str = "") -> list[pb.SagaDefinition]:
        return self.run(self._client.list_saga_types(saga_type))

    def abort(self, saga_id: str, *, reason: str, requested_by: str) -> pb.Saga:
        return self.run(self._client.abort(saga_id, reason=reason, requested_by=requested_by))

    def retry(self, saga_id: str, *, reason: str, requested_by: str) -> pb.Saga:
        return self.run(self._client.retry(saga_id, reason=reason, requested_by=requested_by))

    def resolve(self, saga_id: str, step: str, *, reason: str, requested_by: str) -> pb.Saga:
        return self.run(
            self._client.resolve(saga_id, step, reason=reason, requested_by=requested_by)
        )

    def watch(
        self,
        saga_id: str,
        *,
        after_seq: int = 0,
        within: float | None = None,
        reconnect_for: float = WATCH_RECONNECT_SECONDS,
        on_notice: Callable[[str], None] = lambda _: None,
    ) -> Iterator[pb.WatchSagaResponse]:
        """See SagaClient.watch: each response as it arrives; the last carries the saga."""
        stream = self._client.watch(
            saga_id,
            after_seq=after_seq,
            within=within,
            reconnect_for=reconnect_for,
            on_notice=on_notice,
        )

        async def next_response() -> pb.WatchSagaResponse | None:
            return await anext(stream, None)

        while (response := self.run(next_response())) is not None:
            yield response


@dataclass(frozen=True, slots=True)
class SyncSagaHandle:
    """A started saga, for blocking code (see SagaHandle)."""

    client: SyncSagaClient
    handle: SagaHandle

    @property
    def saga_id(self) -> str:
        return self.handle.saga_id

    @property
    def created(self) -> bool:
        return self.handle.created

    def get(self) -> pb.Saga:
        return self.client.get_saga(self.saga_id)

    def result(
        self, timeout: float | None = None, *, output_type: type[Message] | None = None
    ) -> Message:
        """See SagaHandle.result."""
        return self.client.run(self.handle.result(timeout, output_type=output_type))
