"""Which namespaces a request may use: the caller's, from the auth file, narrowed by the
namespace the request names.

A caller is bound to a list of namespaces, or to all of them (`*`; and everyone in
laptop mode, without an auth file). A request that names a namespace outside its
caller's is refused (NamespaceDenied, PERMISSION_DENIED) before anything is read; a saga
outside the namespaces a request may see is answered as if it did not exist
(SagaNotFound), so no answer tells a caller that another tenant's saga exists.

The gRPC server learns the caller from the auth interceptor (`current_caller()`); the
console, which calls the servicer in process, binds its signed-in user's namespaces
with `bind_namespaces` for the length of each request.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable

from orchestrator.core.errors import InvalidArgument, NamespaceDenied, SagaNotFound
from orchestrator.core.namespaces import DEFAULT_NAMESPACE, check_namespace
from orchestrator.core.records import SagaRecord
from orchestrator.security.auth import current_caller

_ALL = "*"
_bound: contextvars.ContextVar[frozenset[str] | str | None] = contextvars.ContextVar(
    "saga_bound_namespaces", default=None
)


def bind_namespaces(namespaces: Iterable[str] | None) -> None:
    """For the rest of this task (an in-process caller's request): the namespaces it may
    use, None for every one."""
    _bound.set(_ALL if namespaces is None else frozenset(namespaces))


def allowed_namespaces() -> frozenset[str] | None:
    """The namespaces the current caller may use; None for every one."""
    bound = _bound.get()
    if bound is not None:
        return None if bound == _ALL else frozenset(bound)
    caller = current_caller()
    return None if caller is None else caller.namespaces


def _named(requested: str, allowed: frozenset[str] | None) -> str:
    check_namespace(requested)
    if allowed is not None and requested not in allowed:
        raise NamespaceDenied(
            f"this caller may not use namespace {requested!r}; it may use "
            f"{', '.join(sorted(allowed))}"
        )
    return requested


def start_namespace(requested: str) -> str:
    """The namespace a new saga goes to: the one the request names, else the caller's
    only namespace, else `default` (when the caller may use it)."""
    allowed = allowed_namespaces()
    if requested:
        return _named(requested, allowed)
    if allowed is None:
        return DEFAULT_NAMESPACE
    if len(allowed) == 1:
        return next(iter(allowed))
    if DEFAULT_NAMESPACE in allowed:
        return DEFAULT_NAMESPACE
    raise InvalidArgument(
        f"namespace is required: this caller may use {', '.join(sorted(allowed))}"
    )


def read_scope(requested: str) -> tuple[str, ...] | None:
    """The namespaces a read may see: the one the request names, else every namespace of
    the caller (None: all of them)."""
    allowed = allowed_namespaces()
    if requested:
        return (_named(requested, allowed),)
    return None if allowed is None else tuple(sorted(allowed))


def visible(saga: SagaRecord | None, saga_id: str, scope: tuple[str, ...] | None) -> SagaRecord:
    """`saga` if it exists within `scope`; SagaNotFound, the same for a saga that does
    not exist and one in another namespace, otherwise."""
    if saga is None or (scope is not None and saga.namespace not in scope):
        raise SagaNotFound(f"no saga with id {saga_id}")
    return saga
