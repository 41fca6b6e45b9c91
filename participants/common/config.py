"""How a participants process is configured: one frozen value built by `__main__`.

Tests build it directly to host participants in-process with
`participants.common.server.build_example_server`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from participants.kit.tls import ServerTls

ALL_SERVICES = (
    "flight",
    "hotel",
    "car_rental",
    "payment",
    "inventory",
    "shipping",
    "notification",
    "consumer",
    "kitchen",
    "accounting",
    "order",
)
"""Every participant service, in the order they are listed and served."""


@dataclasses.dataclass(frozen=True)
class ParticipantConfig:
    """Settings shared by every service hosted in one process.

    `capacity` and `max_charge_minor` only matter when a state file is created
    (capacity) or a charge is checked (max_charge_minor); the failure-injection
    fields apply to actions only, never to compensations or reads.
    """

    state_dir: Path
    services: tuple[str, ...] = ALL_SERVICES
    host: str = "127.0.0.1"
    port: int = 0
    capacity: int = 100
    max_charge_minor: int = 500_000
    fail_rate: float = 0.0
    seed: int = 0
    fail_ids: frozenset[str] = frozenset()
    latency_ms: int = 0
    unavailable_first: int = 0
    compensation_failures: int = 0
    # TLS on the listener (mutual TLS when it names a client CA); None is plaintext.
    tls: ServerTls | None = None
    # Callers and roles (docs/security.md); None accepts commands from anyone.
    auth_file: Path | None = None
    reflection: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.services) - set(ALL_SERVICES))
        if unknown:
            raise ValueError(
                f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(ALL_SERVICES)}"
            )
        if not self.services:
            raise ValueError("at least one service must be selected")
        if self.capacity < 0:
            raise ValueError("capacity must not be negative")
        if self.max_charge_minor < 0:
            raise ValueError("max_charge_minor must not be negative")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if self.unavailable_first < 0:
            raise ValueError("unavailable_first must not be negative")
        if self.compensation_failures < -1:
            raise ValueError("compensation_failures must be -1 (always) or more")
