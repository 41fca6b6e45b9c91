"""Business rules and their rejections: capacity, unknown items, all-or-nothing stock,
charge limits, refunds, unserved addresses and request validation."""

from __future__ import annotations

import grpc
import pytest

from saga.participants.car_rental.v1 import car_rental_pb2, car_rental_pb2_grpc
from saga.participants.common.v1 import command_pb2
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.participants.hotel.v1 import hotel_pb2, hotel_pb2_grpc
from saga.participants.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from saga.participants.payment.v1 import payment_pb2, payment_pb2_grpc
from saga.participants.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from tests.participants.harness import (
    CANCELLED,
    RPC_TIMEOUT_S,
    WITH_CAPACITY,
    Case,
    ParticipantsProcess,
    command,
    new_saga,
    rejection_of,
)

pytestmark = pytest.mark.e2e

CAPACITY = 2
MAX_CHARGE_MINOR = 10_000


@pytest.fixture(scope="module")
def small(launch_shared) -> ParticipantsProcess:
    """Participants with a tiny catalogue and charge limit, shared by this module."""
    return launch_shared("--capacity", str(CAPACITY), "--max-charge-minor", str(MAX_CHARGE_MINOR))


@pytest.fixture
def channel(small: ParticipantsProcess):
    with grpc.insecure_channel(small.address) as channel:
        yield channel


def money(amount_minor: int) -> command_pb2.Money:
    return command_pb2.Money(currency_code="EUR", amount_minor=amount_minor)


def stock(stub) -> dict[str, int]:
    levels = stub.GetInventoryStock(inventory_pb2.GetInventoryStockRequest(), timeout=RPC_TIMEOUT_S)
    return {level.sku: level.available for level in levels.stock}


@pytest.mark.parametrize("case", WITH_CAPACITY, ids=str)
def test_exhausted_capacity_is_rejected_with_the_same_answer_on_repeat(case: Case, channel):
    stub, saga = case.stub(channel), new_saga()
    for unit in range(CAPACITY):
        case.act(stub, command(saga, f"take-{unit}"), "a")

    rejection = rejection_of(lambda: case.act(stub, command(saga, "one-too-many"), "a"))
    case.compensate(stub, command(saga, "take-0", compensation=True), "")
    repeat = rejection_of(lambda: case.act(stub, command(saga, "one-too-many"), "a"))

    assert rejection.code == grpc.StatusCode.FAILED_PRECONDITION
    assert (rejection.reason, rejection.domain) == (
        case.exhausted_reason,
        f"{case.name}.participants.saga",
    )
    assert repeat == rejection, "a stored rejection is replayed even once capacity is back"
    assert case.available(stub) == 1
    assert f"{saga}:one-too-many" not in case.records(stub)


UNKNOWN_ITEMS = [
    pytest.param(
        lambda channel, ctx: flight_pb2_grpc.FlightServiceStub(channel).BookFlight(
            flight_pb2.BookFlightRequest(
                context=ctx, flight_number="XX999", passenger_name="Ada", seats=1
            ),
            timeout=RPC_TIMEOUT_S,
        ),
        "UNKNOWN_FLIGHT",
        id="flight",
    ),
    pytest.param(
        lambda channel, ctx: hotel_pb2_grpc.HotelServiceStub(channel).BookHotel(
            hotel_pb2.BookHotelRequest(
                context=ctx, hotel_id="atlantis", guest_name="Ada", rooms=1, nights=1
            ),
            timeout=RPC_TIMEOUT_S,
        ),
        "UNKNOWN_HOTEL",
        id="hotel",
    ),
    pytest.param(
        lambda channel, ctx: car_rental_pb2_grpc.CarRentalServiceStub(channel).RentCar(
            car_rental_pb2.RentCarRequest(
                context=ctx, location="BER", car_class="limousine", driver_name="Ada", days=1
            ),
            timeout=RPC_TIMEOUT_S,
        ),
        "UNKNOWN_CAR_CLASS",
        id="car_rental",
    ),
    pytest.param(
        lambda channel, ctx: inventory_pb2_grpc.InventoryServiceStub(channel).ReserveInventory(
            inventory_pb2.ReserveInventoryRequest(
                context=ctx, order_id="o-1", items=[command_pb2.LineItem(sku="sku-99", quantity=1)]
            ),
            timeout=RPC_TIMEOUT_S,
        ),
        "UNKNOWN_SKU",
        id="inventory",
    ),
]


@pytest.mark.parametrize(("send", "reason"), UNKNOWN_ITEMS)
def test_unknown_item_is_a_business_rejection(send, reason, channel):
    rejection = rejection_of(lambda: send(channel, command(new_saga(), "step")))

    assert (rejection.code, rejection.reason) == (grpc.StatusCode.FAILED_PRECONDITION, reason)


def test_inventory_reserves_every_line_item_or_none(channel):
    stub = inventory_pb2_grpc.InventoryServiceStub(channel)
    before = stock(stub)
    items = [
        command_pb2.LineItem(sku="sku-2", quantity=1),
        command_pb2.LineItem(sku="sku-3", quantity=CAPACITY + 1),
    ]

    rejection = rejection_of(
        lambda: stub.ReserveInventory(
            inventory_pb2.ReserveInventoryRequest(
                context=command(new_saga(), "reserve"), order_id="o-1", items=items
            ),
            timeout=RPC_TIMEOUT_S,
        )
    )
    stub.ReserveInventory(
        inventory_pb2.ReserveInventoryRequest(
            context=command(new_saga(), "reserve"), order_id="o-2", items=items[:1] * 2
        ),
        timeout=RPC_TIMEOUT_S,
    )

    assert rejection.reason == "INSUFFICIENT_STOCK"
    assert "sku-3" in rejection.message
    assert stock(stub) == {**before, "sku-2": before["sku-2"] - 2}


def test_charge_above_the_limit_is_declined(channel):
    stub = payment_pb2_grpc.PaymentServiceStub(channel)
    saga = new_saga()

    rejection = rejection_of(
        lambda: stub.ChargePayment(
            payment_pb2.ChargePaymentRequest(
                context=command(saga, "charge"),
                customer_id="c-1",
                amount=money(MAX_CHARGE_MINOR + 1),
            ),
            timeout=RPC_TIMEOUT_S,
        )
    )
    at_limit = stub.ChargePayment(
        payment_pb2.ChargePaymentRequest(
            context=command(saga, "charge-at-limit"),
            customer_id="c-1",
            amount=money(MAX_CHARGE_MINOR),
        ),
        timeout=RPC_TIMEOUT_S,
    )

    assert (rejection.code, rejection.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CARD_DECLINED",
    )
    assert at_limit.amount == money(MAX_CHARGE_MINOR)


def test_refund_cancels_the_charge_and_reports_the_amount(channel):
    stub = payment_pb2_grpc.PaymentServiceStub(channel)
    saga = new_saga()
    charge = stub.ChargePayment(
        payment_pb2.ChargePaymentRequest(
            context=command(saga, "charge"), customer_id="c-1", amount=money(4200)
        ),
        timeout=RPC_TIMEOUT_S,
    )

    refund = stub.RefundPayment(
        payment_pb2.RefundPaymentRequest(context=command(saga, "charge", compensation=True)),
        timeout=RPC_TIMEOUT_S,
    )

    assert (refund.payment_id, refund.refunded, refund.amount) == (
        charge.payment_id,
        True,
        money(4200),
    )
    ledger = stub.GetPaymentLedger(payment_pb2.GetPaymentLedgerRequest(), timeout=RPC_TIMEOUT_S)
    [payment] = [p for p in ledger.payments if p.payment_id == charge.payment_id]
    assert (payment.state, payment.amount, payment.saga_id) == (CANCELLED, money(4200), saga)


@pytest.mark.parametrize("address", ["12 Nowhere Road", "Middle of NOWHERE"])
def test_address_in_nowhere_is_not_served(address, channel):
    stub = shipping_pb2_grpc.ShippingServiceStub(channel)

    rejection = rejection_of(
        lambda: stub.ScheduleShipment(
            shipping_pb2.ScheduleShipmentRequest(
                context=command(new_saga(), "ship"), order_id="o-1", address=address
            ),
            timeout=RPC_TIMEOUT_S,
        )
    )

    assert (rejection.code, rejection.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ADDRESS_NOT_SERVED",
    )
    assert address not in rejection.message


INVALID_BOOKINGS = [
    pytest.param({"seats": 0}, id="no-seats"),
    pytest.param({"seats": -1}, id="negative-seats"),
    pytest.param({"flight_number": ""}, id="no-flight"),
    pytest.param({"passenger_name": "  "}, id="blank-passenger"),
]


@pytest.mark.parametrize("change", INVALID_BOOKINGS)
def test_invalid_booking_is_rejected_and_the_key_stays_free(change, channel):
    stub = flight_pb2_grpc.FlightServiceStub(channel)
    valid = {"flight_number": "BA900", "passenger_name": "Ada", "seats": 1}
    ctx = command(new_saga(), "book")

    rejection = rejection_of(
        lambda: stub.BookFlight(
            flight_pb2.BookFlightRequest(context=ctx, **{**valid, **change}),
            timeout=RPC_TIMEOUT_S,
        )
    )
    booked = stub.BookFlight(
        flight_pb2.BookFlightRequest(context=ctx, **valid), timeout=RPC_TIMEOUT_S
    )

    assert rejection.code == grpc.StatusCode.INVALID_ARGUMENT
    assert booked.booking_id
    stub.CancelFlight(
        flight_pb2.CancelFlightRequest(context=command(ctx.saga_id, "book", compensation=True)),
        timeout=RPC_TIMEOUT_S,
    )


@pytest.mark.parametrize(
    "amount",
    [
        pytest.param(money(-5), id="negative"),
        pytest.param(money(0), id="zero"),
        pytest.param(command_pb2.Money(amount_minor=100), id="no-currency"),
    ],
)
def test_invalid_charge_is_rejected(amount, channel):
    stub = payment_pb2_grpc.PaymentServiceStub(channel)

    rejection = rejection_of(
        lambda: stub.ChargePayment(
            payment_pb2.ChargePaymentRequest(
                context=command(new_saga(), "charge"), customer_id="c-1", amount=amount
            ),
            timeout=RPC_TIMEOUT_S,
        )
    )

    assert rejection.code == grpc.StatusCode.INVALID_ARGUMENT
