"""The chaos run's invariant checker catches what it exists to catch: a consistent run
passes every check, and each planted violation fails exactly the check that covers it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from saga.v1 import orchestrator_pb2 as pb
from tools import chaos
from tools.chaos import ACTIVE, TRAVEL, LogAudit, ParticipantState, PlannedSaga, Record

pytestmark = pytest.mark.unit

DONE, FAILED = "11111111-0000-0000-0000-000000000000", "22222222-0000-0000-0000-000000000000"
AMOUNT = 50_000


def saga(saga_id: str, status: int, step_status: int) -> pb.Saga:
    return pb.Saga(
        saga_id=saga_id,
        status=status,
        steps=[pb.Step(name=name, status=step_status) for name in chaos.TRAVEL_PARTICIPANTS],
    )


def consistent_run() -> tuple[
    list[PlannedSaga], dict[int, str], dict[str, pb.Saga], ParticipantState, LogAudit
]:
    """Two travel sagas: one completed (a live record everywhere, one charge), one failed
    and compensated (its hotel booking cancelled, nothing live)."""
    plans = [PlannedSaga(n, TRAVEL, {}, AMOUNT, f"chaos-test-{n}") for n in (0, 1)]
    saga_ids = {0: DONE, 1: FAILED}
    sagas = {
        DONE: saga(DONE, pb.SAGA_STATUS_COMPLETED, pb.STEP_STATUS_COMPLETED),
        FAILED: saga(FAILED, pb.SAGA_STATUS_FAILED, pb.STEP_STATUS_COMPENSATED),
    }
    records = [
        Record(
            name, DONE, f"{DONE}:{name}", ACTIVE, amount_minor=AMOUNT if name == "payment" else 0
        )
        for name in chaos.TRAVEL_PARTICIPANTS
    ] + [Record("hotel", FAILED, f"{FAILED}:hotel", "CANCELLED")]
    state = ParticipantState(
        records=records,
        capacity={"flight seats": (10, 9), "hotel rooms": (10, 9), "cars": (10, 9)},
    )
    return plans, saga_ids, sagas, state, LogAudit(transitions=12)


def failing_checks(run) -> list[str]:
    return [check.name for check in chaos.check_invariants(*run) if not check.ok]


def test_a_consistent_run_passes_every_check():
    assert failing_checks(consistent_run()) == []


def double_booking(run) -> None:
    run[3].records.append(Record("flight", DONE, f"{DONE}:flight-again", ACTIVE))


def refund_missing(run) -> None:
    run[3].records.append(
        Record("payment", FAILED, f"{FAILED}:payment", ACTIVE, amount_minor=AMOUNT)
    )


def broken_log(run) -> None:
    run[4].problems[DONE] = "2 terminal transitions"


def step_left_done(run) -> None:
    run[2][FAILED].steps[0].status = pb.STEP_STATUS_COMPLETED


def seat_leaked(run) -> None:
    run[3].capacity["flight seats"] = (10, 8)


@pytest.mark.parametrize(
    ("plant", "caught_by"),
    [
        (double_booking, "one live record per participant"),
        (refund_missing, "charges - refunds"),
        (broken_log, "transition logs"),
        (step_left_done, "failed sagas compensated every step"),
        (seat_leaked, "flight seats taken"),
    ],
)
def test_a_planted_violation_is_caught(plant: Callable[[tuple], None], caught_by: str):
    run = consistent_run()
    plant(run)
    failing = failing_checks(run)
    assert any(name.startswith(caught_by) for name in failing), failing
