"""Completion tokens of asynchronous steps: their shape, and the digest the store keeps.

A token names its saga and step (so a completion finds the saga without a search)
and carries 32 random bytes the engine draws for each command it sends; the store
keeps only the token's sha256, and a completion is checked against it in constant
time. Nothing here draws randomness or does I/O: the engine makes the secret part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

TOKEN_VERSION = "ct1"
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True, slots=True)
class TokenAddress:
    """Where a token claims to belong; only its digest proves it does."""

    saga_id: str
    step_index: int


def make_token(saga_id: str, step_index: int, secret: str) -> str:
    """The token sent with one command of step `step_index` of a saga."""
    saga = base64.urlsafe_b64encode(saga_id.encode()).decode().rstrip("=")
    return f"{TOKEN_VERSION}.{saga}.{step_index}.{secret}"


def token_address(token: str) -> TokenAddress | None:
    """The saga and step a token names; None for anything not shaped like a token."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or not parts[2].isdigit() or not parts[3]:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        saga_id = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return TokenAddress(saga_id, int(parts[2])) if saga_id else None


def token_digest(token: str) -> str:
    """The sha256 hex digest stored for a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def digest_matches(digest: str, stored: Iterable[str]) -> bool:
    """Whether `digest` is one of the stored digests, compared in constant time."""
    found = False
    for candidate in stored:
        found |= hmac.compare_digest(digest, candidate)
    return found
