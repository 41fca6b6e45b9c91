"""`make demo`: travel bookings against real participant processes, some failing.

Starts the example participants (limited inventory, injected failures) and the
orchestrator as separate processes on free ports, runs a batch of travel
bookings, prints every saga's outcome and the participants'
final state, and checks that no failed saga left a booking or charge behind.
Exits 0 only if every saga finished and every check held; stops every process
it started either way.

With `--secure` (`make demo-secure`) every hop runs mutual TLS with certificates made
for the run, auth is on, and the demo shows two refusals: an anonymous call and an
operator call made with a client's token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from orchestrator.client import TERMINAL_SAGA_STATUSES
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.participants.car_rental.v1 import car_rental_pb2, car_rental_pb2_grpc
from saga.participants.common.v1.command_pb2 import RESERVATION_STATE_ACTIVE
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.participants.hotel.v1 import hotel_pb2, hotel_pb2_grpc
from saga.participants.payment.v1 import payment_pb2, payment_pb2_grpc
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools.demo_approvals import approval_scenario
from tools.demo_locks import lock_scenario
from tools.demo_security import DemoSecurity
from tools.demo_webhooks import SERVE_FLAGS as WEBHOOK_FLAGS
from tools.demo_webhooks import DemoWebhooks
from tools.processes import ChildProcess, orchestrator_process, participants_process

BOOKINGS = 12
FLIGHT_SEATS = 10
HOTEL_ROOMS = 8
CARS = 6
MAX_CHARGE_MINOR = 150_000
FINISH_TIMEOUT_SECONDS = 60.0


def _status(value: int) -> str:
    return pb.SagaStatus.Name(value).removeprefix("SAGA_STATUS_")


def _step_status(value: int) -> str:
    return pb.StepStatus.Name(value).removeprefix("STEP_STATUS_").lower()


CARD_LIMIT_TRIP = 4
"""The booking certain to be refused by the card limit and by nothing else: it is over
the limit, and its flight, hotel and car (an SUV in Paris) are asked for by no other
booking, so neither capacity nor an injected failure can stop it before the charge."""
FAILING_DRIVERS = ("Traveller 2", "Traveller 7", "Traveller 10")
"""The car rental refuses these drivers (INJECTED_FAILURE), a quarter of the bookings."""


def travel_payload(number: int) -> dict[str, Any]:
    """Bookings that compete for few seats, rooms and compact cars; every fifth is over the
    card limit, and CARD_LIMIT_TRIP's flight, hotel and car are its own."""
    price = 250_000 if number % 5 == 4 else 90_000 + number * 1_000
    alone = number == CARD_LIMIT_TRIP
    return {
        "customer_id": f"customer-{number}",
        "traveller_name": f"Traveller {number}",
        "flight_number": "AF100" if alone else "LH400",
        "hotel_id": "paris-opera" if alone else "berlin-central",
        "nights": 2 + number % 3,
        "car_location": "CDG" if alone else "BER",
        "car_class": "suv" if alone else "compact",
        "car_days": 3,
        "amount": {"currency_code": "EUR", "amount_minor": price},
    }


def start_processes(
    workdir: Path, database_url: str, security: DemoSecurity
) -> tuple[list[ChildProcess], ChildProcess]:
    participants = [
        participants_process(workdir, ["flight"], ["--capacity", str(FLIGHT_SEATS)]),
        participants_process(workdir, ["hotel"], ["--capacity", str(HOTEL_ROOMS)]),
        participants_process(
            workdir,
            ["car_rental"],
            ["--capacity", str(CARS), "--fail-ids", ",".join(FAILING_DRIVERS)],
        ),
        participants_process(workdir, ["payment"], ["--max-charge-minor", str(MAX_CHARGE_MINOR)]),
        participants_process(workdir, ["inventory", "shipping", "notification"]),
    ]
    addresses: dict[str, str] = {}
    for process in participants:
        process.argv += security.server_args()
        process.start()
        addresses.update(process.info["services"])
    orchestrator = orchestrator_process(
        workdir,
        database_url,
        addresses,
        extra_args=["--http-listen", "127.0.0.1:0", *WEBHOOK_FLAGS],
    )
    orchestrator.argv += security.orchestrator_args()
    return participants, orchestrator.start()


def settle(address: str, saga_ids: list[str], security: DemoSecurity) -> dict[str, pb.Saga]:
    """Each saga once it is COMPLETED or FAILED, followed on its WatchSaga stream, or as it
    stands after FINISH_TIMEOUT_SECONDS."""

    async def follow_all() -> dict[str, pb.Saga]:
        async with security.saga_client(address, "client") as client:
            latest, _ = await client.wait_all(saga_ids, FINISH_TIMEOUT_SECONDS)
            return latest

    return asyncio.run(follow_all())


def run_sagas(address: str, security: DemoSecurity) -> list[pb.Saga]:
    """Start the bookings with their typed input through the Python client, then follow
    each on its WatchSaga stream until it ends."""

    async def start_and_settle() -> list[pb.Saga]:
        async with security.saga_client(address, "client") as client:
            saga_ids = []
            for number in range(BOOKINGS):
                handle = await client.start(
                    json_format.ParseDict(travel_payload(number), TravelBookingInput()),
                    correlation_id=f"trip-{number}",
                    idempotency_key=f"demo-trip-{number}-{os.getpid()}",
                )
                saga_ids.append(handle.saga_id)
            settled, _ = await client.wait_all(saga_ids, FINISH_TIMEOUT_SECONDS)
        return [settled[saga_id] for saga_id in saga_ids]

    return asyncio.run(start_and_settle())


def print_sagas(sagas: list[pb.Saga]) -> None:
    print(f"\n{'saga':<10} {'for':<14} {'outcome':<10} steps")
    for saga in sagas:
        steps = "  ".join(f"{s.name}={_step_status(s.status)}" for s in saga.steps)
        print(
            f"{saga.saga_id[-8:]:<10} {saga.correlation_id:<14} {_status(saga.status):<10} {steps}"
        )
        if saga.failure_reason:
            print(f"{'':<36}why: {saga.failure_reason}")


def card_limit_refusal(sagas: list[pb.Saga]) -> list[str]:
    """Say how CARD_LIMIT_TRIP ended: flight, hotel and car booked, the charge declined by
    the card limit, the three bookings undone. Anything else is a failed check."""
    saga = next(s for s in sagas if s.correlation_id == f"trip-{CARD_LIMIT_TRIP}")
    steps = {step.name: step for step in saga.steps}
    charge = steps.get("charge_payment")
    print(
        f"\nCard-limit refusal: trip-{CARD_LIMIT_TRIP} (an SUV in Paris, no competition) "
        f"charges {travel_payload(CARD_LIMIT_TRIP)['amount']['amount_minor'] / 100:.2f} EUR "
        f"against a card limit of {MAX_CHARGE_MINOR / 100:.2f} EUR"
    )
    booked = ("book_flight", "book_hotel", "rent_car")
    undone = all(
        name in steps and steps[name].status == pb.STEP_STATUS_COMPENSATED for name in booked
    )
    declined = (
        charge is not None
        and charge.status == pb.STEP_STATUS_FAILED
        and "above the limit" in charge.error
    )
    if charge is not None:
        print(f"  charge_payment {_step_status(charge.status)}: {charge.error}")
    print(
        f"  {', '.join(booked)}: "
        + ", ".join(_step_status(steps[n].status) for n in booked if n in steps)
    )
    if saga.status == pb.SAGA_STATUS_FAILED and declined and undone:
        print("  the car was rented, the card refused it, and flight, hotel and car were undone")
        return []
    return [f"trip-{CARD_LIMIT_TRIP} should pass the car rental and be refused by the card limit"]


def check_participants(
    addresses: dict[str, str], sagas: list[pb.Saga], security: DemoSecurity
) -> list[str]:
    """Print inventories and return every violated invariant."""
    outcome = {s.saga_id: s.status for s in sagas}
    active: dict[str, Counter[str]] = defaultdict(Counter)
    with security.channel(addresses["flight"], "reader") as channel:
        flights = flight_pb2_grpc.FlightServiceStub(channel).GetFlightInventory(
            flight_pb2.GetFlightInventoryRequest(), timeout=10
        )
    with security.channel(addresses["hotel"], "reader") as channel:
        hotels = hotel_pb2_grpc.HotelServiceStub(channel).GetHotelInventory(
            hotel_pb2.GetHotelInventoryRequest(), timeout=10
        )
    with security.channel(addresses["car_rental"], "reader") as channel:
        cars = car_rental_pb2_grpc.CarRentalServiceStub(channel).GetCarInventory(
            car_rental_pb2.GetCarInventoryRequest(), timeout=10
        )
    with security.channel(addresses["payment"], "reader") as channel:
        ledger = payment_pb2_grpc.PaymentServiceStub(channel).GetPaymentLedger(
            payment_pb2.GetPaymentLedgerRequest(), timeout=10
        )
    print("\nParticipants' final state")
    for f in flights.flights:
        if f.flight_number == "LH400":
            print(f"  flight LH400        seats {f.seats_available}/{f.seats_total} free")
    for h in hotels.hotels:
        if h.hotel_id == "berlin-central":
            print(f"  hotel berlin-central rooms {h.rooms_available}/{h.rooms_total} free")
    for c in cars.cars:
        if (c.location, c.car_class) == ("BER", "compact"):
            print(f"  cars BER compact    {c.cars_available}/{c.cars_total} free")
    records = [
        ("flight bookings", flights.bookings),
        ("hotel reservations", hotels.reservations),
        ("car rentals", cars.rentals),
        ("payments", ledger.payments),
    ]
    for label, items in records:
        live = sum(1 for i in items if i.state == RESERVATION_STATE_ACTIVE)
        print(f"  {label:<20} {len(items)} made, {live} active, {len(items) - live} undone")
        for item in items:
            if item.state == RESERVATION_STATE_ACTIVE:
                active[label][item.saga_id] += 1
    charged = sum(
        p.amount.amount_minor for p in ledger.payments if p.state == RESERVATION_STATE_ACTIVE
    )
    print(f"  money charged       {charged / 100:.2f} EUR")

    problems = []
    for saga_id, status in outcome.items():
        for label, _ in records:
            count = active[label][saga_id]
            if status == pb.SAGA_STATUS_COMPLETED and count != 1:
                problems.append(f"completed saga {saga_id} has {count} active {label}")
            if status == pb.SAGA_STATUS_FAILED and count != 0:
                problems.append(f"failed saga {saga_id} left {count} active {label} behind")
    return problems


def operator_scenario(workdir: Path, database_url: str, security: DemoSecurity) -> list[str]:
    """An order whose refund keeps failing: the saga stops and asks for an operator, who
    refunds by hand and says so with ResolveStep; the saga then finishes compensating."""
    print("\nOperator scenario: an order that cannot ship, and a refund that keeps failing")
    processes = [
        participants_process(workdir, ["payment"], ["--compensation-failures", "-1"], "payment-2"),
        participants_process(workdir, ["inventory", "shipping", "notification"], name="orders-2"),
    ]
    orchestrator: ChildProcess | None = None
    problems: list[str] = []
    try:
        addresses: dict[str, str] = {}
        for process in processes:
            process.argv += security.server_args()
            addresses.update(process.start().info["services"])
        orchestrator = orchestrator_process(
            workdir,
            database_url,
            addresses,
            env={"SAGA_DEFINITIONS": "orchestrator.examples.operator_demo"},
            name="orchestrator-2",
        )
        orchestrator.argv += security.orchestrator_args()
        orchestrator.start()
        with (
            security.channel(orchestrator.address, "client") as client_channel,
            security.channel(orchestrator.address, "operator") as channel,
        ):
            stub = pb_grpc.SagaOrchestratorStub(channel)
            client_stub = pb_grpc.SagaOrchestratorStub(client_channel)
            payload = struct_pb2.Struct()
            payload.update(
                {
                    "order_id": "order-nowhere",
                    "customer_id": "customer-7",
                    "items": [{"sku": "sku-1", "quantity": 2}],
                    "shipping_address": "1 Nowhere Road",
                    "amount": {"currency_code": "EUR", "amount_minor": 4_999},
                }
            )
            started = client_stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="order_fulfillment", correlation_id="order-nowhere", payload=payload
                ),
                timeout=10,
            )
            stuck = settle(orchestrator.address, [started.saga_id], security)[started.saga_id]
            print_sagas([stuck])
            listed = stub.ListSagas(pb.ListSagasRequest(needs_intervention=True), timeout=10)
            print(f"  ListSagas(needs_intervention=true): {[s.saga_id[-8:] for s in listed.sagas]}")
            if not stuck.needs_intervention:
                return [f"saga {stuck.saga_id} should need intervention"]
            print(
                "  operator: refunded by bank transfer, then "
                "ResolveStep(step=charge_payment, requested_by=demo-operator)"
            )
            stub.ResolveStep(
                pb.ResolveStepRequest(
                    saga_id=stuck.saga_id,
                    step="charge_payment",
                    reason="refunded by bank transfer, ticket 4711",
                    requested_by="demo-operator",
                ),
                timeout=10,
            )
            done = settle(orchestrator.address, [stuck.saga_id], security)[stuck.saga_id]
            print_sagas([done])
            history = stub.GetSagaHistory(
                pb.GetSagaHistoryRequest(saga_id=done.saga_id), timeout=10
            )
            for t in history.transitions:
                if t.actor != "engine":
                    event = pb.TransitionEvent.Name(t.event).removeprefix("TRANSITION_EVENT_")
                    print(f"  log #{t.seq}: {event} {t.step} by {t.actor}: {t.reason}")
        if done.status != pb.SAGA_STATUS_FAILED or done.needs_intervention:
            problems.append(f"saga {done.saga_id} did not finish compensating after the fix")
        if done.definition_version != 2:
            problems.append("the new saga should run on order_fulfillment v2")
        return problems
    finally:
        for leftover in [orchestrator, *processes]:
            if leftover is not None:
                leftover.stop()


def refusals(address: str, saga_id: str, security: DemoSecurity) -> list[str]:
    """An anonymous call and an operator call with a client's token: both must be refused."""
    print("\nRefused calls (auth is on)")
    problems = []
    calls = [
        ("anonymous ListSagas", None, grpc.StatusCode.UNAUTHENTICATED),
        ("AbortSaga with a client token", "client", grpc.StatusCode.PERMISSION_DENIED),
    ]
    for label, role, expected in calls:
        with security.channel(address, role) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            try:
                if role is None:
                    stub.ListSagas(pb.ListSagasRequest(), timeout=10)
                else:
                    stub.AbortSaga(
                        pb.AbortSagaRequest(saga_id=saga_id, reason="demo", requested_by="ceo"),
                        timeout=10,
                    )
                problems.append(f"{label} was accepted")
            except grpc.RpcError as error:
                print(f"  {label}: {error.code().name}: {error.details()}")
                if error.code() != expected:
                    problems.append(f"{label}: {error.code().name}, expected {expected.name}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the processes up after the bookings until Enter, to browse the web console",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="mutual TLS on every hop and auth on, with throwaway certificates and tokens",
    )
    options = parser.parse_args(argv)
    keep, secure = options.keep, options.secure
    workdir = Path(".demo") / datetime.now().strftime("%Y%m%d-%H%M%S")
    database_url = os.environ.get("SAGA_DATABASE_URL") or f"sqlite:///{workdir / 'saga.sqlite3'}"
    print(f"demo: state and logs in {workdir}, orchestrator store {database_url.split('@')[-1]}")
    security = DemoSecurity.create(workdir) if secure else DemoSecurity()
    if secure:
        print(f"demo: mutual TLS on every hop, auth on; certificates and tokens in {workdir}/pki")
    participants: list[ChildProcess] = []
    orchestrator: ChildProcess | None = None
    webhooks = DemoWebhooks(workdir)
    try:
        print(f"demo: webhook receiver on {webhooks.start_receiver()}")
        participants, orchestrator = start_processes(workdir, database_url, security)
        endpoint_id = webhooks.register(orchestrator.address, security)
        print(f"demo: webhook endpoint {endpoint_id} registered for the receiver")
        addresses = {k: v for p in participants for k, v in p.info["services"].items()}
        print(
            f"demo: orchestrator pid {orchestrator.pid} on {orchestrator.address}; "
            f"{len(participants)} participant processes"
        )
        print(f"demo: web console at {orchestrator.info['console_url']}")
        sagas = run_sagas(orchestrator.address, security)
        print_sagas(sagas)
        problems = card_limit_refusal(sagas)
        problems += check_participants(addresses, sagas, security)
        problems += webhooks.show(len(sagas))
        if security.secure:
            problems += refusals(orchestrator.address, sagas[0].saga_id, security)
        unfinished = [s.saga_id for s in sagas if s.status not in TERMINAL_SAGA_STATUSES]
        problems += [f"saga {i} did not finish in {FINISH_TIMEOUT_SECONDS}s" for i in unfinished]
        counts = Counter(_status(s.status) for s in sagas)
        print(
            f"\n{len(sagas)} travel bookings: {counts['COMPLETED']} completed, "
            f"{counts['FAILED']} failed and compensated"
        )
        if not problems:
            print(
                "checks: every completed saga holds one booking, room, car and charge; "
                "every failed saga holds none"
            )
        if keep:
            input(f"demo: look at {orchestrator.info['console_url']}; press Enter to go on ")
    finally:
        for process in [orchestrator, *participants]:
            if process is not None:
                process.stop()
        webhooks.stop()
    problems += operator_scenario(workdir, database_url, security)
    problems += approval_scenario(
        workdir, database_url, security, lambda address, ids: settle(address, ids, security)
    )
    if security.secure:
        print("\nLock scenario: shown by the plaintext demo (make demo)")
    else:
        problems += lock_scenario(
            workdir, database_url, lambda address, ids: settle(address, ids, security)
        )
    if problems:
        print("\nCHECKS FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("demo: all checks passed; every process it started is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
