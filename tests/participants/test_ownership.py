"""Ownership, with no auth configured: a compensation may undo only what its own saga's
action did. Each attack is refused with PERMISSION_DENIED (reason NOT_OWNER) and
changes nothing, on every compensable example participant."""

from __future__ import annotations

import grpc
import pytest

from saga.participants.common.v1 import command_pb2
from tests.participants.harness import (
    ACTIVE,
    COMPENSABLE,
    Case,
    command,
    new_saga,
    rejection_of,
)

pytestmark = pytest.mark.e2e

each_service = pytest.mark.parametrize("case", COMPENSABLE, ids=str)


@each_service
def test_compensation_naming_another_sagas_record_is_refused_and_changes_nothing(
    case: Case, channel
):
    stub, victim, attacker = case.stub(channel), new_saga(), new_saga()
    target = case.id_of(case.act(stub, command(victim, "step"), "a"))
    # The attacker's own action exists, so only the record id points elsewhere.
    case.act(stub, command(attacker, "step"), "b")

    refusal = rejection_of(
        lambda: case.compensate(stub, command(attacker, "step", compensation=True), target)
    )

    assert (refusal.code, refusal.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    records = case.records(stub)
    assert records[f"{victim}:step"].state == ACTIVE
    assert records[f"{attacker}:step"].state == ACTIVE
    # Nothing was recorded under the attacker's key either: its own undo still works.
    undo = case.compensate(stub, command(attacker, "step", compensation=True), "")
    assert case.undone(undo)
    assert case.records(stub)[f"{victim}:step"].state == ACTIVE


@each_service
def test_compensation_tombstoning_a_running_sagas_step_is_refused_and_changes_nothing(
    case: Case, channel
):
    stub, running, attacker = case.stub(channel), new_saga(), new_saga()
    forged = command_pb2.CommandContext(
        saga_id=attacker,
        step="step",
        idempotency_key=f"{attacker}:step:compensate",
        compensated_idempotency_key=f"{running}:step",
    )

    refusal = rejection_of(lambda: case.compensate(stub, forged, ""))

    assert (refusal.code, refusal.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    # No tombstone: the running saga's action, arriving now, is applied.
    applied = case.act(stub, command(running, "step"), "a")
    assert case.id_of(applied)
    assert case.records(stub)[f"{running}:step"].state == ACTIVE
