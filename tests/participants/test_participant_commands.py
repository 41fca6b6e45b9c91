"""Idempotency and compensation over real gRPC, one scenario per test, run for every
compensable service against one shared participants process."""

from __future__ import annotations

import grpc
import pytest

from saga.participants.common.v1 import command_pb2
from saga.participants.notification.v1 import notification_pb2, notification_pb2_grpc
from tests.participants.harness import (
    ACTIVE,
    CANCELLED,
    COMPENSABLE,
    RPC_TIMEOUT_S,
    Case,
    command,
    new_saga,
    rejection_of,
)

pytestmark = pytest.mark.e2e

each_service = pytest.mark.parametrize("case", COMPENSABLE, ids=str)


def available(case: Case, stub) -> int | None:
    return case.available(stub) if case.available is not None else None


def taken(before: int | None, units: int) -> int | None:
    return None if before is None else before - units


@each_service
def test_action_is_applied_and_listed_with_its_saga_and_key(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    before = available(case, stub)

    response = case.act(stub, command(saga, "step"), "a")

    assert case.id_of(response)
    assert available(case, stub) == taken(before, 1)
    record = case.records(stub)[f"{saga}:step"]
    assert (record.state, record.saga_id) == (ACTIVE, saga)


@each_service
def test_repeated_action_returns_the_stored_response_and_applies_once(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    before = available(case, stub)

    first = case.act(stub, command(saga, "step"), "a")
    repeat = case.act(stub, command(saga, "step"), "a")

    assert repeat == first
    assert available(case, stub) == taken(before, 1)
    keys = [key for key in case.records(stub) if key == f"{saga}:step"]
    assert len(keys) == 1


@each_service
def test_same_key_with_a_different_request_is_already_exists(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    case.act(stub, command(saga, "step"), "a")
    before = available(case, stub)

    rejection = rejection_of(lambda: case.act(stub, command(saga, "step"), "b"))

    assert rejection.code == grpc.StatusCode.ALREADY_EXISTS
    assert rejection.reason == "IDEMPOTENCY_KEY_REUSED"
    assert f"{saga}:step" in rejection.message
    assert available(case, stub) == before


@each_service
def test_compensation_by_id_undoes_the_action_and_gives_capacity_back(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    before = available(case, stub)
    target = case.id_of(case.act(stub, command(saga, "step"), "a"))

    undo = case.compensate(stub, command(saga, "step", compensation=True), target)

    assert (case.id_of(undo), case.undone(undo)) == (target, True)
    assert available(case, stub) == before
    assert case.records(stub)[f"{saga}:step"].state == CANCELLED


@each_service
def test_compensation_by_compensated_key_finds_the_action(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    before = available(case, stub)
    target = case.id_of(case.act(stub, command(saga, "step"), "a"))

    undo = case.compensate(stub, command(saga, "step", compensation=True), "")

    assert (case.id_of(undo), case.undone(undo)) == (target, True)
    assert available(case, stub) == before


@each_service
def test_compensating_twice_undoes_once(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    before = available(case, stub)
    target = case.id_of(case.act(stub, command(saga, "step"), "a"))
    first = case.compensate(stub, command(saga, "step", compensation=True), target)

    repeat = case.compensate(stub, command(saga, "step", compensation=True), target)
    other_key = case.compensate(stub, command(saga, "step-again", compensation=True), target)

    assert repeat == first
    assert (case.id_of(other_key), case.undone(other_key)) == ("", False)
    assert available(case, stub) == before


@each_service
def test_compensation_before_its_action_is_a_noop_and_refuses_the_late_action(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    before = available(case, stub)

    undo = case.compensate(stub, command(saga, "step", compensation=True), "")
    late = rejection_of(lambda: case.act(stub, command(saga, "step"), "a"))
    late_again = rejection_of(lambda: case.act(stub, command(saga, "step"), "a"))

    assert (case.id_of(undo), case.undone(undo)) == ("", False)
    assert (late.code, late.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_COMPENSATED")
    assert late.domain == f"{case.name}.participants.saga"
    assert late_again == late
    assert available(case, stub) == before
    assert f"{saga}:step" not in case.records(stub)


@each_service
def test_command_without_idempotency_key_is_invalid_and_stores_nothing(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    keyless = command_pb2.CommandContext(saga_id=saga, step="step")

    rejection = rejection_of(lambda: case.act(stub, keyless, "a"))
    compensation = rejection_of(lambda: case.compensate(stub, keyless, "some-id"))

    assert (rejection.code, compensation.code) == (grpc.StatusCode.INVALID_ARGUMENT,) * 2
    assert all(record.saga_id != saga for record in case.records(stub).values())


@each_service
def test_compensation_naming_nothing_is_invalid(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    no_target = command_pb2.CommandContext(saga_id=saga, step="step", idempotency_key=saga)

    rejection = rejection_of(lambda: case.compensate(stub, no_target, ""))

    assert rejection.code == grpc.StatusCode.INVALID_ARGUMENT


def test_notification_is_sent_once_per_key(channel):
    stub = notification_pb2_grpc.NotificationServiceStub(channel)
    saga = new_saga()
    request = notification_pb2.SendOrderConfirmationRequest(
        context=command(saga, "notify"), customer_id="c-1", order_id="o-1", shipment_id="s-1"
    )

    first = stub.SendOrderConfirmation(request, timeout=RPC_TIMEOUT_S)
    repeat = stub.SendOrderConfirmation(request, timeout=RPC_TIMEOUT_S)

    assert repeat == first
    listed = stub.ListNotifications(
        notification_pb2.ListNotificationsRequest(), timeout=RPC_TIMEOUT_S
    ).notifications
    sent = [n for n in listed if n.saga_id == saga]
    assert [(n.notification_id, n.idempotency_key) for n in sent] == [
        (first.notification_id, f"{saga}:notify")
    ]
