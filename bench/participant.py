"""Light participants for the benchmark: Flight, Hotel and Payment on one gRPC port.

State lives in memory and every handler replies at once, so the participants'
cost stays small next to what is measured. The contract is the real one: an
idempotency key applies a command once and a repeat gets the stored answer
(a stored rejection too); a charge above DECLINE_ABOVE_MINOR is declined with
FAILED_PRECONDITION; a cancel finds its booking by id or, when the id is empty,
by the key of the action it undoes.

    python -m bench.participant --ready-file FILE [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import signal
from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message

from bench.workload import DECLINE_ABOVE_MINOR
from saga.participants.common.v1.command_pb2 import CommandContext
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.participants.hotel.v1 import hotel_pb2, hotel_pb2_grpc
from saga.participants.payment.v1 import payment_pb2, payment_pb2_grpc

logger = logging.getLogger("bench.participant")

Reply = TypeVar("Reply", bound=Message)


class Rejection(Exception):
    """A stored business refusal, answered again for a repeated key."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Ledger:
    """Idempotent command results and the live reservations of one service, in memory."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._ids = itertools.count(1)
        self.answers: dict[str, Message | Rejection] = {}
        self.by_action_key: dict[str, str] = {}
        self.active: set[str] = set()

    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def once(
        self, context: grpc.aio.ServicerContext[Any, Any], key: str, apply: Callable[[], Reply]
    ) -> Reply:
        """Apply `apply()` once per key; a repeat is answered from the stored outcome."""
        answer = self.answers.get(key)
        if answer is None:
            try:
                answer = apply()
            except Rejection as rejection:
                answer = rejection
            self.answers[key] = answer
        if isinstance(answer, Rejection):
            await context.abort(answer.code, answer.details)
        return cast(Reply, answer)

    def reserve(self, command: CommandContext) -> str:
        reservation = self.new_id()
        self.active.add(reservation)
        self.by_action_key[command.idempotency_key] = reservation
        return reservation

    def release(self, reservation: str, command: CommandContext) -> str:
        """Undo a reservation named by id or by its action's key; "" when there was none."""
        reservation = reservation or self.by_action_key.get(command.compensated_idempotency_key, "")
        if reservation in self.active:
            self.active.discard(reservation)
            return reservation
        return ""


class Flights(flight_pb2_grpc.FlightServiceServicer):
    def __init__(self) -> None:
        self.ledger = Ledger("fl")

    async def BookFlight(
        self, request: flight_pb2.BookFlightRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> flight_pb2.BookFlightResponse:
        def apply() -> flight_pb2.BookFlightResponse:
            booking = self.ledger.reserve(request.context)
            return flight_pb2.BookFlightResponse(
                booking_id=booking, flight_number=request.flight_number, seats=request.seats
            )

        return await self.ledger.once(context, request.context.idempotency_key, apply)

    async def CancelFlight(
        self, request: flight_pb2.CancelFlightRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> flight_pb2.CancelFlightResponse:
        def apply() -> flight_pb2.CancelFlightResponse:
            booking = self.ledger.release(request.booking_id, request.context)
            return flight_pb2.CancelFlightResponse(booking_id=booking, cancelled=bool(booking))

        return await self.ledger.once(context, request.context.idempotency_key, apply)


class Hotels(hotel_pb2_grpc.HotelServiceServicer):
    def __init__(self) -> None:
        self.ledger = Ledger("ho")

    async def BookHotel(
        self, request: hotel_pb2.BookHotelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> hotel_pb2.BookHotelResponse:
        def apply() -> hotel_pb2.BookHotelResponse:
            reservation = self.ledger.reserve(request.context)
            return hotel_pb2.BookHotelResponse(
                reservation_id=reservation, hotel_id=request.hotel_id, rooms=request.rooms
            )

        return await self.ledger.once(context, request.context.idempotency_key, apply)

    async def CancelHotel(
        self, request: hotel_pb2.CancelHotelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> hotel_pb2.CancelHotelResponse:
        def apply() -> hotel_pb2.CancelHotelResponse:
            reservation = self.ledger.release(request.reservation_id, request.context)
            return hotel_pb2.CancelHotelResponse(
                reservation_id=reservation, cancelled=bool(reservation)
            )

        return await self.ledger.once(context, request.context.idempotency_key, apply)


class Payments(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self) -> None:
        self.ledger = Ledger("pa")

    async def ChargePayment(
        self, request: payment_pb2.ChargePaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.ChargePaymentResponse:
        def apply() -> payment_pb2.ChargePaymentResponse:
            if request.amount.amount_minor > DECLINE_ABOVE_MINOR:
                raise Rejection(grpc.StatusCode.FAILED_PRECONDITION, "card declined: over limit")
            charge = self.ledger.reserve(request.context)
            return payment_pb2.ChargePaymentResponse(payment_id=charge, amount=request.amount)

        return await self.ledger.once(context, request.context.idempotency_key, apply)

    async def RefundPayment(
        self, request: payment_pb2.RefundPaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.RefundPaymentResponse:
        def apply() -> payment_pb2.RefundPaymentResponse:
            charge = self.ledger.release(request.payment_id, request.context)
            return payment_pb2.RefundPaymentResponse(payment_id=charge, refunded=bool(charge))

        return await self.ledger.once(context, request.context.idempotency_key, apply)


def _write_ready_file(path: str, address: str) -> None:
    """Atomically, so the harness never reads half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump({"address": address, "pid": os.getpid()}, handle)
    os.replace(tmp, path)


async def serve(host: str, port: int, ready_file: str | None) -> None:
    """Serve until SIGTERM or SIGINT; the ready file says where, as JSON {address, pid}."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    flight_pb2_grpc.add_FlightServiceServicer_to_server(Flights(), server)
    hotel_pb2_grpc.add_HotelServiceServicer_to_server(Hotels(), server)
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(Payments(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    address = f"{host}:{bound}"
    # Handlers before readiness: a SIGTERM right after it must stop us gracefully.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready_file:
        _write_ready_file(ready_file, address)
    logger.info("bench participants listening on %s", address)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.participant", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.host, args.port, args.ready_file))


if __name__ == "__main__":
    main()
