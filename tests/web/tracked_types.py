"""The tracked saga type the console's browser tests serve (`--definitions
tests.web.tracked_types`): the travel flow, the flight's and hotel's events due within
ten minutes (so a page shows them expected), the car rental's within 1.5 s (so a
booking that gets that far is flagged for an operator while the test watches)."""

from __future__ import annotations

from orchestrator.core.definition import SagaDefinition
from tests.support.tracked_sagas import tracked_travel

DEFINITIONS: tuple[SagaDefinition, ...] = (tracked_travel(within=600.0, car_within=1.5),)
