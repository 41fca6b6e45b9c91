"""The peer: the benchmark saga as a DBOS Transact workflow, on the same participants.

Runs only in the virtualenv the harness makes for it (.bench/dbos-venv), with
the repository on PYTHONPATH for `bench` and the generated stubs in `saga`:
DBOS never becomes a dependency of the project. The workflow is written the
way DBOS documents sagas: each participant call is a step (DBOS checkpoints
its output in PostgreSQL before the workflow goes on), and a rejected charge
is caught in the workflow, which then runs the compensations as steps in
reverse order. The workflow id is the saga id, and the commands carry the
same idempotency keys as the orchestrator's.

DBOS runs on its own throwaway database, in its default configuration but for
a quieter log level. The load runs in this process (the closed loop of
bench/load.py); a saga is complete when the awaited workflow returns, which
DBOS does after committing the workflow's result.

    python -m bench.dbos_saga --database URL --participants HOST:PORT --variant success \
        --n 300 --concurrency 1 --warmup 50
    python -m bench.dbos_saga --database URL --init-only
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from importlib import metadata
from typing import Any

import grpc
from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench.load import drive
from bench.workload import (
    STEP_TIMEOUT_SECONDS,
    TERMINAL_FAILED,
    TERMINAL_OK,
    VARIANTS,
    book_flight_request,
    book_hotel_request,
    cancel_flight_request,
    cancel_hotel_request,
    charge_request,
    command_context,
    refund_request,
    trip_input,
)
from saga.participants.flight.v1 import flight_pb2_grpc
from saga.participants.hotel.v1 import hotel_pb2_grpc
from saga.participants.payment.v1 import payment_pb2_grpc

logger = logging.getLogger("bench.dbos_saga")


class Rejected(Exception):
    """The participant refused the command (FAILED_PRECONDITION); picklable for DBOS."""


class Participants:
    """One channel to the participants process for the life of the process."""

    channel: grpc.aio.Channel
    flight: Any
    hotel: Any
    payment: Any

    @classmethod
    def connect(cls, address: str) -> None:
        cls.channel = grpc.aio.insecure_channel(address)
        cls.flight = flight_pb2_grpc.FlightServiceStub(cls.channel)
        cls.hotel = hotel_pb2_grpc.HotelServiceStub(cls.channel)
        cls.payment = payment_pb2_grpc.PaymentServiceStub(cls.channel)


async def _send(method: Any, request: Any, saga_id: str, step: str, compensating: bool) -> Any:
    request.context.CopyFrom(command_context(saga_id, step, compensating=compensating))
    try:
        return await method(request, timeout=STEP_TIMEOUT_SECONDS, wait_for_ready=True)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
            raise Rejected(error.details()) from None
        raise RuntimeError(f"{step}: {error.code().name}: {error.details()}") from None


@DBOS.step()
async def book_flight(saga_id: str, variant: str) -> str:
    request = book_flight_request(trip_input(variant))
    reply = await _send(Participants.flight.BookFlight, request, saga_id, "book_flight", False)
    return str(reply.booking_id)


@DBOS.step()
async def cancel_flight(saga_id: str, booking_id: str) -> bool:
    request = cancel_flight_request(booking_id)
    reply = await _send(Participants.flight.CancelFlight, request, saga_id, "book_flight", True)
    return bool(reply.cancelled)


@DBOS.step()
async def book_hotel(saga_id: str, variant: str) -> str:
    request = book_hotel_request(trip_input(variant))
    reply = await _send(Participants.hotel.BookHotel, request, saga_id, "book_hotel", False)
    return str(reply.reservation_id)


@DBOS.step()
async def cancel_hotel(saga_id: str, reservation_id: str) -> bool:
    request = cancel_hotel_request(reservation_id)
    reply = await _send(Participants.hotel.CancelHotel, request, saga_id, "book_hotel", True)
    return bool(reply.cancelled)


@DBOS.step()
async def charge_payment(saga_id: str, variant: str) -> str:
    request = charge_request(trip_input(variant))
    method = Participants.payment.ChargePayment
    reply = await _send(method, request, saga_id, "charge_payment", False)
    return str(reply.payment_id)


@DBOS.step()
async def refund_payment(saga_id: str, payment_id: str) -> bool:
    request = refund_request(payment_id)
    method = Participants.payment.RefundPayment
    reply = await _send(method, request, saga_id, "charge_payment", True)
    return bool(reply.refunded)


@DBOS.workflow()
async def bench_trip(saga_id: str, variant: str) -> str:
    """Book the flight and the hotel, charge; on a declined charge undo the two bookings."""
    booking_id = await book_flight(saga_id, variant)
    reservation_id = await book_hotel(saga_id, variant)
    try:
        await charge_payment(saga_id, variant)
    except Rejected:
        await cancel_hotel(saga_id, reservation_id)
        await cancel_flight(saga_id, booking_id)
        return TERMINAL_FAILED
    return TERMINAL_OK


async def run(args: argparse.Namespace) -> None:
    config: DBOSConfig = {
        "name": "saga-bench",
        "system_database_url": args.database,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        if args.init_only:
            # Launched and idle: what DBOS commits with no load (its background work).
            await asyncio.sleep(args.idle_seconds)
            return
        Participants.connect(args.participants)

        async def run_one(_index: int) -> tuple[str, str, float]:
            saga_id = str(uuid.uuid4())
            with SetWorkflowID(saga_id):
                status = await bench_trip(saga_id, args.variant)
            return saga_id, status, time.perf_counter()

        await drive(
            args.n,
            args.concurrency,
            args.warmup,
            run_one,
            lambda: {"dbos_version": metadata.version("dbos")},
            args.seconds,
        )
        await Participants.channel.close()
    finally:
        DBOS.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_saga", description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("--participants", help="HOST:PORT of bench.participant")
    parser.add_argument("--variant", choices=VARIANTS, default="success")
    parser.add_argument("--n", type=int, default=0, help="measured sagas (0: --seconds)")
    parser.add_argument("--seconds", type=float, help="measured load for this long")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--init-only", action="store_true", help="create DBOS's tables and exit")
    parser.add_argument(
        "--idle-seconds", type=float, default=0.0, help="with --init-only: stay idle this long"
    )
    args = parser.parse_args()
    if not args.init_only and not args.participants:
        parser.error("--participants is required unless --init-only")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
