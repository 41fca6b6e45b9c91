"""The client's channel (`SagaChannel`) and what its reconnecting calls share: the
deadlines, the message sizes, which failures mean "the server is out of reach" (try
again, with backoff), and the reflection channel that reads message types the process
never imported."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf import descriptor_pool as pool
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from orchestrator.client.errors import client_error
from orchestrator.core.limits import Limits
from orchestrator.security.tls import ClientTls, open_channel
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


class Reconnection:
    """The clock of a call that outlives a lost orchestrator (`execute`, `watch`): its
    deadline (`within` seconds from now; None for none), and since when the server has
    been out of reach, given up after `reconnect_for` seconds; the pause between tries
    doubles, from RECONNECT_FIRST_BACKOFF up to RECONNECT_MAX_BACKOFF."""

    def __init__(self, within: float | None, reconnect_for: float) -> None:
        self.deadline = None if within is None else time.monotonic() + within
        self.reconnect_for = reconnect_for
        self.lost_since: float | None = None
        self.failures = 0

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline); 0 or less once it passed."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def back(self) -> None:
        """The server answered again: the next loss starts a new count."""
        self.lost_since, self.failures = None, 0

    def next_pause(self) -> float | None:
        """Count one more lost try; the pause before the next, or None when the server
        has now been out of reach for `reconnect_for` seconds (give up)."""
        now = time.monotonic()
        self.lost_since = now if self.lost_since is None else self.lost_since
        if now - self.lost_since >= self.reconnect_for:
            return None
        self.failures += 1
        return float(min(RECONNECT_MAX_BACKOFF, RECONNECT_FIRST_BACKOFF * 2 ** (self.failures - 1)))


def _reflection_channel(address: str, tls: ClientTls | None) -> grpc.Channel:
    """A blocking channel to the server's reflection service, which is open to every
    caller when on: TLS when the client speaks it, but no token."""
    if tls is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, tls.credentials())


RequestT = TypeVar("RequestT", bound=Message)


def in_namespace(request: RequestT, namespace: str | None) -> RequestT:
    """`request` with `namespace` in every namespace field left empty (a StartSagas
    batch's items, an ExecuteSaga's start, a bulk action's filter); the request itself,
    changed in place."""
    if not namespace:
        return request
    message: Any = request
    fields = request.DESCRIPTOR.fields_by_name
    if "namespace" in fields and not message.namespace:
        message.namespace = namespace
    if "start" in fields:
        in_namespace(message.start, namespace)
    if "filter" in fields:  # a bulk action's BulkSagaFilter
        in_namespace(message.filter, namespace)
    if "requests" in fields:
        for item in message.requests:
            in_namespace(item, namespace)
    return request


class SagaChannel:
    """One grpc.aio channel to the orchestrator (or a stub the caller owns); with `tls`
    it speaks TLS (mutual when `tls` has a certificate), with `token` every call carries
    `authorization: Bearer <token>`. Each unary call goes through `_call`, under the
    client's deadline, its failure mapped to a ClientError. With `namespace`, every
    request that leaves its namespace empty names this one (the server otherwise picks
    the caller's only namespace, or `default`, and reads span all the caller's)."""

    def __init__(
        self,
        address: str,
        timeout: float = CLIENT_TIMEOUT_SECONDS,
        *,
        stub: pb_grpc.SagaOrchestratorStub | None = None,
        tls: ClientTls | None = None,
        token: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.namespace = namespace or None
        self._tls = tls
        self._token = token
        self._channel = (
            None if stub is not None else open_channel(address, tls, token, CHANNEL_OPTIONS)
        )
        self.stub = stub or pb_grpc.SagaOrchestratorStub(self._channel)
        self._reflection: grpc.Channel | None = None
        self._types: pool.DescriptorPool | None = None

    @classmethod
    def over(
        cls, stub: pb_grpc.SagaOrchestratorStub, timeout: float = CLIENT_TIMEOUT_SECONDS
    ) -> Self:
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
            self._reflection = _reflection_channel(self.address, self._tls)
            self._types = pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self._reflection))
        return self._types

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def channel(self) -> grpc.aio.Channel | None:
        """The client's own channel (for the other services the server offers, such as
        SagaTasks); None for a client on a caller's stub."""
        return self._channel

    async def _call(self, method: str, request: Message) -> Any:
        """One unary call under the client's deadline; a failure becomes a ClientError."""
        try:
            scoped = in_namespace(request, self.namespace)
            return await getattr(self.stub, method)(scoped, timeout=self.timeout)
        except grpc.RpcError as error:
            raise client_error(error, self.address, self.timeout) from None
