"""Helpers for the participant tests: run the process, build commands, read rejections,
and one `Case` per compensable service so a scenario is written once and
parametrized over services."""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from saga.participants.car_rental.v1 import car_rental_pb2, car_rental_pb2_grpc
from saga.participants.common.v1 import command_pb2
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.participants.hotel.v1 import hotel_pb2, hotel_pb2_grpc
from saga.participants.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from saga.participants.payment.v1 import payment_pb2, payment_pb2_grpc
from saga.participants.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from tools.processes import ChildProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
RPC_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0

ACTIVE = command_pb2.RESERVATION_STATE_ACTIVE
CANCELLED = command_pb2.RESERVATION_STATE_CANCELLED


class ParticipantsProcess(ChildProcess):
    """`python -m participants` as a real child process, found through its ready file;
    its stdout is kept apart from its log, as a process manager would see it."""

    def __init__(self, workdir: Path, state_dir: Path, args: list[str], env: dict[str, str]):
        name = f"participants-{uuid.uuid4().hex[:8]}"
        self.state_dir = state_dir
        self.stdout_path = workdir / f"{name}.out"
        command = [
            sys.executable, "-m", "participants",
            "--port", "0",
            "--state-dir", str(state_dir),
            *args,
        ]  # fmt: skip
        super().__init__(
            name,
            command,
            workdir,
            env=env,
            inherit_env=False,
            cwd=REPO_ROOT,
            stdout=self.stdout_path,
        )

    @property
    def ready(self) -> dict[str, Any]:
        return self.info

    def wait_ready(self) -> None:
        """Start, and wait (bounded) until the process has written its ready file."""
        self.start(READY_TIMEOUT_S)

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)


def participant_env(**overrides: str) -> dict[str, str]:
    """The parent's environment without SAGA_PARTICIPANT_* leaking in, plus overrides."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAGA_")}
    env.update(overrides)
    return env


def new_saga() -> str:
    return f"saga-{uuid.uuid4().hex[:12]}"


def command(saga_id: str, step: str, *, compensation: bool = False) -> command_pb2.CommandContext:
    """The context the orchestrator would send for a step's action or compensation."""
    action_key = f"{saga_id}:{step}"
    if not compensation:
        return command_pb2.CommandContext(saga_id=saga_id, step=step, idempotency_key=action_key)
    return command_pb2.CommandContext(
        saga_id=saga_id,
        step=step,
        idempotency_key=f"{action_key}:compensate",
        compensated_idempotency_key=action_key,
    )


@dataclasses.dataclass(frozen=True)
class Rejection:
    """What a caller can see of a failed RPC: code, message and the ErrorInfo."""

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str


def rejection_of(call: Callable[[], Any]) -> Rejection:
    """Run an RPC that must fail and unpack its rich status."""
    try:
        call()
    except grpc.RpcError as error:
        return unpack(error)
    raise AssertionError("the RPC succeeded but was expected to fail")


def unpack(error: grpc.RpcError) -> Rejection:
    """The code, message and ErrorInfo of a failed RPC; every rejection must carry one."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status on {error.code()}: {error.details()}"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return Rejection(error.code(), error.details(), info.reason, info.domain)


@dataclasses.dataclass(frozen=True)
class Case:
    """One compensable service, seen through the same few operations.

    `act` sends the service's action for one unit of its default item;
    `variant` changes a non-key field so the same key carries a different
    request. `available` is None for services without capacity.
    """

    name: str
    stub_type: type
    act: Callable[[Any, command_pb2.CommandContext, str], Message]
    compensate: Callable[[Any, command_pb2.CommandContext, str], Message]
    id_of: Callable[[Message], str]
    undone: Callable[[Message], bool]
    records: Callable[[Any], dict[str, Any]]
    available: Callable[[Any], int] | None
    exhausted_reason: str = ""

    def stub(self, channel: grpc.Channel) -> Any:
        return self.stub_type(channel)

    def __str__(self) -> str:
        return self.name


def _flight_available(stub: Any) -> int:
    flights = stub.GetFlightInventory(flight_pb2.GetFlightInventoryRequest(), timeout=RPC_TIMEOUT_S)
    return next(f.seats_available for f in flights.flights if f.flight_number == "LH400")


def _hotel_available(stub: Any) -> int:
    hotels = stub.GetHotelInventory(hotel_pb2.GetHotelInventoryRequest(), timeout=RPC_TIMEOUT_S)
    return next(h.rooms_available for h in hotels.hotels if h.hotel_id == "berlin-central")


def _car_available(stub: Any) -> int:
    fleet = stub.GetCarInventory(car_rental_pb2.GetCarInventoryRequest(), timeout=RPC_TIMEOUT_S)
    return next(
        c.cars_available for c in fleet.cars if (c.location, c.car_class) == ("BER", "compact")
    )


def _stock_available(stub: Any) -> int:
    stock = stub.GetInventoryStock(inventory_pb2.GetInventoryStockRequest(), timeout=RPC_TIMEOUT_S)
    return next(s.available for s in stock.stock if s.sku == "sku-1")


FLIGHT = Case(
    name="flight",
    stub_type=flight_pb2_grpc.FlightServiceStub,
    act=lambda stub, ctx, variant: stub.BookFlight(
        flight_pb2.BookFlightRequest(
            context=ctx, flight_number="LH400", passenger_name=f"Ada {variant}", seats=1
        ),
        timeout=RPC_TIMEOUT_S,
    ),
    compensate=lambda stub, ctx, target: stub.CancelFlight(
        flight_pb2.CancelFlightRequest(context=ctx, booking_id=target), timeout=RPC_TIMEOUT_S
    ),
    id_of=lambda response: response.booking_id,
    undone=lambda response: response.cancelled,
    records=lambda stub: {
        b.idempotency_key: b
        for b in stub.GetFlightInventory(
            flight_pb2.GetFlightInventoryRequest(), timeout=RPC_TIMEOUT_S
        ).bookings
    },
    available=_flight_available,
    exhausted_reason="NO_SEATS_AVAILABLE",
)

HOTEL = Case(
    name="hotel",
    stub_type=hotel_pb2_grpc.HotelServiceStub,
    act=lambda stub, ctx, variant: stub.BookHotel(
        hotel_pb2.BookHotelRequest(
            context=ctx, hotel_id="berlin-central", guest_name=f"Ada {variant}", rooms=1, nights=2
        ),
        timeout=RPC_TIMEOUT_S,
    ),
    compensate=lambda stub, ctx, target: stub.CancelHotel(
        hotel_pb2.CancelHotelRequest(context=ctx, reservation_id=target), timeout=RPC_TIMEOUT_S
    ),
    id_of=lambda response: response.reservation_id,
    undone=lambda response: response.cancelled,
    records=lambda stub: {
        r.idempotency_key: r
        for r in stub.GetHotelInventory(
            hotel_pb2.GetHotelInventoryRequest(), timeout=RPC_TIMEOUT_S
        ).reservations
    },
    available=_hotel_available,
    exhausted_reason="NO_ROOMS_AVAILABLE",
)

CAR_RENTAL = Case(
    name="car_rental",
    stub_type=car_rental_pb2_grpc.CarRentalServiceStub,
    act=lambda stub, ctx, variant: stub.RentCar(
        car_rental_pb2.RentCarRequest(
            context=ctx, location="BER", car_class="compact", driver_name=f"Ada {variant}", days=3
        ),
        timeout=RPC_TIMEOUT_S,
    ),
    compensate=lambda stub, ctx, target: stub.CancelCarRental(
        car_rental_pb2.CancelCarRentalRequest(context=ctx, rental_id=target),
        timeout=RPC_TIMEOUT_S,
    ),
    id_of=lambda response: response.rental_id,
    undone=lambda response: response.cancelled,
    records=lambda stub: {
        r.idempotency_key: r
        for r in stub.GetCarInventory(
            car_rental_pb2.GetCarInventoryRequest(), timeout=RPC_TIMEOUT_S
        ).rentals
    },
    available=_car_available,
    exhausted_reason="NO_CARS_AVAILABLE",
)

INVENTORY = Case(
    name="inventory",
    stub_type=inventory_pb2_grpc.InventoryServiceStub,
    act=lambda stub, ctx, variant: stub.ReserveInventory(
        inventory_pb2.ReserveInventoryRequest(
            context=ctx,
            order_id=f"order {variant}",
            items=[command_pb2.LineItem(sku="sku-1", quantity=1)],
        ),
        timeout=RPC_TIMEOUT_S,
    ),
    compensate=lambda stub, ctx, target: stub.ReleaseInventory(
        inventory_pb2.ReleaseInventoryRequest(context=ctx, reservation_id=target),
        timeout=RPC_TIMEOUT_S,
    ),
    id_of=lambda response: response.reservation_id,
    undone=lambda response: response.released,
    records=lambda stub: {
        r.idempotency_key: r
        for r in stub.GetInventoryStock(
            inventory_pb2.GetInventoryStockRequest(), timeout=RPC_TIMEOUT_S
        ).reservations
    },
    available=_stock_available,
    exhausted_reason="INSUFFICIENT_STOCK",
)

PAYMENT = Case(
    name="payment",
    stub_type=payment_pb2_grpc.PaymentServiceStub,
    act=lambda stub, ctx, variant: stub.ChargePayment(
        payment_pb2.ChargePaymentRequest(
            context=ctx,
            customer_id=f"customer {variant}",
            amount=command_pb2.Money(currency_code="EUR", amount_minor=1250),
        ),
        timeout=RPC_TIMEOUT_S,
    ),
    compensate=lambda stub, ctx, target: stub.RefundPayment(
        payment_pb2.RefundPaymentRequest(context=ctx, payment_id=target), timeout=RPC_TIMEOUT_S
    ),
    id_of=lambda response: response.payment_id,
    undone=lambda response: response.refunded,
    records=lambda stub: {
        p.idempotency_key: p
        for p in stub.GetPaymentLedger(
            payment_pb2.GetPaymentLedgerRequest(), timeout=RPC_TIMEOUT_S
        ).payments
    },
    available=None,
)

SHIPPING = Case(
    name="shipping",
    stub_type=shipping_pb2_grpc.ShippingServiceStub,
    act=lambda stub, ctx, variant: stub.ScheduleShipment(
        shipping_pb2.ScheduleShipmentRequest(
            context=ctx, order_id="order-1", address=f"{variant} Main Street, Berlin"
        ),
        timeout=RPC_TIMEOUT_S,
    ),
    compensate=lambda stub, ctx, target: stub.CancelShipment(
        shipping_pb2.CancelShipmentRequest(context=ctx, shipment_id=target),
        timeout=RPC_TIMEOUT_S,
    ),
    id_of=lambda response: response.shipment_id,
    undone=lambda response: response.cancelled,
    records=lambda stub: {
        s.idempotency_key: s
        for s in stub.GetShipments(
            shipping_pb2.GetShipmentsRequest(), timeout=RPC_TIMEOUT_S
        ).shipments
    },
    available=None,
)

COMPENSABLE = [FLIGHT, HOTEL, CAR_RENTAL, INVENTORY, PAYMENT, SHIPPING]
WITH_CAPACITY = [case for case in COMPENSABLE if case.available is not None]
