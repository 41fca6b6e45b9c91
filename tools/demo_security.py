"""How the demo's processes and its own calls are secured: plaintext on loopback for
`make demo`, mutual TLS on every hop with tokens and roles for `make demo-secure`.

`DemoSecurity.create(workdir)` makes a throwaway CA, a server certificate, the
orchestrator's client certificate, one for the demo's own calls, a token per role, and
the auth file the orchestrator and the participants share, all under `workdir/pki`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import grpc

from orchestrator.client import SagaClient
from orchestrator.security.auth import token_digest
from orchestrator.security.tls import ClientTls
from tools.certs import CertFiles, make_ca, new_token

ROLES = ("client", "operator", "reader", "approver")


@dataclasses.dataclass(frozen=True)
class DemoSecurity:
    """None of the fields set: plaintext, no auth."""

    ca: Path | None = None
    server: CertFiles | None = None
    orchestrator: CertFiles | None = None
    caller: CertFiles | None = None
    auth_file: Path | None = None
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def secure(self) -> bool:
        return self.ca is not None

    @classmethod
    def create(cls, workdir: Path) -> DemoSecurity:
        pki = workdir / "pki"
        authority = make_ca(pki)
        tokens = {role: new_token() for role in ROLES}
        auth_file = pki / "auth.toml"
        entries = [
            f'[[caller]]\nname = "demo-{role}"\nroles = ["{role}"]\n'
            f'token_sha256 = "{token_digest(token)}"\n'
            for role, token in tokens.items()
        ]
        entries.append(
            '[[caller]]\nname = "orchestrator"\nroles = ["orchestrator"]\n'
            'certificate = "orchestrator"\n'
        )
        auth_file.write_text("\n".join(entries))
        for role, token in tokens.items():
            path = pki / f"{role}.token"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(token + "\n")
        return cls(
            ca=authority.cert_file,
            server=authority.issue("server", pki),
            orchestrator=authority.issue("orchestrator", pki),
            caller=authority.issue("demo-caller", pki),
            auth_file=auth_file,
            tokens=tokens,
        )

    def server_args(self) -> list[str]:
        """Flags of every server: TLS, mutual TLS against the demo CA, the auth file."""
        if self.server is None or self.auth_file is None:
            return []
        return [
            "--tls-cert", str(self.server.cert),
            "--tls-key", str(self.server.key),
            "--tls-client-ca", str(self.ca),
            "--auth-file", str(self.auth_file),
        ]  # fmt: skip

    def orchestrator_args(self) -> list[str]:
        """The server flags, and how the orchestrator reaches participants."""
        if self.orchestrator is None:
            return []
        return [
            *self.server_args(),
            "--participants-tls-ca", str(self.ca),
            "--participants-tls-cert", str(self.orchestrator.cert),
            "--participants-tls-key", str(self.orchestrator.key),
        ]  # fmt: skip

    def client_tls(self) -> ClientTls | None:
        if self.caller is None:
            return None
        return ClientTls(self.ca, self.caller.cert, self.caller.key)

    def channel(self, address: str, role: str | None) -> grpc.Channel:
        """A blocking channel for the demo's own calls, as `role` (None: no token)."""
        tls = self.client_tls()
        if tls is None:
            return grpc.insecure_channel(address)
        credentials = tls.credentials()
        if role is not None:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(self.tokens[role])
            )
        return grpc.secure_channel(address, credentials)

    def cli_args(self, role: str) -> list[str]:
        """The `saga` command's flags to call as `role`: the demo's certificate, the
        role's token file."""
        if self.caller is None or self.auth_file is None:
            return []
        return [
            "--tls-ca", str(self.ca),
            "--tls-cert", str(self.caller.cert),
            "--tls-key", str(self.caller.key),
            "--token-file", str(self.auth_file.parent / f"{role}.token"),
        ]  # fmt: skip

    def saga_client(self, address: str, role: str) -> SagaClient:
        return SagaClient(address, tls=self.client_tls(), token=self.tokens.get(role))
