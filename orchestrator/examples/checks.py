"""Value rules shared by the example saga types' inputs, and the type check their
builders make of the messages they are handed."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from orchestrator.core.definition import StepContext
from saga.participants.common.v1.command_pb2 import Money

M = TypeVar("M", bound=Message)


def expect_message(expected: type[M], value: object, what: str) -> M:
    """`value` as the message type a builder expects of it; TypeError naming `what` (the
    saga's input, a step's result) when the registry handed something else, which a
    definition that type-checks never does. Unlike an assert, it holds under `-O`."""
    if not isinstance(value, expected):
        raise TypeError(
            f"{what} is a {type(value).__name__}, expected {expected.DESCRIPTOR.full_name}"
        )
    return value


def expect_result(ctx: StepContext, step: str, expected: type[M]) -> M:
    """The reply of an earlier `step` as the message type its call answers with."""
    return expect_message(expected, ctx.result_of(step), f"the result of step {step!r}")


def require_positive(**values: int) -> None:
    """ValueError naming the first field that is not above zero."""
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def require_money(name: str, money: Money) -> None:
    """A positive amount in a three-letter upper-case currency."""
    code = money.currency_code
    if len(code) != 3 or not code.isalpha() or not code.isupper():
        raise ValueError(f"{name}.currency_code must be an ISO 4217 code like EUR, got {code!r}")
    require_positive(**{f"{name}.amount_minor": money.amount_minor})
