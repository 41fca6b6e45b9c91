"""Value rules shared by the example saga types' inputs."""

from __future__ import annotations

from saga.participants.common.v1.command_pb2 import Money


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
