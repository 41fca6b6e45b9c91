"""The worst case from a step's first attempt to the saga giving up on it, checked
against the machine itself: every attempt is failed after its whole deadline and every
retry taken at the latest time the jitter allows. No network, no database."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from orchestrator.api import catalogue
from orchestrator.core.definition import DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATION_RETRY
from orchestrator.core.escalation import (
    NEEDS_INTERVENTION,
    ROLLBACK,
    step_escalation,
    worst_case_attempts_seconds,
)
from orchestrator.core.machine import ErrorKind, SendCompensation, Verdict
from tests.support.policy_sagas import PIVOT_PROBE
from tests.unit.test_failure_policy import started_run
from tests.unit.test_machine import T0, TRAVEL_BOOKING

pytestmark = pytest.mark.unit

HIGHEST_DRAW = 0.999999
"""The largest unit draw: each backoff at (almost) its full jitter."""


def test_the_default_policies_give_up_after_the_documented_worst_case():
    # 3 attempts of 5 s, backoffs 0.1 and 0.2 s stretched by 20 %.
    assert worst_case_attempts_seconds(DEFAULT_ACTION_RETRY, 5.0) == pytest.approx(15.36)
    # 10 attempts of 5 s, backoffs 0.1 .. 3.2 then 5, 5, 5 s, stretched by 20 %.
    assert worst_case_attempts_seconds(DEFAULT_COMPENSATION_RETRY, 5.0) == pytest.approx(75.56)


def test_a_single_attempt_has_no_backoff():
    once = dataclasses.replace(DEFAULT_ACTION_RETRY, max_attempts=1)
    assert worst_case_attempts_seconds(once, 2.5) == 2.5


def elapsed_until_given_up(definition, index, timeout):
    """Seconds the machine takes from step `index`'s first attempt until it gives up on
    the step, its compensation included, each attempt lasting `timeout`."""
    run = started_run(definition, index)
    now = T0
    while True:
        now += timedelta(seconds=timeout)
        after = run.action_failed(
            index, ErrorKind.TRANSIENT, "DEADLINE_EXCEEDED", now, HIGHEST_DRAW
        )
        if after.verdict is not Verdict.RETRY:
            break
        now = after.retry_at
    if after.verdict is Verdict.OUTCOME_UNKNOWN:
        assert SendCompensation(index) in run.next_actions(now)
        while True:
            now += timedelta(seconds=timeout)
            after = run.compensation_failed(index, "DEADLINE_EXCEEDED", now, HIGHEST_DRAW)
            if after.verdict is not Verdict.RETRY:
                break
            now = after.retry_at
    assert run.saga.needs_intervention
    return (now - T0).total_seconds()


TRAVEL = dataclasses.replace(
    TRAVEL_BOOKING, retry=DEFAULT_ACTION_RETRY, compensation_retry=DEFAULT_COMPENSATION_RETRY
)


@pytest.mark.parametrize(
    ("definition", "index", "compensated"),
    [
        pytest.param(TRAVEL, 1, True, id="compensable"),
        pytest.param(PIVOT_PROBE, 1, False, id="pivot"),
        pytest.param(PIVOT_PROBE, 2, False, id="after-the-pivot"),
    ],
)
def test_the_worst_case_is_what_the_machine_spends(definition, index, compensated):
    step = definition.all_steps[index]
    escalation = step_escalation(definition, step)
    assert escalation.ends == NEEDS_INTERVENTION
    assert (escalation.compensation_seconds is not None) is compensated
    assert escalation.total_seconds == pytest.approx(
        elapsed_until_given_up(definition, index, step.timeout), abs=1e-3
    )


def test_a_retriable_step_is_never_compensated():
    step = dataclasses.replace(TRAVEL.all_steps[0], retriable=True)
    escalation = step_escalation(dataclasses.replace(TRAVEL, steps=(step,)), step)
    assert escalation.compensation_seconds is None
    assert escalation.total_seconds == escalation.action_seconds == pytest.approx(15.36)


def test_a_read_only_step_given_up_leads_to_the_rollback():
    step = dataclasses.replace(TRAVEL.all_steps[0], compensation=None, read_only=True)
    escalation = step_escalation(dataclasses.replace(TRAVEL, steps=(step,)), step)
    assert (escalation.ends, escalation.compensation_seconds) == (ROLLBACK, None)


def test_the_catalogue_and_its_text_state_each_steps_worst_case():
    message = catalogue.definition_to_proto(TRAVEL)
    for step, entry in zip(TRAVEL.all_steps, message.steps, strict=True):
        expected = step_escalation(TRAVEL, step).total_seconds
        assert entry.escalation_seconds == pytest.approx(expected, abs=1e-3)
    document = catalogue.definition_document(message)
    assert document["steps"][0]["escalation_seconds"] == pytest.approx(90.92)
    text = catalogue.describe_text(message)
    assert "gives up:     within 90.9s of its first attempt, then needs_intervention" in text
    assert "every attempt runs out its timeout" in text
