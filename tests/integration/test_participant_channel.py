"""The engine's participant channel against real sockets: a refused connection fails an
attempt at once (not after its deadline), a call the participant accepted keeps its
whole deadline, and a participant back on its port is reached again."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty

from orchestrator.core.definition import Call
from orchestrator.core.resolved import ResolvedCall
from orchestrator.engine.commands import MAX_RECONNECT_BACKOFF_SECONDS, ParticipantClient

pytestmark = pytest.mark.integration

PING = ResolvedCall(
    call=Call("test.Probe", "Ping", lambda ctx: Empty()),
    path="/test.Probe/Ping",
    request_type=Empty,
    response_type=Empty,
)
HOUR = 3600.0
"""An attempt deadline no test waits out: only a prompt failure ends the call."""
BOUND_SECONDS = 60.0
"""How long a test waits for what it expects before it fails."""


@contextlib.contextmanager
def refusing_port() -> Iterator[socket.socket]:
    """A port bound and never listening: connections to it are refused, and no other
    process can take it meanwhile."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    try:
        yield held
    finally:
        held.close()


async def probe_server(port: int, handler) -> grpc.aio.Server:
    """A participant answering test.Probe/Ping with `handler`, on 127.0.0.1:`port`."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Probe",
                {
                    "Ping": grpc.unary_unary_rpc_method_handler(
                        handler,
                        request_deserializer=Empty.FromString,
                        response_serializer=Empty.SerializeToString,
                    )
                },
            ),
        )
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    assert bound != 0, f"port {port} could not be bound"
    await server.start()
    return server


async def answer(request: Empty, context: grpc.aio.ServicerContext) -> Empty:
    return Empty()


async def test_a_refused_connection_fails_the_attempt_without_waiting_out_its_deadline():
    with refusing_port() as held:
        address = f"127.0.0.1:{held.getsockname()[1]}"
        client = ParticipantClient({"flight": address})
        try:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await asyncio.wait_for(client.send("flight", PING, Empty(), HOUR), BOUND_SECONDS)
        finally:
            await client.close()
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE  # transient: retried
    assert raised.value.details() == f"participant flight unreachable at {address} " + (
        "(connection refused)"
    )


async def test_a_call_the_participant_accepted_keeps_its_whole_deadline():
    """A participant slow to answer is waited for: only the deadline ends its attempt."""
    received = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: Empty, context: grpc.aio.ServicerContext) -> Empty:
        received.set()
        await release.wait()
        return Empty()

    with refusing_port() as held:
        port = held.getsockname()[1]
    server = await probe_server(port, slow)
    client = ParticipantClient({"flight": f"127.0.0.1:{port}"})
    try:
        call = asyncio.ensure_future(client.send("flight", PING, Empty(), HOUR))
        await asyncio.wait_for(received.wait(), BOUND_SECONDS)
        assert not call.done()
        release.set()
        assert await asyncio.wait_for(call, BOUND_SECONDS) == Empty()
    finally:
        await client.close()
        await server.stop(None)


async def test_a_participant_back_on_its_port_is_reached_again():
    with refusing_port() as held:
        port = held.getsockname()[1]
        client = ParticipantClient({"flight": f"127.0.0.1:{port}"})
        with pytest.raises(grpc.aio.AioRpcError):
            await client.send("flight", PING, Empty(), HOUR)
    # Back, on the same port: attempts after the channel's next reconnect succeed.
    server = await probe_server(port, answer)
    back = time.monotonic()
    try:
        for _ in range(int(BOUND_SECONDS / 0.1)):
            try:
                await client.send("flight", PING, Empty(), HOUR)
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() is grpc.StatusCode.UNAVAILABLE
                await asyncio.sleep(0.1)
        else:
            pytest.fail(f"participant back on port {port} never reached")
        print(
            f"\nreached again {time.monotonic() - back:.2f} s after it came back "
            f"(reconnect backoff capped at {MAX_RECONNECT_BACKOFF_SECONDS:g} s)"
        )
    finally:
        await client.close()
        await server.stop(None)
