"""Outbound typed gRPC commands to participants, and how their errors are read.

One channel per participant address for the life of the process. A failed
command's gRPC status is handed to the core's rule (`classify_failure` in
orchestrator/core/command_failures.py) by its code's name; which way the saga
goes from there is the machine's decision, not this module's.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf.message import Message

from orchestrator.core.command_failures import classify_failure
from orchestrator.core.errors import ConfigurationError
from orchestrator.core.machine import ErrorKind
from orchestrator.core.payload import storable_text
from orchestrator.core.resolved import ResolvedCall
from orchestrator.security.tls import ClientTls, open_channel
from orchestrator.telemetry.tracing import outbound_metadata

CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.min_reconnect_backoff_ms", 5000),
)
"""How a participant's channel reconnects. Commands do not wait for a channel to become
ready, so a refused connection fails its attempt at once; in between, gRPC retries the
connection on its own, 0.1 s after a failure, growing to at most 2 s (+/- 20 % jitter;
gRPC's default grows to 120 s), so a participant that comes back is reached within
about 2 s, by the next attempt or an operator's retry. `min_reconnect_backoff_ms` is,
despite its name, the least time one connection attempt (TCP and TLS handshake) is
given: short, it would fail a distant participant's handshake on every attempt, now
that no command waits for a connection. A command's own deadline still bounds a host
that never answers."""

MAX_RECONNECT_BACKOFF_SECONDS = dict(CHANNEL_OPTIONS)["grpc.max_reconnect_backoff_ms"] / 1000
"""The longest a recovered participant can stay unreached (the cap above), in seconds."""

__all__ = ["ErrorKind", "ParticipantClient", "classify", "describe_rpc_error"]


def classify(code: grpc.StatusCode, retry_codes: frozenset[str] = frozenset()) -> ErrorKind:
    """Which way a failed command with gRPC status `code` takes the saga (the core's
    rule, by the code's name); `retry_codes` names further transient codes."""
    return classify_failure(code.name, retry_codes)


def describe_rpc_error(error: grpc.aio.AioRpcError) -> str:
    """A one-line error for the step record: code name and the participant's message,
    with any U+0000 or surrogate it holds replaced (the step record must be storable, or
    the saga could never record the failure)."""
    return f"{error.code().name}: {storable_text(error.details() or 'no details')}"


class ParticipantClient:
    """Sends commands to participants by name, over one reused channel per address,
    with TLS when `tls` is given and the bearer `token` on every command when set."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        *,
        tls: ClientTls | None = None,
        token: str | None = None,
    ) -> None:
        self._addresses = dict(addresses)
        self._tls = tls
        self._token = token
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._methods: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable] = {}

    def check_addresses(self, participants: frozenset[str]) -> None:
        """Refuse to run when a definition addresses a participant with no address."""
        missing = sorted(participants - set(self._addresses))
        if missing:
            raise ConfigurationError(
                "no address configured for participant(s) "
                + ", ".join(missing)
                + " (set --participant NAME=HOST:PORT or SAGA_PARTICIPANTS)"
            )

    def _channel(self, participant: str) -> grpc.aio.Channel:
        channel = self._channels.get(participant)
        if channel is None:
            channel = open_channel(
                self._addresses[participant], self._tls, self._token, CHANNEL_OPTIONS
            )
            self._channels[participant] = channel
        return channel

    def describe_failure(self, participant: str, error: grpc.aio.AioRpcError) -> str:
        """The step record's line for a failed attempt. A deadline spent waiting for a
        connection (the channel never got ready) names the participant and its address
        instead of gRPC's bare "Deadline Exceeded"."""
        if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
            channel = self._channels.get(participant)
            state = channel.get_state() if channel is not None else None
            if state in (grpc.ChannelConnectivity.CONNECTING, grpc.ChannelConnectivity.IDLE):
                return (
                    f"DEADLINE_EXCEEDED: participant {participant} at "
                    f"{self._addresses[participant]} did not accept a connection in time"
                )
        return describe_rpc_error(error)

    async def send(
        self, participant: str, call: ResolvedCall, request: Message, deadline_seconds: float
    ) -> Message:
        """One attempt with a deadline; raises grpc.aio.AioRpcError on any failure."""
        method = self._methods.get((participant, call.path))
        if method is None:
            method = self._channel(participant).unary_unary(
                call.path,
                request_serializer=call.request_type.SerializeToString,
                response_deserializer=call.response_type.FromString,
            )
            self._methods[(participant, call.path)] = method
        # No wait_for_ready: a channel that cannot connect (refused, a failed TLS
        # handshake) fails the attempt as soon as its connection attempt does, instead
        # of holding it for the whole deadline; the retry policy decides what next. A
        # participant that accepted the call still has the full deadline to answer. The
        # metadata carries the step's span (if any), so the participant's span joins the
        # saga's trace.
        try:
            reply: Message = await method(
                request,
                timeout=deadline_seconds,
                wait_for_ready=False,
                metadata=outbound_metadata(),
            )
        except grpc.aio.AioRpcError as error:
            raise self._never_connected(participant, error) from None
        return reply

    def _never_connected(
        self, participant: str, error: grpc.aio.AioRpcError
    ) -> grpc.aio.AioRpcError:
        """An attempt that failed because the channel could not connect (refused, or a
        failed TLS handshake) names the participant and its address instead of gRPC's
        "failed to connect to all addresses". Still UNAVAILABLE (transient, retried with
        the same key), so only the step's error text changes."""
        channel = self._channels.get(participant)
        if (
            error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            or channel is None
            or channel.get_state() is not grpc.ChannelConnectivity.TRANSIENT_FAILURE
        ):
            return error
        return grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details=f"participant {participant} unreachable at {self._addresses[participant]} "
            + (
                "(connection refused)"
                if self._tls is None
                else "(connection refused or TLS handshake failed)"
            ),
        )

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._methods.clear()
