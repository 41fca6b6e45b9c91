"""The tracked travel_choreography type and the choreographed services agree: it passes
the load-time checks, every event a service publishes moves one of its steps, each step
listens to its own participant's service, and every rescue command it may publish is
one that service obeys."""

from __future__ import annotations

import pytest

from orchestrator.core.registry import Registry
from orchestrator.core.tracking import EventRole, event_roles
from orchestrator.examples import DEFINITIONS
from orchestrator.examples.travel_choreography import TRAVEL_CHOREOGRAPHY, travel_choreography
from participants.choreography import events as ev
from participants.choreography.services import SERVICES

pytestmark = pytest.mark.unit


def test_it_passes_the_load_time_checks_and_stays_out_of_the_default_examples():
    assert Registry([TRAVEL_CHOREOGRAPHY]).get("travel_choreography", 1) is TRAVEL_CHOREOGRAPHY
    assert TRAVEL_CHOREOGRAPHY.name not in {d.name for d in DEFINITIONS}


def test_every_event_a_service_publishes_moves_a_step_of_its_own_participant():
    roles = event_roles(TRAVEL_CHOREOGRAPHY)
    published = {
        event_type
        for service in SERVICES.values()
        for event_type in (service.booked, service.failed, service.cancelled)
    }
    assert set(roles) == published | {ev.BOOKING_STARTED}
    assert roles[ev.BOOKING_STARTED].role is EventRole.START
    for step in TRAVEL_CHOREOGRAPHY.steps:
        service = SERVICES[step.participant]
        assert step.observed is not None
        assert step.observed.completes_on == (service.booked,)
        assert step.observed.fails_on == (service.failed,)
        assert step.observed.compensated_on == (service.cancelled,)


def test_every_rescue_command_is_one_its_service_obeys():
    for step in TRAVEL_CHOREOGRAPHY.steps:
        assert step.observed is not None
        assert step.observed.compensation_event in SERVICES[step.participant].cancel_on


def test_the_window_is_what_the_demo_asks_for():
    short = travel_choreography(within=3.0)
    assert {step.observed.within for step in short.steps if step.observed} == {3.0}
