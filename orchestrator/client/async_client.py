"""A client of the orchestrator's API: one channel, a deadline on every unary call,
errors mapped to a small exception hierarchy, and `follow`/`wait`, which ride the
WatchSaga stream to the saga's end instead of polling GetSaga.

    async with SagaClient("localhost:50051") as client:
        handle = await client.start(TravelBookingInput(...), correlation_id="trip-7")
        booked = await handle.result(timeout=60)   # a TravelBookingOutput, or SagaFailed

`SyncSagaClient` (orchestrator.client.sync_client) is the same for code without an event loop.
Used by the `saga` command, the dev tools and the tests. A watch that loses its
stream (the orchestrator restarts, a replica dies) reopens it after the last seq it
saw, with backoff and for a bounded time, so no transition is missed or repeated.

Errors: every call raises a `ClientError` (orchestrator.client.errors, re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import any_pb2, message_factory
from google.protobuf import descriptor_pool as pool
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from orchestrator.client.errors import (
    ClientError,
    Conflict,
    DeadlineExceeded,
    InvalidRequest,
    NotFound,
    SagaFailed,
    StreamLost,
    Unavailable,
    client_error,
    describe_orchestrator_error,
    status_error,
)
from orchestrator.core.limits import Limits
from orchestrator.security.tls import ClientTls, open_channel
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

__all__ = [
    "ClientError",
    "Conflict",
    "DeadlineExceeded",
    "InvalidRequest",
    "NotFound",
    "SagaClient",
    "SagaFailed",
    "SagaHandle",
    "SagaToStart",
    "StreamLost",
    "Unavailable",
    "describe_orchestrator_error",
    "unpack_output",
]

CLIENT_TIMEOUT_SECONDS = 10.0
"""Deadline of each unary call (the CLI's --timeout, SAGA_TIMEOUT)."""
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", Limits().grpc_message_bytes),
    ("grpc.max_send_message_length", Limits().grpc_message_bytes),
)
"""Message sizes set to what a server with the default limits sends and accepts."""
WATCH_RECONNECT_SECONDS = 30.0
"""How long a watch keeps trying to get its stream back before it gives up."""
RECONNECT_FIRST_BACKOFF = 0.25
RECONNECT_MAX_BACKOFF = 4.0
RECONNECT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
"""What a lost or restarting server looks like from a stream; anything else is an answer."""
SHORT_ID_SCAN = 10_000
"""How many of the newest sagas a short id is matched against."""
TERMINAL_SAGA_STATUSES = frozenset({pb.SAGA_STATUS_COMPLETED, pb.SAGA_STATUS_FAILED})
WAIT_ALL_STREAMS = 64
"""WatchSaga streams `wait_all` keeps open at once."""
START_BATCH_SIZE = 500
"""Requests `start_many` sends in one StartSagas call: the server's default limit."""
START_BATCH_BYTES = 3 * 1024 * 1024
"""A StartSagas request is closed before its encoding passes this, below the 4 MiB
message size a server with the default limits accepts."""


@dataclass(frozen=True, slots=True)
class SagaToStart:
    """One saga for `start_many`: its typed input (its saga type found from the catalogue
    unless given), or its input as JSON-like data with `saga_type`."""

    saga_input: Message | Mapping[str, Any]
    correlation_id: str
    idempotency_key: str = ""
    saga_type: str | None = None


def start_batches(
    requests: Iterable[pb.StartSagaRequest],
    size: int = START_BATCH_SIZE,
    max_bytes: int = START_BATCH_BYTES,
) -> Iterable[list[pb.StartSagaRequest]]:
    """`requests` in StartSagas batches of at most `size` requests and about `max_bytes`
    encoded (a request bigger than that alone goes in a batch of its own), in order."""
    batch: list[pb.StartSagaRequest] = []
    used = 0
    for request in requests:
        cost = request.ByteSize() + 8  # a repeated field's tag and length prefix
        if batch and (len(batch) >= size or used + cost > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(request)
        used += cost
    if batch:
        yield batch


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _ignore(_: object) -> None:
    return None


class SagaClient:
    """One grpc.aio channel to the orchestrator (or a stub the caller owns); with `tls`
    it speaks TLS (mutual when `tls` has a certificate), with `token` every call carries
    `authorization: Bearer <token>`."""

    def __init__(
        self,
        address: str,
        timeout: float = CLIENT_TIMEOUT_SECONDS,
        *,
        stub: pb_grpc.SagaOrchestratorStub | None = None,
        tls: ClientTls | None = None,
        token: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._tls = tls
        self._token = token
        self._channel = (
            None if stub is not None else open_channel(address, tls, token, CHANNEL_OPTIONS)
        )
        self.stub = stub or pb_grpc.SagaOrchestratorStub(self._channel)
        self._catalogue: list[pb.SagaDefinition] | None = None
        self._reflection: grpc.Channel | None = None
        self._types: pool.DescriptorPool | None = None

    @classmethod
    def over(
        cls, stub: pb_grpc.SagaOrchestratorStub, timeout: float = CLIENT_TIMEOUT_SECONDS
    ) -> SagaClient:
        """A client on a stub whose channel the caller opened and closes."""
        return cls("the orchestrator", timeout, stub=stub)

    async def reconnect(self) -> None:
        """A fresh channel: a restarted server is found at once, not after gRPC's backoff.
        A caller's stub is left alone (its channel reconnects by itself)."""
        if self._channel is None:
            return
        await self._channel.close()
        self._channel = open_channel(self.address, self._tls, self._token, CHANNEL_OPTIONS)
        self.stub = pb_grpc.SagaOrchestratorStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._reflection is not None:
            self._reflection.close()

    def server_types(self) -> pool.DescriptorPool:
        """The message types the orchestrator knows (its reflection service), for reading
        an Any (a step's reply, a saga's output) of a type this process never imported.
        Its look-ups block; meant for the command line and scripts."""
        if self._types is None:
            # Reflection is open to every caller when on: TLS, but no token.
            self._reflection = (
                grpc.insecure_channel(self.address)
                if self._tls is None
                else grpc.secure_channel(self.address, self._tls.credentials())
            )
            self._types = pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self._reflection))
        return self._types

    async def __aenter__(self) -> SagaClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: str, request: Message) -> Any:
        """One unary call under the client's deadline; a failure becomes a ClientError."""
        try:
            return await getattr(self.stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise client_error(error, self.address, self.timeout) from None

    # --- starting and awaiting ---------------------------------------------------------

    async def start(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
    ) -> SagaHandle:
        """Start a saga with its typed input (packed in an Any). Without `saga_type`, the
        type is the one whose latest version takes this input message (ListSagaTypes).
        With an idempotency key already used, the handle is the first saga's."""
        request = await self._typed_request(saga_input, correlation_id, idempotency_key, saga_type)
        return self._handle_of(await self._call("StartSaga", request))

    async def _typed_request(
        self, saga_input: Message, correlation_id: str, idempotency_key: str, saga_type: str | None
    ) -> pb.StartSagaRequest:
        packed = any_pb2.Any()
        packed.Pack(saga_input)
        if saga_type is None:
            saga_type = await self._saga_type_taking(saga_input.DESCRIPTOR.full_name)
        return pb.StartSagaRequest(
            saga_type=saga_type,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            input=packed,
        )

    async def start_json(
        self,
        saga_type: str,
        payload: dict[str, Any],
        *,
        correlation_id: str,
        idempotency_key: str = "",
    ) -> SagaHandle:
        """Start a saga with its input as JSON-like data (the Struct path)."""
        request = pb.StartSagaRequest(
            saga_type=saga_type, correlation_id=correlation_id, idempotency_key=idempotency_key
        )
        request.payload.update(payload)
        return self._handle_of(await self._call("StartSaga", request))

    async def start_many(
        self,
        sagas: Iterable[SagaToStart | pb.StartSagaRequest],
        *,
        batch_size: int = START_BATCH_SIZE,
    ) -> list[SagaHandle | ClientError]:
        """Start many sagas with StartSagas, `batch_size` at a time: one answer per saga, in
        order, a handle or the ClientError StartSaga would have raised for it (one bad
        request fails no other). A call refused as a whole (the server unreachable, a batch
        past its limit) raises, after the earlier batches' sagas were started: give each
        saga an idempotency key and the same list can be sent again safely."""
        requests = [
            item if isinstance(item, pb.StartSagaRequest) else await self._start_request(item)
            for item in sagas
        ]
        answers: list[SagaHandle | ClientError] = []
        for batch in start_batches(requests, batch_size):
            answers.extend(await self.start_batch(batch))
        return answers

    async def start_batch(
        self, requests: Sequence[pb.StartSagaRequest]
    ) -> list[SagaHandle | ClientError]:
        """One StartSagas call: each request's handle, or its ClientError, in order."""
        response = await self._call("StartSagas", pb.StartSagasRequest(requests=requests))
        return [
            self._handle_of(result.saga)
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

    async def execute(
        self,
        saga_input: Message,
        *,
        correlation_id: str,
        idempotency_key: str = "",
        saga_type: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the same call as the sync client's)
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
        deadline = None if timeout is None else time.monotonic() + timeout
        reconnect_for = WATCH_RECONNECT_SECONDS if timeout is None else timeout
        lost_since: float | None = None
        failures = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"the saga did not finish within {timeout:g}s")
            try:
                response = await self.stub.ExecuteSaga(
                    pb.ExecuteSagaRequest(start=request), timeout=remaining
                )
                break
            except grpc.RpcError as error:
                if error.code() not in RECONNECT_CODES:
                    raise client_error(error, self.address, self.timeout) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceeded(f"the saga did not finish within {timeout:g}s") from None
                cause = describe_orchestrator_error(error, self.address, self.timeout)
            now = time.monotonic()
            lost_since = now if lost_since is None else lost_since
            if now - lost_since >= reconnect_for:
                raise Unavailable(f"{cause}; gave up after {reconnect_for:g}s of retrying")
            failures += 1
            await asyncio.sleep(_backoff(failures))
            await self.reconnect()
        return output_of(response.saga)

    def handle(self, saga_id: str) -> SagaHandle:
        """A handle on a saga started earlier (by this process or another)."""
        return SagaHandle(self, saga_id, created=False, status=pb.SAGA_STATUS_UNSPECIFIED)

    def _handle_of(self, response: pb.StartSagaResponse) -> SagaHandle:
        return SagaHandle(self, response.saga_id, response.created, response.status)

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

    async def get_saga(self, saga_id: str) -> pb.Saga:
        """The saga with its steps, each completed step's reply, and its output or failure."""
        saga: pb.Saga = await self._call("GetSaga", pb.GetSagaRequest(saga_id=saga_id))
        return saga

    get = get_saga

    async def list_sagas(self, request: pb.ListSagasRequest) -> pb.ListSagasResponse:
        """One page of sagas, newest first."""
        page: pb.ListSagasResponse = await self._call("ListSagas", request)
        return page

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
        token, seen = "", 0
        while seen < scan:
            page = await self.list_sagas(
                pb.ListSagasRequest(page_size=min(1000, scan - seen), page_token=token)
            )
            matches.extend(saga for saga in page.sagas if saga.saga_id.endswith(text))
            seen += len(page.sagas)
            token = page.next_page_token
            if not token:
                break
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

    # --- watching -----------------------------------------------------------------------

    async def watch(
        self,
        saga_id: str,
        *,
        after_seq: int = 0,
        within: float | None = None,
        reconnect_for: float = WATCH_RECONNECT_SECONDS,
        on_notice: Callable[[str], None] = _ignore,
    ) -> AsyncIterator[pb.WatchSagaResponse]:
        """The saga's transitions after `after_seq` as they are committed; the last
        response carries the ended saga (`saga`). A lost stream is reopened after the last
        seq seen, with backoff, for at most `reconnect_for` seconds of trying (then
        StreamLost); `on_notice` hears of it, and hears "" once the stream is back.
        DeadlineExceeded when the saga has not ended within `within` seconds."""
        deadline = None if within is None else time.monotonic() + within
        last = after_seq
        lost_since: float | None = None
        failures = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"saga {saga_id} did not finish within {within:g}s")
            try:
                if lost_since is not None:
                    await self.stub.GetSaga(  # are we back? (under the call deadline)
                        pb.GetSagaRequest(saga_id=saga_id), timeout=self.timeout
                    )
                    lost_since, failures = None, 0
                    on_notice("")
                stream = self.stub.WatchSaga(
                    pb.WatchSagaRequest(saga_id=saga_id, after_seq=last), timeout=remaining
                )
                async for response in stream:
                    if response.transition.seq <= last:
                        continue
                    last = response.transition.seq
                    yield response
                    if response.HasField("saga"):
                        return
                saga = await self.get_saga(saga_id)
                if saga.status in TERMINAL_SAGA_STATUSES:  # an older server: no final saga
                    yield pb.WatchSagaResponse(saga=saga)
                    return
                cause = "the stream ended before the saga did"
            except grpc.RpcError as error:
                if error.code() not in RECONNECT_CODES:
                    raise client_error(error, self.address, self.timeout) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceeded(
                        f"saga {saga_id} did not finish within {within:g}s"
                    ) from None
                cause = describe_orchestrator_error(error, self.address, self.timeout)
            now = time.monotonic()
            lost_since = now if lost_since is None else lost_since
            if now - lost_since >= reconnect_for:
                raise StreamLost(saga_id, last, cause, reconnect_for)
            failures += 1
            delay = _backoff(failures)
            on_notice(f"connection lost ({cause}); reconnecting after seq {last} in {delay:g}s")
            await asyncio.sleep(delay)
            await self.reconnect()

    async def follow(
        self,
        saga_id: str,
        *,
        after_seq: int = 0,
        within: float | None = None,
        reconnect_for: float = WATCH_RECONNECT_SECONDS,
        on_transition: Callable[[pb.Transition], None] = _ignore,
        on_notice: Callable[[str], None] = _ignore,
    ) -> pb.Saga:
        """Ride `watch` until the saga is COMPLETED or FAILED; return it as GetSaga shows it."""
        async for response in self.watch(
            saga_id,
            after_seq=after_seq,
            within=within,
            reconnect_for=reconnect_for,
            on_notice=on_notice,
        ):
            if response.HasField("transition"):
                on_transition(response.transition)
            if response.HasField("saga"):
                return response.saga
        raise AssertionError("watch ended without the saga")  # pragma: no cover

    async def wait(self, saga_id: str, within: float) -> pb.Saga:
        """The saga once it is COMPLETED or FAILED; DeadlineExceeded after `within` seconds."""
        return await self.follow(saga_id, within=within, reconnect_for=within)

    async def wait_all(
        self, saga_ids: Iterable[str], within: float, *, streams: int = WAIT_ALL_STREAMS
    ) -> tuple[dict[str, pb.Saga], bool]:
        """Each saga once it is COMPLETED or FAILED, or as it stands after `within`
        seconds (absent if even that cannot be read), and whether all of them ended.
        At most `streams` watches are open at once."""
        deadline = time.monotonic() + within
        gate = asyncio.Semaphore(streams)
        latest: dict[str, pb.Saga] = {}

        async def settle(saga_id: str) -> bool:
            async with gate:
                try:
                    latest[saga_id] = await self.wait(saga_id, deadline - time.monotonic())
                    return True
                except (DeadlineExceeded, Unavailable):
                    pass
            with contextlib.suppress(DeadlineExceeded, Unavailable):
                latest[saga_id] = await self.get_saga(saga_id)
            return False

        ended = await asyncio.gather(*(settle(saga_id) for saga_id in saga_ids))
        return latest, all(ended)


@dataclass(frozen=True, slots=True)
class SagaHandle:
    """A started saga: its id, whether this start created it, and its status then."""

    client: SagaClient
    saga_id: str
    created: bool
    status: pb.SagaStatus

    async def get(self) -> pb.Saga:
        return await self.client.get_saga(self.saga_id)

    async def result(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (the same call as the sync client's)
        *,
        output_type: type[Message] | None = None,
    ) -> Message:
        """The saga's output once it COMPLETED, as its output message; SagaFailed once it
        FAILED; DeadlineExceeded after `timeout` seconds (None: wait, across restarts of
        the orchestrator, for as long as the watch may reconnect). The output class is
        `output_type`, else found by name among the imported protobuf modules. A saga
        type without an output returns the Saga itself."""
        reconnect_for = WATCH_RECONNECT_SECONDS if timeout is None else timeout
        saga = await self.client.follow(self.saga_id, within=timeout, reconnect_for=reconnect_for)
        return output_of(saga, output_type)


def _backoff(failures: int) -> float:
    """The pause before the next try after `failures` lost connections in a row."""
    return float(min(RECONNECT_MAX_BACKOFF, RECONNECT_FIRST_BACKOFF * 2 ** (failures - 1)))


def output_of(saga: pb.Saga, output_type: type[Message] | None = None) -> Message:
    """An ended saga's output message (the Saga itself for a type without an output);
    SagaFailed if it did not complete."""
    if saga.status != pb.SAGA_STATUS_COMPLETED:
        raise SagaFailed(saga)
    if not saga.HasField("output"):
        return saga
    return unpack_output(saga.output, output_type)


def unpack_output(packed: any_pb2.Any, output_type: type[Message] | None = None) -> Message:
    """The message in an Any: `output_type`, else the class registered under its name."""
    if output_type is None:
        try:
            descriptor = pool.Default().FindMessageTypeByName(packed.TypeName())
        except KeyError:
            raise ClientError(
                f"the saga's output is a {packed.TypeName()}; import the module that "
                "defines it, or pass output_type="
            ) from None
        output_type = message_factory.GetMessageClass(descriptor)
    message = output_type()
    if not packed.Unpack(message):
        raise ClientError(
            f"the saga's output is a {packed.TypeName()}, not {message.DESCRIPTOR.full_name}"
        )
    return message
