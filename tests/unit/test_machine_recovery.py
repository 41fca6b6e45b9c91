"""Property: from any persisted prefix of a saga's transitions, a restarted machine
finishes the saga correctly. No I/O: an in-memory "store" keeps what was committed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.machine import SagaRun, SendAction
from orchestrator.core.records import SagaStatus, StepStatus
from orchestrator.examples import ORDER_FULFILLMENT, TRAVEL_BOOKING
from orchestrator.examples.create_order import CREATE_ORDER
from tests.unit.test_machine import clock, new_run

pytestmark = pytest.mark.unit

SEQUENTIAL_TRAVEL = dataclasses.replace(TRAVEL_BOOKING, steps=TRAVEL_BOOKING.all_steps)
DEFINITIONS = [TRAVEL_BOOKING, SEQUENTIAL_TRAVEL, ORDER_FULFILLMENT, CREATE_ORDER]


class MemoryStore:
    """What survives a crash: the saga row, step rows and log, as last committed."""

    def __init__(self, run: SagaRun) -> None:
        self.saga = run.saga
        self.steps = list(run.steps)
        self.log: list = []

    def commit(self, run: SagaRun) -> None:
        commit = run.take_commit()
        assert commit.expected_version == self.saga.version
        self.saga = commit.saga
        for step in commit.steps:
            self.steps[step.index] = step
        self.log += list(commit.transitions)

    def restart(self, definition) -> SagaRun:
        last_seq = self.log[-1].seq if self.log else 1
        return SagaRun(definition, self.saga, list(self.steps), last_seq)


@settings(max_examples=300, deadline=None)
@given(
    definition=st.sampled_from(DEFINITIONS),
    answers=st.lists(
        st.sampled_from(["ok", "ok", "ok", "reject", "unknown"]), min_size=5, max_size=5
    ),
    crashes=st.sets(st.integers(min_value=0, max_value=25), max_size=4),
)
def test_a_restart_after_any_commit_still_finishes_the_saga_correctly(definition, answers, crashes):
    """Answers are per step and stable, as an idempotent participant's are."""
    run = new_run(definition)
    store = MemoryStore(run)
    times = clock()
    sent_actions: list[str] = []
    compensated: list[str] = []
    for tick in range(200):
        actions = run.next_actions(next(times))
        if run.has_pending():
            store.commit(run)
        if tick in crashes:  # the process dies: everything not committed is gone
            run = store.restart(definition)
            continue
        if not actions:
            break
        for action in actions:
            name = run.steps[action.index].name
            if isinstance(action, SendAction):
                sent_actions.append(name)
                answer = answers[action.index]
                if answer == "ok":
                    run.action_succeeded(action.index, b"reply", next(times))
                elif answer == "reject":
                    run.action_rejected(action.index, "FAILED_PRECONDITION", next(times))
                elif definition.all_steps[action.index].is_pivot:
                    run.action_stuck(action.index, "DEADLINE_EXCEEDED", next(times))
                else:
                    run.action_outcome_unknown(action.index, "DEADLINE_EXCEEDED", next(times))
            else:
                compensated.append(name)
                run.compensation_succeeded(action.index, next(times))
    else:
        pytest.fail("the saga never finished")

    assert not [name for name in compensated if definition.step_named(name).read_only]
    final = store.restart(definition)
    assert final.status.is_terminal
    assert [t.seq for t in store.log] == list(range(2, 2 + len(store.log)))
    statuses = [final.step_status(i) for i in range(len(final.steps))]
    if final.status is SagaStatus.COMPLETED:
        assert all(s is StepStatus.COMPLETED for s in statuses)
        assert all(answer == "ok" for answer in answers[: len(statuses)])
        return
    if final.saga.needs_intervention:
        return  # halted at a step that must not be undone; an operator takes over
    for index, status in enumerate(statuses):
        step = definition.all_steps[index]
        if step.read_only:
            # Changed nothing: a rollback passes over it and never sends it a command.
            assert status in (StepStatus.PENDING, StepStatus.FAILED, StepStatus.NOTHING_TO_UNDO)
            continue
        assert status in (StepStatus.PENDING, StepStatus.FAILED, StepStatus.COMPENSATED) or (
            step.compensation is None
        ), f"step {final.steps[index].name} left {status} in a failed saga"
    # Compensations run in reverse declaration order (each step once in the log).
    done = [t.step for t in store.log if t.event.value == "COMPENSATION_COMPLETED"]
    order = [s.name for s in definition.all_steps]
    assert done == sorted(done, key=order.index, reverse=True)
    assert len(done) == len(set(done))
