"""A participant's server closes connections that never finish their handshake, as the
orchestrator's does: silent or slow connections cannot pile up (slowloris)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from participants.kit.server import create_server

EOF_TIMEOUT_S = 30.0
"""Generous: the server here closes after 1 s; without a bound gRPC waits 120 s."""


def _closed_by_server(connection: socket.socket) -> bool:
    """Read until the server closes (True) or EOF_TIMEOUT_S passes (False)."""
    connection.settimeout(EOF_TIMEOUT_S)
    try:
        while connection.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("opening", [b"", b"PRI * HTTP/2.0\r\n"], ids=["silent", "half-preface"])
async def test_a_connection_that_never_finishes_its_handshake_is_closed(opening: bytes):
    server, port = await create_server([], handshake_timeout=1.0)
    await server.start()
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            connection.sendall(opening)
            closed = await asyncio.to_thread(_closed_by_server, connection)
        finally:
            connection.close()
    finally:
        await server.stop(None)
    assert closed, f"the participant's server kept the connection open {EOF_TIMEOUT_S:g} s"
