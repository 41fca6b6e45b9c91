"""The ceilings: the durable minimum of this design, hand-written, with no framework around it.

One asyncio loop, psycopg 3 and grpc.aio. Per saga, the same writes, each
committed before the command it announces (or, for the outcome, before the
next step starts); two writers commit them:

- `--writer per-write` (the "per-write loop"): an async pool of autocommit
  connections, each write its own statement and its own commit;
- `--writer group` (the "group-commit ceiling"): ONE batching writer on one
  connection. Every write joins a queue; the writer takes everything queued
  at that moment and commits it in one transaction (pipelined statements),
  while the next writes queue up behind it. No timer: a lone write goes at
  once. This is what the orchestrator's group commit does
  (orchestrator/store/group_commit.py), without anything else around it.

The writes of one saga, and the commits the per-write loop makes:

    success       insert saga | 3 x (step intent, send, step outcome) | saga COMPLETED
                  = 1 + 3 x 2 + 1 = 8 commits
    compensation  insert saga | 2 x (intent, send, outcome) | step 3 intent, send, and the
                  rejection with the saga turning COMPENSATING in one transaction |
                  2 x (compensation intent, send, outcome) | saga FAILED
                  = 1 + 4 + 2 + 4 + 1 = 12 commits

The group writer makes at most that many, and far fewer when sagas run at once.

The same typed commands with the same idempotency keys go to the same
participants as the orchestrator's. The load runs in this process (the
closed loop of bench/load.py), so its CPU includes the load's own small cost;
a saga is complete when its terminal commit returns, so nothing is polled.
Timestamps are the server's (`now()` of the writing transaction), as the
latency read after the run (bench/latency.py) expects.

    python -m bench.ceiling --database URL --participants HOST:PORT --variant success \
        --writer group --seconds 10 --concurrency 1 --warmup 50
    python -m bench.ceiling --database URL --init-only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import grpc
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bench.load import drive
from bench.workload import (
    STEP_TIMEOUT_SECONDS,
    STEPS,
    TERMINAL_FAILED,
    TERMINAL_OK,
    VARIANTS,
    book_flight_request,
    book_hotel_request,
    cancel_flight_request,
    cancel_hotel_request,
    charge_request,
    command_context,
    trip_input,
    trip_payload,
)
from saga.participants.flight.v1 import flight_pb2_grpc
from saga.participants.hotel.v1 import hotel_pb2_grpc
from saga.participants.payment.v1 import payment_pb2_grpc

logger = logging.getLogger("bench.ceiling")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ceiling_sagas (
        saga_id text PRIMARY KEY, status text NOT NULL, payload jsonb NOT NULL,
        create_time timestamptz NOT NULL DEFAULT now(),
        update_time timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS ceiling_steps (
        saga_id text NOT NULL, step_index integer NOT NULL, status text NOT NULL,
        result bytea, update_time timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (saga_id, step_index))""",
)
_INSERT_SAGA = "INSERT INTO ceiling_sagas (saga_id, status, payload) VALUES (%s, 'RUNNING', %s)"
_SET_SAGA = "UPDATE ceiling_sagas SET status = %s, update_time = now() WHERE saga_id = %s"
_STEP_INTENT = "INSERT INTO ceiling_steps (saga_id, step_index, status) VALUES (%s, %s, 'STARTED')"
_SET_STEP = (
    "UPDATE ceiling_steps SET status = %s, result = %s, update_time = now() "
    "WHERE saga_id = %s AND step_index = %s"
)


Write = tuple[str, tuple[Any, ...]]
"""One statement and its parameters."""

WRITERS = ("per-write", "group")


class PerWriteWriter:
    """Each call one transaction on a pooled autocommit connection: the per-write loop."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self.commits = 0

    async def commit(self, *writes: Write) -> None:
        async with self._pool.connection() as connection:
            if len(writes) == 1:
                await connection.execute(*writes[0])
            else:
                async with connection.transaction():
                    for statement, params in writes:
                        await connection.execute(statement, params)
        self.commits += 1

    async def close(self) -> None:
        pass


class GroupWriter:
    """One writer task: everything queued when it looks is one transaction (no timer).

    Every caller awaits its own writes' commit before it goes on, so each
    intent is durable before its command, as with the per-write loop.
    """

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._queue: list[tuple[tuple[Write, ...], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0

    async def commit(self, *writes: Write) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((writes, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._flush(), name="ceiling-group-writer")
        await done

    async def _flush(self) -> None:
        async with self._pool.connection() as connection:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    # BEGIN, the statements and COMMIT in one pipeline: one round trip's
                    # wait. Not `transaction()`, which waits for its BEGIN's answer even in
                    # a pipeline (a round trip more), as the orchestrator's write does.
                    async with connection.pipeline():
                        await connection.execute("BEGIN", prepare=False)
                        for writes, _ in batch:
                            for statement, params in writes:
                                await connection.execute(statement, params)
                        await connection.execute("COMMIT", prepare=False)
                except Exception as error:
                    if connection.info.transaction_status is not TransactionStatus.IDLE:
                        with contextlib.suppress(Exception):
                            await connection.execute("ROLLBACK", prepare=False)
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                    continue
                self.commits += 1
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


class Rejected(Exception):
    """The participant refused the command (FAILED_PRECONDITION): nothing happened there."""


class Ceiling:
    """Runs sagas with the minimal write-ahead discipline; counts its own commits."""

    def __init__(
        self, writer: PerWriteWriter | GroupWriter, participants: str, variant: str
    ) -> None:
        self._writer = writer
        self._channel = grpc.aio.insecure_channel(participants)
        self._flight = flight_pb2_grpc.FlightServiceStub(self._channel)
        self._hotel = hotel_pb2_grpc.HotelServiceStub(self._channel)
        self._payment = payment_pb2_grpc.PaymentServiceStub(self._channel)
        self._trip = trip_input(variant)
        self._payload = Jsonb(trip_payload(variant))

    async def close(self) -> None:
        await self._channel.close()
        await self._writer.close()

    async def _write(self, statement: str, params: tuple[Any, ...]) -> None:
        await self._writer.commit((statement, params))

    async def _send(self, method: Any, request: Any) -> Any:
        try:
            reply = await method(request, timeout=STEP_TIMEOUT_SECONDS, wait_for_ready=True)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise Rejected(error.details()) from None
            raise
        return reply

    async def _step(self, saga_id: str, index: int, method: Any, request: Any) -> Any:
        """Intent committed, command sent, outcome committed (a rejection is left to the caller)."""
        await self._write(_STEP_INTENT, (saga_id, index))
        request.context.CopyFrom(command_context(saga_id, STEPS[index]))
        reply = await self._send(method, request)
        await self._write(_SET_STEP, ("COMPLETED", reply.SerializeToString(), saga_id, index))
        return reply

    async def _compensate(self, saga_id: str, index: int, method: Any, request: Any) -> None:
        await self._write(_SET_STEP, ("COMPENSATING", None, saga_id, index))
        request.context.CopyFrom(command_context(saga_id, STEPS[index], compensating=True))
        await self._send(method, request)
        await self._write(_SET_STEP, ("COMPENSATED", None, saga_id, index))

    async def run_saga(self, _index: int) -> tuple[str, str, float]:
        saga_id = str(uuid.uuid4())
        await self._write(_INSERT_SAGA, (saga_id, self._payload))
        trip = self._trip
        flight = await self._step(saga_id, 0, self._flight.BookFlight, book_flight_request(trip))
        hotel = await self._step(saga_id, 1, self._hotel.BookHotel, book_hotel_request(trip))
        try:
            await self._step(saga_id, 2, self._payment.ChargePayment, charge_request(trip))
        except Rejected as rejection:
            await self._writer.commit(
                (_SET_STEP, ("FAILED", str(rejection).encode(), saga_id, 2)),
                (_SET_SAGA, ("COMPENSATING", saga_id)),
            )
            cancel_hotel = cancel_hotel_request(hotel.reservation_id)
            await self._compensate(saga_id, 1, self._hotel.CancelHotel, cancel_hotel)
            cancel_flight = cancel_flight_request(flight.booking_id)
            await self._compensate(saga_id, 0, self._flight.CancelFlight, cancel_flight)
            await self._write(_SET_SAGA, (TERMINAL_FAILED, saga_id))
            return saga_id, TERMINAL_FAILED, time.perf_counter()
        await self._write(_SET_SAGA, (TERMINAL_OK, saga_id))
        return saga_id, TERMINAL_OK, time.perf_counter()


async def run(args: argparse.Namespace) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        args.database,
        kwargs={"autocommit": True},
        min_size=args.pool_size,
        max_size=args.pool_size,
        open=False,
    )
    await pool.open(wait=True, timeout=30.0)
    try:
        async with pool.connection() as connection:
            for statement in SCHEMA:
                await connection.execute(statement)
        if args.init_only:
            return
        writer = GroupWriter(pool) if args.writer == "group" else PerWriteWriter(pool)
        ceiling = Ceiling(writer, args.participants, args.variant)
        try:
            await drive(
                args.n,
                args.concurrency,
                args.warmup,
                ceiling.run_saga,
                lambda: {
                    "self_counted_commits": writer.commits,
                    "pool_size": args.pool_size,
                    "writer": args.writer,
                },
                args.seconds,
            )
        finally:
            await ceiling.close()
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("--participants", help="HOST:PORT of bench.participant")
    parser.add_argument("--variant", choices=VARIANTS, default="success")
    parser.add_argument("--writer", choices=WRITERS, default="per-write")
    parser.add_argument("--n", type=int, default=0, help="measured sagas (0: --seconds)")
    parser.add_argument("--seconds", type=float, help="measured load for this long")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument(
        "--pool-size", type=int, default=8, help="connections (the group writer uses one)"
    )
    parser.add_argument("--init-only", action="store_true", help="create the tables and exit")
    args = parser.parse_args()
    if not args.init_only and not args.participants:
        parser.error("--participants is required unless --init-only")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
