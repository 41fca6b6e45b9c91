"""Checks for obviously bad requests; each raises InvalidCommand, which stores nothing."""

from __future__ import annotations

from participants.common.errors import InvalidCommand
from saga.participants.common.v1 import command_pb2


def require_text(value: str, field: str) -> None:
    """A required string field must not be empty or blank."""
    if not value.strip():
        raise InvalidCommand(f"{field} is required")


def require_positive(value: int, field: str) -> None:
    """A count or amount must be above zero."""
    if value <= 0:
        raise InvalidCommand(f"{field} must be positive, got {value}")


def require_money(value: command_pb2.Money, field: str) -> None:
    """An amount needs a currency and a positive number of minor units."""
    require_text(value.currency_code, f"{field}.currency_code")
    require_positive(value.amount_minor, f"{field}.amount_minor")


def require_compensation_target(record_id: str, field: str, compensated_key: str) -> None:
    """A compensation must say what it undoes: an id, or the action's key."""
    if not record_id and not compensated_key:
        raise InvalidCommand(f"{field} or context.compensated_idempotency_key is required")
