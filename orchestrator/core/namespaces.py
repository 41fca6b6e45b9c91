"""Namespaces: which tenant a saga belongs to, and how its keys are kept apart.

Every saga belongs to one namespace (`default` unless it was started in another).
Idempotency keys and semantic lock keys are unique per namespace: the store keeps
them qualified, `<namespace>/<key>`, so one column's unique index (and each lock
key's primary key, advisory lock and release notification) separates tenants without
a second key column. A namespace name holds no "/", so the first "/" of a stored key
ends its namespace. Pure: no I/O.
"""

from __future__ import annotations

import re

from orchestrator.core.errors import InvalidArgument

DEFAULT_NAMESPACE = "default"
"""Where a saga goes when nobody names a namespace; every saga stored before
namespaces existed is here (migration 0007)."""

NAMESPACE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
"""A namespace name: lowercase letters, digits and "-", 1 to 63 characters, not
starting with "-" (a DNS label's alphabet, so it is safe in URLs, logs and keys)."""

SEPARATOR = "/"


def check_namespace(value: str, field: str = "namespace") -> str:
    """`value` if it is a valid namespace name, else InvalidArgument naming the rule."""
    if not NAMESPACE_PATTERN.fullmatch(value):
        raise InvalidArgument(
            f"{field} must be 1 to 63 lowercase letters, digits or '-', starting with a "
            f"letter or digit, got {value[:80]!r}"
        )
    return value


def qualified(namespace: str, key: str) -> str:
    """The key as the store keeps it: unique within `namespace` only."""
    return f"{namespace}{SEPARATOR}{key}"


def qualified_or_none(namespace: str, key: str | None) -> str | None:
    return None if key is None else qualified(namespace, key)


def unqualified(stored: str, namespace: str) -> str:
    """The key a client gave, from the key as the store keeps it for `namespace`."""
    return stored.removeprefix(f"{namespace}{SEPARATOR}")
