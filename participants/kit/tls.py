"""TLS on a gRPC server, for a participant and the orchestrator alike: certificates read
into credentials, and the listener bound with or without them.

A server given a certificate and key speaks TLS; given a client CA too, it requires
every client to present a certificate signed by that CA (refused in the handshake
otherwise). Without them it speaks plaintext, which is for local development: a
plaintext listener on anything but loopback logs one WARNING. The kit owns these
pieces so that a participant needs nothing of the orchestrator; the orchestrator
imports them from here (`orchestrator.security.tls`).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

logger = logging.getLogger(__name__)

AUTHORIZATION_HEADER = "authorization"
BEARER_PREFIX = "Bearer "


class SecurityConfigError(ValueError):
    """A TLS flag, certificate or auth file that cannot be used: raised at start-up (or
    when the auth file is re-read), never in answer to a call."""


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a certificate or key file; SecurityConfigError naming it if unreadable."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise SecurityConfigError(f"cannot read the {what} {path}: {error.strerror}") from None


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate and key, and the CA its clients' certificates must chain to."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for `add_secure_port`; mutual TLS when `client_ca` is set."""
        return grpc.ssl_server_credentials(
            [(read_pem(self.key, "TLS key"), read_pem(self.cert, "TLS certificate"))],
            root_certificates=(
                None if self.client_ca is None else read_pem(self.client_ca, "client CA")
            ),
            require_client_auth=self.client_ca is not None,
        )


def server_tls(cert: str | None, key: str | None, client_ca: str | None) -> ServerTls | None:
    """The three server flags as one value; None (plaintext) when none is given."""
    if not cert and not key:
        if client_ca:
            raise SecurityConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not cert or not key:
        raise SecurityConfigError("TLS needs both --tls-cert and --tls-key")
    return ServerTls(Path(cert), Path(key), Path(client_ca) if client_ca else None)


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
