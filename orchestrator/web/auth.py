"""Who is using the console, and what they may do: the pluggable authentication hook.

An `Authenticator` maps an HTTP request to an `Identity` (a name and roles), or to
None when the request carries no valid credentials (answered 401). The console
never decides identities itself, so the orchestrator's own authentication (tokens
or client certificates, with the same role names as the gRPC API) plugs in here.

Without an authenticator (laptop mode) everyone is `LAPTOP_IDENTITY`, which may act;
the operator then types a name, recorded as `operator:<name>`. With one, only the
`operator` role may act, the action is recorded under the authenticated name, and
a `reader` sees no action buttons and is refused by the server anyway.

Tokens come only from `Authorization: Bearer <token>`. The page signs in with one and
then holds a server-side session (see `sessions`), never the token itself; a
`TokenAuthenticator` also tells whether the token that opened a session is still valid.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web

from orchestrator.security.auth import AuthPolicy

READER = "reader"
OPERATOR = "operator"
APPROVER = "approver"
LEGACY_TOKEN_COOKIE = "saga_console_token"
"""The cookie earlier versions kept the raw token in: no longer read, deleted at sign-out."""


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

    @property
    def may_decide(self) -> bool:
        """Human tasks (complete, reject) are for approvers and operators, or anyone
        when no authentication is configured."""
        return not self.authenticated or bool(self.roles & {OPERATOR, APPROVER})

    @property
    def may_read_sagas(self) -> bool:
        """An approver alone sees the waiting tasks, not the sagas (as over gRPC)."""
        return bool(self.roles & READ_ROLES)


CALLER = web.RequestKey("caller", Identity)
"""Set on an API request once its caller is known (the console's guard)."""

Authenticator = Callable[[web.Request], Awaitable[Identity | None]]

LAPTOP_IDENTITY = Identity("", frozenset({READER, OPERATOR}), authenticated=False)


async def laptop_mode(request: web.Request) -> Identity:
    """No authentication configured: every request may read and act."""
    return LAPTOP_IDENTITY


def bearer_token(request: web.Request) -> str:
    """The token of `Authorization: Bearer <token>`, "" without one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return ""


def token_digest(token: str) -> str:
    """How tokens are kept: their SHA-256, so a leaked table reveals none."""
    return hashlib.sha256(token.encode()).hexdigest()


def _find_digest(digest: str, table: Iterable[tuple[str, Identity | None]]) -> Identity | None:
    """The identity filed under `digest`, every entry compared in constant time."""
    found: Identity | None = None
    for known, identity in table:
        if hmac.compare_digest(known, digest):
            found = identity
    return found


@dataclass(frozen=True)
class TokenAuthenticator:
    """An authenticator by bearer token: `identity_of` maps a token's SHA-256 to who
    holds it now (None when no caller does), which also re-checks a session's token."""

    identity_of: Callable[[str], Identity | None]

    async def __call__(self, request: web.Request) -> Identity | None:
        token = bearer_token(request)
        return self.identity_of(token_digest(token)) if token else None


def bearer_tokens(identities: Mapping[str, Identity]) -> TokenAuthenticator:
    """An authenticator over a table of SHA-256 token digests, compared in constant time."""
    table = tuple(identities.items())
    return TokenAuthenticator(lambda digest: _find_digest(digest, table))


READ_ROLES = frozenset({"client", READER, OPERATOR})
"""Roles that may read sagas over the API, and so in the console."""
CONSOLE_ROLES = READ_ROLES | {APPROVER}
"""Roles the console lets in: the readers, and approvers for their Tasks page."""


def policy_authenticator(policy: AuthPolicy) -> TokenAuthenticator:
    """The orchestrator's own callers (its `--auth-file`, re-read on SIGHUP) by bearer
    token: the console knows exactly who the gRPC API knows, with the same roles, and
    a session whose token left the file ends at its next request."""

    def identity_of(digest: str) -> Identity | None:
        callers = policy.callers.by_token.items()
        table = (
            (known, _console_identity(caller.name, caller.roles, caller.namespaces))
            for known, caller in callers
        )
        return _find_digest(digest, table)

    return TokenAuthenticator(identity_of)


def _console_identity(
    name: str, caller_roles: Iterable[object], namespaces: frozenset[str] | None = None
) -> Identity | None:
    roles = frozenset(str(role) for role in caller_roles)
    return Identity(name, roles, namespaces=namespaces) if roles & CONSOLE_ROLES else None
