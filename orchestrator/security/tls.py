"""TLS and mutual TLS for every hop: server credentials, client channels, listeners.

A server given a certificate and key speaks TLS; given a client CA too, it requires
every client to present a certificate signed by that CA (refused in the handshake
otherwise). A channel given a CA verifies the server with it; given a certificate and
key too, it presents them. Without any of these, both sides speak plaintext, which is
for local development: a plaintext listener on anything but loopback logs one WARNING.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from orchestrator.core.errors import ConfigurationError

logger = logging.getLogger(__name__)

AUTHORIZATION_HEADER = "authorization"
BEARER_PREFIX = "Bearer "


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read the {what} {path}: {error.strerror}") from None


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate and key, and the CA its clients' certificates must chain to."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for `add_secure_port`; mutual TLS when `client_ca` is set."""
        return grpc.ssl_server_credentials(
            [(_read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))],
            root_certificates=(
                None if self.client_ca is None else _read(self.client_ca, "client CA")
            ),
            require_client_auth=self.client_ca is not None,
        )


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


def server_tls(cert: str | None, key: str | None, client_ca: str | None) -> ServerTls | None:
    """The three server flags as one value; None (plaintext) when none is given."""
    if not cert and not key:
        if client_ca:
            raise ConfigurationError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not cert or not key:
        raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
    return ServerTls(Path(cert), Path(key), Path(client_ca) if client_ca else None)


def client_tls(ca: str | None, cert: str | None, key: str | None) -> ClientTls | None:
    """The three client flags as one value; None (plaintext) when none is given."""
    if not ca and not cert and not key:
        return None
    return ClientTls(
        Path(ca) if ca else None, Path(cert) if cert else None, Path(key) if key else None
    )


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (brackets allowed)."""
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def add_listener(server: grpc.aio.Server, listen: str, tls: ServerTls | None) -> int:
    """Bind `listen` with TLS or in plaintext; the bound port. OSError if it cannot."""
    if tls is None:
        port = server.add_insecure_port(listen)
        host = listen.rsplit(":", 1)[0]
        if not is_loopback(host):
            logger.warning(
                "listening in PLAINTEXT on %s: anyone on the network can read and forge "
                "calls; give --tls-cert and --tls-key (and --tls-client-ca for mutual TLS)",
                listen,
            )
    else:
        port = server.add_secure_port(listen, tls.credentials())
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return int(port)


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
