"""Who is using the console, and what they may do: the pluggable authentication hook.

An `Authenticator` maps an HTTP request to an `Identity` (a name and roles), or to
None when the request carries no valid credentials (answered 401). The console
never decides identities itself, so the orchestrator's own authentication (tokens
or client certificates, with the same role names as the gRPC API) plugs in here.

Without an authenticator (laptop mode) everyone is `LAPTOP_IDENTITY`, which may act;
the operator then types a name, recorded as `operator:<name>`. With one, only the
`operator` role may act, the action is recorded under the authenticated name, and
a `reader` sees no action buttons and is refused by the server anyway.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from orchestrator.security.auth import AuthPolicy

READER = "reader"
OPERATOR = "operator"
TOKEN_COOKIE = "saga_console_token"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated console user; `authenticated` is False only in laptop mode."""

    name: str
    roles: frozenset[str]
    authenticated: bool = True
    namespaces: frozenset[str] | None = None
    """The namespaces whose sagas the user sees and acts on; None for every one."""

    @property
    def may_act(self) -> bool:
        """Operator actions (abort, retry, resolve) are for the operator role, or anyone
        when no authentication is configured."""
        return not self.authenticated or OPERATOR in self.roles


Authenticator = Callable[[web.Request], Awaitable[Identity | None]]

LAPTOP_IDENTITY = Identity("", frozenset({READER, OPERATOR}), authenticated=False)


async def laptop_mode(request: web.Request) -> Identity:
    """No authentication configured: every request may read and act."""
    return LAPTOP_IDENTITY


def presented_token(request: web.Request) -> str:
    """The bearer token of `Authorization: Bearer <token>`, else the console's cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(TOKEN_COOKIE, "")


def token_digest(token: str) -> str:
    """How tokens are kept: their SHA-256, so a leaked table reveals none."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_tokens(identities: Mapping[str, Identity]) -> Authenticator:
    """An authenticator over a table of SHA-256 token digests, compared in constant time."""
    table = tuple(identities.items())

    async def authenticate(request: web.Request) -> Identity | None:
        token = presented_token(request)
        if not token:
            return None
        digest = token_digest(token)
        found: Identity | None = None
        for known, identity in table:
            if hmac.compare_digest(known, digest):
                found = identity
        return found

    return authenticate


CONSOLE_ROLES = frozenset({"client", READER, OPERATOR})
"""Roles that may read sagas over the API, and so in the console."""


def policy_authenticator(policy: AuthPolicy) -> Authenticator:
    """The orchestrator's own callers (its `--auth-file`, re-read on SIGHUP) by bearer
    token: the console knows exactly who the gRPC API knows, with the same roles."""

    async def authenticate(request: web.Request) -> Identity | None:
        token = presented_token(request)
        caller = policy.authenticate(token, ()) if token else None
        if caller is None:
            return None
        roles = frozenset(str(role) for role in caller.roles)
        if not roles & CONSOLE_ROLES:
            return None
        return Identity(caller.name, roles, namespaces=caller.namespaces)

    return authenticate
