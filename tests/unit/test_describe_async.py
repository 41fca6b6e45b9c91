"""`saga describe` and the catalogue show an asynchronous step: what it waits for, how
long, the heartbeats it needs and what a timeout does."""

from __future__ import annotations

import pytest

from orchestrator.api import catalogue
from orchestrator.cli.diagrams import describe_text
from tests.support.async_sagas import HEARTBEAT_TRIP, SUPERVISED_TRIP

pytestmark = pytest.mark.unit

WAITS = (
    "later, a saga.participants.flight.v1.BookFlightResponse within 30s, a heartbeat at "
    "least every 2s; on timeout: compensate"
)


def test_describe_and_the_catalogue_say_how_an_asynchronous_step_completes():
    assert f"completes:          {WAITS}\n" in describe_text(HEARTBEAT_TRIP)
    message = catalogue.definition_to_proto(HEARTBEAT_TRIP)
    assert f"completes:    {WAITS}\n" in catalogue.describe_text(message)
    document = catalogue.definition_document(message)
    assert document["steps"][0]["completion"] is None
    assert document["steps"][1]["completion"] == {
        "result_type": "saga.participants.flight.v1.BookFlightResponse",
        "timeout_seconds": 30.0,
        "heartbeat_timeout_seconds": 2.0,
        "on_timeout": "compensate",
    }


def test_a_step_that_waits_for_an_operator_on_timeout_says_so():
    text = describe_text(SUPERVISED_TRIP)
    assert "within 1s; on timeout: wait for an operator" in text
