"""Who is calling, and may they: the auth file, the roles, and the server interceptor.

Shared by participants and the orchestrator: the kit owns it so that a participant
needs nothing of the orchestrator; the orchestrator adds its own RPCs' rules
(`orchestrator.security.auth`).

The auth file (TOML) lists callers; each has a name, roles, and how it proves who it
is: the SHA-256 of a bearer token (`authorization: Bearer <token>` in the metadata,
compared in constant time) and/or the identity in its client certificate (subject CN
or a SAN, checked by the TLS handshake)::

    [[caller]]
    name = "alice"
    roles = ["operator"]
    token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

    namespaces = "*"

    [[caller]]
    name = "billing"
    roles = ["client"]
    token_sha256 = "..."
    namespaces = ["billing"]

    [[caller]]
    name = "orchestrator"
    roles = ["orchestrator"]
    certificate = "orchestrator.saga.internal"

`namespaces` binds an orchestrator caller to the namespaces whose sagas it may start,
read and operate on: a list of names, or "*" for every namespace (operators and
readers that span all); without it, ["default"]. Participants ignore it.

Every RPC has a rule naming the roles that may call it; an RPC without a rule is
refused to everyone (deny by default). Health checks and, when enabled, reflection
are open. No credentials, or a token or certificate the file does not know:
UNAUTHENTICATED. Known, without the role: PERMISSION_DENIED. Each refusal is logged
with the caller's name and the RPC, never with the token.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import hashlib
import hmac
import logging
import re
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from participants.kit.tls import AUTHORIZATION_HEADER, BEARER_PREFIX, SecurityConfigError

logger = logging.getLogger(__name__)


class Role(enum.StrEnum):
    """What a caller may do; a caller may hold several."""

    CLIENT = "client"
    """Start sagas and read them."""
    OPERATOR = "operator"
    """Abort, retry and resolve sagas (every administrative RPC), and read them."""
    READER = "reader"
    """The read RPCs only: sagas, their history, participants' ledgers and inventories."""
    ORCHESTRATOR = "orchestrator"
    """Send commands and compensations to participants."""
    PARTICIPANT = "participant"
    """Complete, fail and heartbeat the asynchronous steps it accepted (SagaCallbacks)."""
    APPROVER = "approver"
    """List the steps people decide (human tasks) and complete or reject them (SagaTasks)."""


PARTICIPANT_READ_ROLES = frozenset({Role.READER, Role.OPERATOR})
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
REFLECTION_SERVICES = frozenset(
    {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)
COMMAND_CONTEXT = "saga.participants.common.v1.CommandContext"


def participant_rules(services: Iterable[ServiceDescriptor]) -> dict[str, frozenset[Role]]:
    """A participant's rules by full method path: a command (its request carries a
    CommandContext) is the orchestrator's alone; any other RPC is a read."""
    rules: dict[str, frozenset[Role]] = {}
    for service in services:
        for method in service.methods:
            fields = method.input_type.fields_by_name
            is_command = any(
                field.message_type is not None and field.message_type.full_name == COMMAND_CONTEXT
                for field in fields.values()
            )
            rules[f"/{service.full_name}/{method.name}"] = (
                frozenset({Role.ORCHESTRATOR}) if is_command else PARTICIPANT_READ_ROLES
            )
    return rules


DEFAULT_NAMESPACES = frozenset({"default"})
NAMESPACE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
"""A namespace name, as the orchestrator checks it (`orchestrator.core.namespaces`; the
kit stands alone, so the rule is stated here too)."""


@dataclasses.dataclass(frozen=True)
class Caller:
    """An authenticated caller: its name (for logs and the audit trail), roles, and the
    namespaces it may use (None: every namespace, "*" in the auth file)."""

    name: str
    roles: frozenset[Role]
    namespaces: frozenset[str] | None = DEFAULT_NAMESPACES

    def may_use(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces


_current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "saga_caller", default=None
)


def current_caller() -> Caller | None:
    """The caller of the RPC being handled; None when auth is off."""
    return _current_caller.get()


def token_digest(token: str) -> str:
    """What the auth file stores for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class AuthFile:
    """The callers of one auth file, indexed by token digest and certificate identity."""

    by_token: Mapping[str, Caller]
    by_certificate: Mapping[str, Caller]

    def caller_with_token(self, token: str) -> Caller | None:
        """The caller holding `token`; every digest is compared in constant time."""
        digest = token_digest(token).encode()
        found = None
        for known, caller in self.by_token.items():
            if hmac.compare_digest(digest, known.encode()):
                found = caller
        return found

    def caller_with_certificate(self, identities: Iterable[str]) -> Caller | None:
        for identity in identities:
            caller = self.by_certificate.get(identity)
            if caller is not None:
                return caller
        return None


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_CALLER_KEYS = frozenset({"name", "roles", "token_sha256", "certificate", "namespaces"})


def _line_of(text: str, entry: int, key: str | None) -> int:
    """The line of the `entry`-th [[caller]] table (or of its `key`), 1-based."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines) if re.match(r"\s*\[\[\s*caller\s*\]\]", line)]
    if entry >= len(headers):
        return 1
    start = headers[entry]
    end = headers[entry + 1] if entry + 1 < len(headers) else len(lines)
    if key is not None:
        for n in range(start, end):
            if re.match(rf"\s*{re.escape(key)}\s*=", lines[n]):
                return n + 1
    return start + 1


def parse_auth_file(text: str, source: str) -> AuthFile:
    """The callers in `text`; SecurityConfigError naming the line of the first mistake."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SecurityConfigError(f"{source}: not valid TOML: {error}") from None
    unknown = sorted(set(document) - {"caller"})
    if unknown:
        raise SecurityConfigError(f"{source}: unknown table {unknown[0]!r}; expected [[caller]]")
    entries = document.get("caller", [])
    if not isinstance(entries, list):
        raise SecurityConfigError(f"{source}: `caller` must be an array of tables, [[caller]]")
    by_token: dict[str, Caller] = {}
    by_certificate: dict[str, Caller] = {}
    names: set[str] = set()
    for index, entry in enumerate(entries):

        def fail(key: str | None, message: str, index: int = index) -> SecurityConfigError:
            return SecurityConfigError(f"{source}, line {_line_of(text, index, key)}: {message}")

        extra = sorted(set(entry) - _CALLER_KEYS)
        if extra:
            raise fail(extra[0], f"unknown key {extra[0]!r}; known: {', '.join(_CALLER_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise fail("name", "every caller needs a name")
        if name in names:
            raise fail("name", f"caller {name!r} is listed twice")
        names.add(name)
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles:
            raise fail("roles", f"caller {name!r} needs roles, a list of {_role_names()}")
        try:
            role_set = frozenset(Role(role) for role in roles)
        except ValueError:
            raise fail("roles", f"caller {name!r}: roles are {_role_names()}") from None
        namespaces = _namespaces(entry.get("namespaces", sorted(DEFAULT_NAMESPACES)))
        if isinstance(namespaces, str):
            raise fail("namespaces", f"caller {name!r}: {namespaces}")
        caller = Caller(name, role_set, namespaces)
        digest = entry.get("token_sha256")
        certificate = entry.get("certificate")
        if digest is None and certificate is None:
            raise fail(None, f"caller {name!r} needs token_sha256 or certificate (or both)")
        if digest is not None:
            if not isinstance(digest, str) or not _HEX_DIGEST.fullmatch(digest):
                raise fail("token_sha256", "token_sha256 must be 64 lowercase hex digits")
            by_token[digest] = caller
        if certificate is not None:
            if not isinstance(certificate, str) or not certificate:
                raise fail("certificate", "certificate must be a CN or SAN, as text")
            by_certificate[certificate] = caller
    return AuthFile(by_token, by_certificate)


def _namespaces(value: object) -> frozenset[str] | str | None:
    """The namespaces of an auth file entry (None for "*"), or what is wrong with them."""
    if value == "*" or value == ["*"]:
        return None
    if not isinstance(value, list) or not value:
        return 'namespaces must be "*" or a non-empty list of namespace names'
    for namespace in value:
        if not isinstance(namespace, str) or not NAMESPACE_NAME.fullmatch(namespace):
            return (
                f"namespace {namespace!r} must be 1 to 63 lowercase letters, digits or '-',"
                " starting with a letter or digit"
            )
    return frozenset(value)


def _role_names() -> str:
    return ", ".join(role.value for role in Role)


def load_auth_file(path: Path) -> AuthFile:
    try:
        text = path.read_text()
    except OSError as error:
        raise SecurityConfigError(f"cannot read the auth file {path}: {error.strerror}") from None
    return parse_auth_file(text, str(path))


class AuthPolicy:
    """The rules and the current auth file; `reload` re-reads it (on SIGHUP)."""

    def __init__(
        self, path: Path, rules: Mapping[str, frozenset[Role]], *, reflection: bool = True
    ) -> None:
        self.path = path
        self.rules = dict(rules)
        self.open_services = OPEN_SERVICES | (REFLECTION_SERVICES if reflection else frozenset())
        self.callers = load_auth_file(path)

    def reload(self) -> bool:
        """Re-read the file; a broken file is logged and the callers in force are kept."""
        try:
            self.callers = load_auth_file(self.path)
        except SecurityConfigError as error:
            logger.error("auth file not reloaded, the previous one stays in force: %s", error)
            return False
        logger.info("auth file %s reloaded", self.path)
        return True

    def is_open(self, method: str) -> bool:
        return method.split("/")[1] in self.open_services

    def authenticate(self, token: str | None, identities: Iterable[str]) -> Caller | None:
        """The caller proven by the token, else by the certificate; None if neither."""
        if token is not None:
            return self.callers.caller_with_token(token)
        return self.callers.caller_with_certificate(identities)

    def may_call(self, caller: Caller, method: str) -> bool:
        return bool(caller.roles & self.rules.get(method, frozenset()))


def _bearer_token(metadata: Iterable[tuple[str, Any]]) -> str | None:
    """The token of `authorization: Bearer <token>`; "" for a malformed header."""
    for key, value in metadata:
        if key == AUTHORIZATION_HEADER:
            text = value.decode() if isinstance(value, bytes) else str(value)
            return text[len(BEARER_PREFIX) :].strip() if text.startswith(BEARER_PREFIX) else ""
    return None


def certificate_identities(context: grpc.aio.ServicerContext[Any, Any]) -> list[str]:
    """The peer certificate's SANs and subject CN (empty without mutual TLS)."""
    auth = context.auth_context()
    values = [
        *auth.get("x509_subject_alternative_name", ()),
        *auth.get("x509_common_name", ()),
    ]
    return [value.decode() if isinstance(value, bytes) else str(value) for value in values]


Behavior = Callable[..., Any]


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call the policy does not allow, before the servicer sees it, and
    makes the caller known to the servicer through `current_caller()`."""

    def __init__(self, policy: AuthPolicy) -> None:
        self._policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or self._policy.is_open(method):
            return handler
        token = _bearer_token(details.invocation_metadata or ())
        wrap = {
            "unary_unary": (self._unary, grpc.unary_unary_rpc_method_handler),
            "stream_unary": (self._unary, grpc.stream_unary_rpc_method_handler),
            "unary_stream": (self._stream, grpc.unary_stream_rpc_method_handler),
            "stream_stream": (self._stream, grpc.stream_stream_rpc_method_handler),
        }
        for kind, (checked, make_handler) in wrap.items():
            behavior = getattr(handler, kind)
            if behavior is not None:
                return make_handler(
                    checked(behavior, method, token),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        raise AssertionError(f"{method}: a handler without a behavior")  # pragma: no cover

    # `request` is the request, or the request iterator of a client-streaming RPC.
    def _unary(self, behavior: Behavior, method: str, token: str | None) -> Behavior:
        async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            _current_caller.set(await self._admit(context, method, token))
            return await behavior(request, context)

        return checked

    def _stream(self, behavior: Behavior, method: str, token: str | None) -> Behavior:
        async def checked(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            _current_caller.set(await self._admit(context, method, token))
            async for response in behavior(request, context):
                yield response

        return checked

    async def _admit(
        self, context: grpc.aio.ServicerContext[Any, Any], method: str, token: str | None
    ) -> Caller:
        """The caller, or the call aborted with UNAUTHENTICATED or PERMISSION_DENIED."""
        identities = certificate_identities(context)
        caller = self._policy.authenticate(token, identities)
        if caller is None:
            proof = {None: "no credentials", "": "a malformed authorization header"}.get(
                token, "an unknown token"
            )
            if token is None and identities:
                proof = "an unknown client certificate"
            logger.warning("refused %s from an unauthenticated caller (%s)", method, proof)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{method}: {proof}")
            raise AssertionError("abort raises")  # pragma: no cover
        if not self._policy.may_call(caller, method):
            logger.warning(
                "refused %s to %s (roles %s)", method, caller.name, ", ".join(sorted(caller.roles))
            )
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{caller.name} may not call {method}",
            )
        return caller
