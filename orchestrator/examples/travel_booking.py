"""travel_booking: book a flight, a hotel and a car at once, then charge the traveller.

The three bookings are a Parallel group. If one is refused, the others are awaited
and undone; if the charge is declined, the car, hotel and flight are cancelled in
that order.
"""

from __future__ import annotations

from google.protobuf.message import Message

from orchestrator.core.definition import Call, Parallel, SagaDefinition, Step, StepContext
from orchestrator.examples.checks import (
    expect_message,
    expect_result,
    require_money,
    require_positive,
)
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.examples.v1.outputs_pb2 import TravelBookingOutput
from saga.participants.car_rental.v1 import car_rental_pb2 as car
from saga.participants.flight.v1 import flight_pb2 as flight
from saga.participants.hotel.v1 import hotel_pb2 as hotel
from saga.participants.payment.v1 import payment_pb2 as payment

FLIGHT = "saga.participants.flight.v1.FlightService"
HOTEL = "saga.participants.hotel.v1.HotelService"
CAR = "saga.participants.car_rental.v1.CarRentalService"
PAYMENT = "saga.participants.payment.v1.PaymentService"


def _input(ctx: StepContext) -> TravelBookingInput:
    return expect_message(TravelBookingInput, ctx.input, "the saga's input")


def book_flight(ctx: StepContext) -> flight.BookFlightRequest:
    trip = _input(ctx)
    return flight.BookFlightRequest(
        flight_number=trip.flight_number,
        passenger_name=trip.traveller_name,
        seats=trip.seats if trip.HasField("seats") else 1,
    )


def cancel_flight(ctx: StepContext) -> flight.CancelFlightRequest:
    booked = ctx.result
    return flight.CancelFlightRequest(
        booking_id=booked.booking_id if isinstance(booked, flight.BookFlightResponse) else ""
    )


def book_hotel(ctx: StepContext) -> hotel.BookHotelRequest:
    trip = _input(ctx)
    return hotel.BookHotelRequest(
        hotel_id=trip.hotel_id,
        guest_name=trip.traveller_name,
        rooms=trip.rooms if trip.HasField("rooms") else 1,
        nights=trip.nights,
    )


def cancel_hotel(ctx: StepContext) -> hotel.CancelHotelRequest:
    booked = ctx.result
    return hotel.CancelHotelRequest(
        reservation_id=booked.reservation_id if isinstance(booked, hotel.BookHotelResponse) else ""
    )


def rent_car(ctx: StepContext) -> car.RentCarRequest:
    trip = _input(ctx)
    return car.RentCarRequest(
        location=trip.car_location,
        car_class=trip.car_class,
        driver_name=trip.traveller_name,
        days=trip.car_days,
    )


def cancel_car(ctx: StepContext) -> car.CancelCarRentalRequest:
    rented = ctx.result
    return car.CancelCarRentalRequest(
        rental_id=rented.rental_id if isinstance(rented, car.RentCarResponse) else ""
    )


def charge(ctx: StepContext) -> payment.ChargePaymentRequest:
    trip = _input(ctx)
    return payment.ChargePaymentRequest(customer_id=trip.customer_id, amount=trip.amount)


def refund(ctx: StepContext) -> payment.RefundPaymentRequest:
    charged = ctx.result
    return payment.RefundPaymentRequest(
        payment_id=charged.payment_id if isinstance(charged, payment.ChargePaymentResponse) else ""
    )


def booked(ctx: StepContext) -> TravelBookingOutput:
    flight_booked = expect_result(ctx, "book_flight", flight.BookFlightResponse)
    hotel_booked = expect_result(ctx, "book_hotel", hotel.BookHotelResponse)
    car_rented = expect_result(ctx, "rent_car", car.RentCarResponse)
    charged = expect_result(ctx, "charge_payment", payment.ChargePaymentResponse)
    return TravelBookingOutput(
        booking_id=flight_booked.booking_id,
        reservation_id=hotel_booked.reservation_id,
        rental_id=car_rented.rental_id,
        payment_id=charged.payment_id,
    )


def check_trip(message: Message) -> None:
    trip = expect_message(TravelBookingInput, message, "the saga's input")
    require_positive(nights=trip.nights, car_days=trip.car_days)
    if trip.HasField("seats"):
        require_positive(seats=trip.seats)
    if trip.HasField("rooms"):
        require_positive(rooms=trip.rooms)
    require_money("amount", trip.amount)


TRAVEL_BOOKING = SagaDefinition(
    name="travel_booking",
    version=1,
    input_type=TravelBookingInput,
    description="Book a flight, a hotel and a car at once, then charge the traveller.",
    check_input=check_trip,
    output_type=TravelBookingOutput,
    output=booked,
    steps=(
        Parallel(
            "book_travel",
            (
                Step(
                    "book_flight",
                    participant="flight",
                    action=Call(FLIGHT, "BookFlight", book_flight),
                    compensation=Call(FLIGHT, "CancelFlight", cancel_flight),
                ),
                Step(
                    "book_hotel",
                    participant="hotel",
                    action=Call(HOTEL, "BookHotel", book_hotel),
                    compensation=Call(HOTEL, "CancelHotel", cancel_hotel),
                ),
                Step(
                    "rent_car",
                    participant="car_rental",
                    action=Call(CAR, "RentCar", rent_car),
                    compensation=Call(CAR, "CancelCarRental", cancel_car),
                ),
            ),
        ),
        Step(
            "charge_payment",
            participant="payment",
            action=Call(PAYMENT, "ChargePayment", charge),
            compensation=Call(PAYMENT, "RefundPayment", refund),
        ),
    ),
)
