"""The tracked travel type as `saga serve --definitions tests.e2e.tracked_definitions`
loads it in the end-to-end tests: `tests.support.tracked_sagas.tracked_travel`, its
windows and what a stuck instance does read from the environment the test gives the
process (`TRACKED_E2E_WITHIN`, `TRACKED_E2E_CAR_WITHIN` seconds; `TRACKED_E2E_ON_STUCK`
`NEEDS_INTERVENTION` or `COMPENSATE`)."""

from __future__ import annotations

import os

from orchestrator import OnStuck, SagaDefinition
from tests.support.tracked_sagas import tracked_travel

WITHIN_ENV = "TRACKED_E2E_WITHIN"
CAR_WITHIN_ENV = "TRACKED_E2E_CAR_WITHIN"
ON_STUCK_ENV = "TRACKED_E2E_ON_STUCK"


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, "") or default)


TRACKED_TRAVEL = tracked_travel(
    within=_seconds(WITHIN_ENV, 60.0),
    car_within=_seconds(CAR_WITHIN_ENV, _seconds(WITHIN_ENV, 60.0)),
    on_stuck=OnStuck[os.environ.get(ON_STUCK_ENV, "") or "NEEDS_INTERVENTION"],
)
DEFINITIONS: tuple[SagaDefinition, ...] = (TRACKED_TRAVEL,)
