"""Configured failures: forced ids, a seeded fail rate, added latency, and a crash
between commit and reply that a retry with the same key must survive."""

from __future__ import annotations

import time

import grpc
import pytest

from participants.common.failures import FailureInjector
from participants.kit import Rejected as BusinessRejection
from saga.participants.common.v1 import command_pb2
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.participants.inventory.v1 import inventory_pb2
from tests.participants.harness import (
    ACTIVE,
    FLIGHT,
    PAYMENT,
    RPC_TIMEOUT_S,
    command,
    new_saga,
    participant_env,
    rejection_of,
    unpack,
)


def book(stub, ctx, flight_number: str = "LH400") -> flight_pb2.BookFlightResponse:
    return stub.BookFlight(
        flight_pb2.BookFlightRequest(
            context=ctx, flight_number=flight_number, passenger_name="Ada", seats=1
        ),
        timeout=RPC_TIMEOUT_S,
    )


@pytest.mark.e2e
def test_action_naming_a_fail_id_fails_but_its_compensation_and_reads_do_not(launch):
    participants = launch("--fail-ids", "BA900,doomed-saga", "--services", "flight,payment")
    with grpc.insecure_channel(participants.address) as channel:
        flights, payments = FLIGHT.stub(channel), PAYMENT.stub(channel)
        doomed_booking = command(new_saga(), "book")

        by_field = rejection_of(lambda: book(flights, doomed_booking, "BA900"))
        repeat = rejection_of(lambda: book(flights, doomed_booking, "BA900"))
        by_saga = rejection_of(lambda: PAYMENT.act(payments, command("doomed-saga", "pay"), "a"))
        other = book(flights, command(new_saga(), "book"), "LH400")
        undo = PAYMENT.compensate(payments, command("doomed-saga", "pay", compensation=True), "")
        ledger = PAYMENT.records(payments)

    assert (by_field.code, by_field.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INJECTED_FAILURE",
    )
    assert repeat == by_field
    assert by_saga.reason == "INJECTED_FAILURE"
    assert other.booking_id
    assert (undo.payment_id, undo.refunded) == ("", False)
    assert "doomed-saga:pay" not in ledger


@pytest.mark.unit
def test_fail_ids_match_nested_and_repeated_string_fields():
    injector = FailureInjector(fail_ids={"sku-3"})
    request = inventory_pb2.ReserveInventoryRequest(
        context=command(new_saga(), "reserve"),
        order_id="o-1",
        items=[
            command_pb2.LineItem(sku="sku-1", quantity=1),
            command_pb2.LineItem(sku="sku-3", quantity=1),
        ],
    )

    with pytest.raises(BusinessRejection) as rejected:
        injector.check_action("any-key", request)
    injector.check_action("any-key", inventory_pb2.ReserveInventoryRequest(order_id="sku-33"))

    assert rejected.value.reason == "INJECTED_FAILURE"


def failed_keys(address: str, keys: list[str]) -> set[str]:
    failed = set()
    with grpc.insecure_channel(address) as channel:
        stub = flight_pb2_grpc.FlightServiceStub(channel)
        for key in keys:
            saga, _, step = key.partition(":")
            try:
                book(stub, command(saga, step))
            except grpc.RpcError as error:
                assert unpack(error).reason == "INJECTED_FAILURE"
                failed.add(key)
    return failed


@pytest.mark.e2e
def test_fail_rate_decision_depends_on_seed_and_key_not_on_order(launch):
    keys = [f"saga-{n}:book" for n in range(30)]
    by_flag = launch("--services", "flight", "--fail-rate", "0.5", "--seed", "7")
    by_env = launch(
        "--services",
        "flight",
        env=participant_env(SAGA_PARTICIPANT_FAIL_RATE="0.5", SAGA_PARTICIPANT_SEED="7"),
    )

    forward = failed_keys(by_flag.address, keys)
    backward = failed_keys(by_env.address, keys[::-1])

    assert forward == backward
    assert 0 < len(forward) < len(keys)


@pytest.mark.e2e
def test_latency_delays_actions_only(launch):
    participants = launch("--services", "flight", "--latency-ms", "300")
    with grpc.insecure_channel(participants.address) as channel:
        stub = FLIGHT.stub(channel)
        FLIGHT.records(stub)  # connect first, so only handling time is measured

        saga = new_saga()
        started = time.monotonic()
        FLIGHT.act(stub, command(saga, "book"), "a")
        action_s = time.monotonic() - started
        started = time.monotonic()
        FLIGHT.compensate(stub, command(saga, "book", compensation=True), "")
        FLIGHT.records(stub)
        compensation_and_read_s = time.monotonic() - started

    assert action_s >= 0.3
    assert compensation_and_read_s < 0.3


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("failpoint", "crash_at"),
    [("before_commit", 1), ("after_commit", 1), ("after_commit:2", 2)],
)
def test_a_crash_around_the_commit_keeps_the_effect_exactly_once(
    failpoint, crash_at, launch, tmp_path
):
    state_dir = tmp_path / "crash-state"
    crashing = launch(
        "--services",
        "flight",
        state_dir=state_dir,
        env=participant_env(SAGA_PARTICIPANT_FAILPOINT=failpoint),
    )
    saga = new_saga()
    contexts = [command(saga, f"book-{n}") for n in range(crash_at)]
    with grpc.insecure_channel(crashing.address) as channel:
        stub = FLIGHT.stub(channel)
        seats_before = FLIGHT.available(stub)
        for ctx in contexts[:-1]:
            book(stub, ctx)
        with pytest.raises(grpc.RpcError):
            book(stub, contexts[-1])
    assert crashing.wait_exit() == 137

    restarted = launch("--services", "flight", state_dir=state_dir)
    with grpc.insecure_channel(restarted.address) as channel:
        stub = FLIGHT.stub(channel)
        retried = book(stub, contexts[-1])
        seats_after = FLIGHT.available(stub)
        bookings = [b for b in FLIGHT.records(stub).values() if b.saga_id == saga]

    assert seats_after == seats_before - crash_at
    assert [(b.idempotency_key, b.state) for b in bookings] == [
        (ctx.idempotency_key, ACTIVE) for ctx in contexts
    ]
    assert bookings[-1].booking_id == retried.booking_id
