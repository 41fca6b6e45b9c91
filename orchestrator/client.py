"""A client of the orchestrator's API: one channel, a deadline on every unary call,
errors described for people, and `follow`/`wait`, which ride the WatchSaga stream to
the saga's end instead of polling GetSaga.

Used by the `saga` command, the dev tools and the tests. A watch that loses its
stream (the orchestrator restarts, a replica dies) reopens it after the last seq it
saw, with backoff and for a bounded time, so no transition is missed or repeated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from types import TracebackType

import grpc

from orchestrator.limits import Limits
from orchestrator.security.tls import ClientTls, open_channel
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

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
TERMINAL_SAGA_STATUSES = frozenset({pb.SAGA_STATUS_COMPLETED, pb.SAGA_STATUS_FAILED})
WAIT_ALL_STREAMS = 64
"""WatchSaga streams `wait_all` keeps open at once."""


class StreamLost(Exception):
    """The orchestrator stayed out of reach longer than a watch may wait for it."""

    def __init__(self, saga_id: str, last_seq: int, cause: str, waited: float) -> None:
        super().__init__(
            f"lost the stream of saga {saga_id} after seq {last_seq} for {waited:g}s ({cause})"
        )
        self.saga_id = saga_id
        self.last_seq = last_seq
        self.cause = cause
        self.waited = waited


def _has_error_info(error: grpc.RpcError) -> bool:
    """True when the orchestrator itself answered (its errors carry an ErrorInfo)."""
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:
        return False
    return any(key == "grpc-status-details-bin" for key, _ in metadata)


def _connection_cause(details: str) -> str:
    lowered = details.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if any(
        words in lowered
        for words in ("dns resolution failed", "name or service not known", "domain name not found")
    ):
        return "the host name does not resolve"
    if "socket closed" in lowered or "connection reset" in lowered:
        return "the connection was closed"
    return details or "no answer"


def describe_orchestrator_error(error: grpc.RpcError, address: str, timeout: float) -> str:
    """What went wrong calling the orchestrator, in words that say what to do.

    (Not the step record's wording of a participant's error: that is
    `orchestrator.commands.describe_rpc_error`.)
    """
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE and not _has_error_info(error):
        return (
            f"UNAVAILABLE: cannot reach the orchestrator at {address} "
            f"({_connection_cause(details)}); is `saga serve` running there? "
            "Point --address (env SAGA_ADDRESS) at it"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and not _has_error_info(error):
        return (
            f"DEADLINE_EXCEEDED: the orchestrator at {address} did not answer within "
            f"{timeout:g}s (--timeout, env SAGA_TIMEOUT); is --address (env SAGA_ADDRESS) right?"
        )
    return f"{code.name}: {details}"


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

    async def __aenter__(self) -> SagaClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def get_saga(self, saga_id: str) -> pb.Saga:
        saga: pb.Saga = await self.stub.GetSaga(
            pb.GetSagaRequest(saga_id=saga_id), timeout=self.timeout
        )
        return saga

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
        """Stream the saga's transitions after `after_seq` until it is COMPLETED or FAILED,
        and return it as GetSaga then shows it.

        A lost stream is reopened after the last seq seen, with backoff, for at most
        `reconnect_for` seconds of trying (then StreamLost); `on_notice` hears of it, and
        hears "" once the stream is back. TimeoutError when the saga has not ended within
        `within` seconds (None: no bound but the reconnect one).
        """
        deadline = None if within is None else time.monotonic() + within
        last = after_seq
        lost_since: float | None = None
        failures = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"saga {saga_id} did not finish within {within:g}s")
            try:
                if lost_since is not None:
                    await self.get_saga(saga_id)  # are we back? (under the call deadline)
                    lost_since, failures = None, 0
                    on_notice("")
                stream = self.stub.WatchSaga(
                    pb.WatchSagaRequest(saga_id=saga_id, after_seq=last), timeout=remaining
                )
                async for response in stream:
                    row = response.transition
                    if row.seq <= last:
                        continue
                    last = row.seq
                    on_transition(row)
                saga = await self.get_saga(saga_id)
                if saga.status in TERMINAL_SAGA_STATUSES:
                    return saga
                cause = "the stream ended before the saga did"
            except grpc.RpcError as error:
                if error.code() not in RECONNECT_CODES:
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"saga {saga_id} did not finish within {within:g}s"
                    ) from None
                cause = describe_orchestrator_error(error, self.address, self.timeout)
            now = time.monotonic()
            lost_since = now if lost_since is None else lost_since
            if now - lost_since >= reconnect_for:
                raise StreamLost(saga_id, last, cause, reconnect_for)
            failures += 1
            delay = min(RECONNECT_MAX_BACKOFF, RECONNECT_FIRST_BACKOFF * 2 ** (failures - 1))
            on_notice(f"connection lost ({cause}); reconnecting after seq {last} in {delay:g}s")
            await asyncio.sleep(delay)
            await self.reconnect()

    async def wait(self, saga_id: str, within: float) -> pb.Saga:
        """The saga once it is COMPLETED or FAILED; TimeoutError after `within` seconds."""
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
                except (TimeoutError, StreamLost):
                    pass
            try:
                latest[saga_id] = await self.get_saga(saga_id)
            except grpc.RpcError as error:
                if error.code() not in RECONNECT_CODES:
                    raise
            return False

        ended = await asyncio.gather(*(settle(saga_id) for saga_id in saga_ids))
        return latest, all(ended)
