"""TLS and mutual TLS for every hop: the server side is the participant kit's
(`participants.kit.tls`, re-exported here), the client side is the orchestrator's own:
client credentials, and channels that carry a bearer token.

A channel given a CA verifies the server with it; given a certificate and key too, it
presents them. Without any of these it speaks plaintext, which is for local development.
The client side's mistakes are the orchestrator's `ConfigurationError`, as before; the
server side's are the kit's `SecurityConfigError` (a ValueError).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from orchestrator.core.errors import ConfigurationError
from participants.kit.tls import (
    AUTHORIZATION_HEADER,
    BEARER_PREFIX,
    SecurityConfigError,
    ServerTls,
    add_listener,
    is_loopback,
    read_pem,
    server_tls,
)

__all__ = [
    "AUTHORIZATION_HEADER",
    "BEARER_PREFIX",
    "ClientTls",
    "SecurityConfigError",
    "ServerTls",
    "add_listener",
    "client_tls",
    "is_loopback",
    "open_channel",
    "server_tls",
]


@dataclass(frozen=True)
class ClientTls:
    """The CA a client verifies the server with, and its own certificate for mutual TLS."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigurationError("a client certificate needs its key, and a key its cert")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=None if self.ca is None else _read(self.ca, "TLS CA"),
            private_key=None if self.key is None else _read(self.key, "TLS key"),
            certificate_chain=None if self.cert is None else _read(self.cert, "TLS certificate"),
        )


def _read(path: Path, what: str) -> bytes:
    """The kit's reader, its error in the orchestrator's terms (a SagaError)."""
    try:
        return read_pem(path, what)
    except SecurityConfigError as error:
        raise ConfigurationError(str(error)) from None


def client_tls(ca: str | None, cert: str | None, key: str | None) -> ClientTls | None:
    """The three client flags as one value; None (plaintext) when none is given."""
    if not ca and not cert and not key:
        return None
    return ClientTls(
        Path(ca) if ca else None, Path(cert) if cert else None, Path(key) if key else None
    )


def _with_token(details: Any, header: tuple[str, str]) -> Any:
    return details._replace(metadata=[*(details.metadata or ()), header])


# grpc.aio files each interceptor under one call type only, so one class per type.
class _UnaryTokenInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` to every unary call on the channel."""

    def __init__(self, header: tuple[str, str]) -> None:
        self._header = header

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._header), request)


class _StreamTokenInterceptor(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` to every server-streaming call."""

    def __init__(self, header: tuple[str, str]) -> None:
        self._header = header

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._header), request)


def open_channel(
    address: str,
    tls: ClientTls | None = None,
    token: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel to `address`: TLS when `tls` is given, the bearer token on every call."""
    interceptors: list[Any] | None = None
    if token:
        header = (AUTHORIZATION_HEADER, BEARER_PREFIX + token)
        interceptors = [_UnaryTokenInterceptor(header), _StreamTokenInterceptor(header)]
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(
        address, tls.credentials(), options=options, interceptors=interceptors
    )
