"""The load generator for our orchestrator: a separate process speaking gRPC.

Each saga is one ExecuteSaga call (`--completion execute`, the default), the public
API a client's `execute()` uses: the orchestrator answers when the saga's terminal
transition is committed, so completion is learned from the orchestrator itself, as
the ceilings and DBOS learn it in process, and nothing else runs beside the load.

`--completion poll` is the earlier way, kept to compare: StartSaga, then one poller
for all sagas in flight, a single indexed read on its own PostgreSQL connection (see
CompletionPoller for when it polls),

    SELECT saga_id, status FROM sagas WHERE saga_id = ANY(ids of due sagas)
        AND status IN ('COMPLETED', 'FAILED')

A saga whose terminal status is visible there is committed; the poll only
paces the closed loop (the next saga starts when it sees one end) and gives a
client-side latency kept in the JSON. The latency reported is the one the
orchestrator committed itself (create_time to the terminal update_time, read
from `sagas` after the run: bench/latency.py), so no poll delay is in it.
Polling GetSaga instead would cost the orchestrator two reads per poll and
per saga; this costs one read per poll for all of them, on a connection the
harness can tell apart: every statement it runs is counted (each is one
committed transaction, subtracted from the database's commits) and its
backend pid is reported (its CPU is subtracted from PostgreSQL's).

    python -m bench.loadgen --address HOST:PORT --database URL --variant success \
        --n 300 --concurrency 1 --warmup 50 [--completion execute|poll]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import statistics
import time
import uuid
from typing import Any

import grpc
import psycopg
from google.protobuf import struct_pb2

from bench.load import drive
from bench.workload import SAGA_TYPE, TERMINAL_FAILED, TERMINAL_OK, VARIANTS, trip_payload
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

logger = logging.getLogger("bench.loadgen")

START_TIMEOUT_SECONDS = 30.0
SAGA_TIMEOUT_SECONDS = 120.0
MAX_POLL_INTERVAL_SECONDS = 0.020
DUE_FRACTION = 0.5
"""A saga is first polled this fraction of the shortest recent run time after StartSaga
returned. The recent run times are what the poller itself saw, so they carry its own
delay d (the poll's round trip, wake-ups): with fraction f they settle at d / (1 - f)
whenever that exceeds the true run time. At 0.9 that was 10 d, about 20 ms at
concurrency 1, twice the saga's own run: the loop, not the orchestrator, set the pace.
At 0.5 the point is 2 d, below the run time, so the loop follows the saga."""
_TERMINAL_QUERY = (
    "SELECT saga_id, status FROM sagas WHERE saga_id = ANY(%s) "
    f"AND status IN ('{TERMINAL_OK}', '{TERMINAL_FAILED}')"
)


class CompletionPoller:
    """Resolves one future per watched saga when its terminal status is committed.

    Cheap by design, because the load generator shares two cores with what it
    measures: a saga is polled only once it is due (StartSaga returned at
    least DUE_FRACTION of the shortest recent run time ago), one query covers every due
    saga, and the poll interval is 2 % of the recent median run time, within
    [--poll-ms, 20 ms], so the detection delay stays a small, bounded part of
    the latency while the polls per saga stay few at any concurrency.
    """

    def __init__(self, connection: psycopg.AsyncConnection[Any], min_interval: float) -> None:
        self._connection = connection
        self._min_interval = min_interval
        self._waiting: dict[str, tuple[asyncio.Future[tuple[str, float]], float, float]] = {}
        self._recent: collections.deque[float] = collections.deque(maxlen=64)
        self._wake = asyncio.Event()
        # PostgreSQL counts a committed transaction for a new connection (the backend's
        # start-up) and one per autocommit statement; the poll is never prepared, which
        # would count one more.
        self.statements = 1
        self.polls = 0

    async def backend_pid(self) -> int:
        cursor = await self._connection.execute("SELECT pg_backend_pid()")
        self.statements += 1
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    def watch(self, saga_id: str) -> asyncio.Future[tuple[str, float]]:
        """A future for (status, time seen); the saga's StartSaga has just returned."""
        future: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
        returned = time.perf_counter()
        due = returned + DUE_FRACTION * min(self._recent, default=0.0)
        self._waiting[saga_id] = (future, returned, due)
        self._wake.set()
        return future

    def forget(self, saga_id: str) -> None:
        self._waiting.pop(saga_id, None)

    def interval(self) -> float:
        if not self._recent:
            return self._min_interval
        median = statistics.median(self._recent)
        return min(max(0.02 * median, self._min_interval), MAX_POLL_INTERVAL_SECONDS)

    async def run(self) -> None:
        """Query the due sagas every interval; between dues, sleep until the next one."""
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.perf_counter()
            due = [saga_id for saga_id, (_, _, at) in self._waiting.items() if at <= now]
            if not due:
                next_due = min(at for _, _, at in self._waiting.values())
                self._wake.clear()  # a newly watched saga may be due sooner: wake for it
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), next_due - now)
                continue
            cursor = await self._connection.execute(_TERMINAL_QUERY, (due,), prepare=False)
            self.statements += 1
            self.polls += 1
            rows = await cursor.fetchall()
            seen = time.perf_counter()
            for saga_id, status in rows:
                future, returned, _ = self._waiting.pop(saga_id, (None, 0.0, 0.0))
                if future is not None and not future.done():
                    self._recent.append(seen - returned)
                    future.set_result((status, seen))
            await asyncio.sleep(self.interval())


def _start_request(payload: struct_pb2.Struct) -> pb.StartSagaRequest:
    return pb.StartSagaRequest(
        saga_type=SAGA_TYPE, correlation_id=f"bench-{uuid.uuid4().hex}", payload=payload
    )


async def execute(args: argparse.Namespace) -> None:
    """Closed loop of ExecuteSaga calls: each answer is the ended saga."""
    payload = struct_pb2.Struct()
    payload.update(trip_payload(args.variant))
    channels = [grpc.aio.insecure_channel(address) for address in args.address]
    stubs = [pb_grpc.SagaOrchestratorStub(channel) for channel in channels]
    status_of = {pb.SAGA_STATUS_COMPLETED: TERMINAL_OK, pb.SAGA_STATUS_FAILED: TERMINAL_FAILED}

    async def run_one(index: int) -> tuple[str, str, float]:
        request = pb.ExecuteSagaRequest(start=_start_request(payload))
        try:
            reply = await stubs[index % len(stubs)].ExecuteSaga(
                request, timeout=SAGA_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            return "", f"EXECUTE_{error.code().name}", time.perf_counter()
        seen = time.perf_counter()
        return reply.saga.saga_id, status_of.get(reply.saga.status, "NOT_ENDED"), seen

    def details() -> dict[str, Any]:
        return {"completion": "execute"}

    try:
        await drive(args.n, args.concurrency, args.warmup, run_one, details, args.seconds)
    finally:
        for channel in channels:
            await channel.close()


async def poll(args: argparse.Namespace) -> None:
    """StartSaga, then CompletionPoller (the earlier loop, kept to compare)."""
    payload = struct_pb2.Struct()
    payload.update(trip_payload(args.variant))
    connection = await psycopg.AsyncConnection.connect(args.database, autocommit=True)
    poller = CompletionPoller(connection, args.poll_ms / 1000.0)
    observer_pid = await poller.backend_pid()
    polling = asyncio.create_task(poller.run())
    channels = [grpc.aio.insecure_channel(address) for address in args.address]
    stubs = [pb_grpc.SagaOrchestratorStub(channel) for channel in channels]

    async def run_one(index: int) -> tuple[str, str, float]:
        try:
            reply = await stubs[index % len(stubs)].StartSaga(
                _start_request(payload), timeout=START_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            return "", f"START_{error.code().name}", time.perf_counter()
        try:
            status, seen = await asyncio.wait_for(poller.watch(reply.saga_id), SAGA_TIMEOUT_SECONDS)
        except TimeoutError:
            poller.forget(reply.saga_id)
            return reply.saga_id, "TIMEOUT", time.perf_counter()
        return reply.saga_id, status, seen

    def details() -> dict[str, Any]:
        return {
            "completion": "poll",
            "observer_pid": observer_pid,
            "observer_commits": poller.statements,
            "polls": poller.polls,
            "min_poll_ms": args.poll_ms,
            "last_poll_interval_ms": poller.interval() * 1000.0,
        }

    try:
        await drive(args.n, args.concurrency, args.warmup, run_one, details, args.seconds)
    finally:
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)
        for channel in channels:
            await channel.close()
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument(
        "--address",
        action="append",
        required=True,
        help="an orchestrator replica's HOST:PORT; repeated, sagas go to each in turn",
    )
    parser.add_argument("--database", required=True, help="the orchestrator's PostgreSQL URL")
    parser.add_argument("--variant", choices=VARIANTS, default="success")
    parser.add_argument("--n", type=int, default=0, help="measured sagas (0: --seconds)")
    parser.add_argument("--seconds", type=float, help="measured load for this long")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument(
        "--completion",
        choices=("execute", "poll"),
        default="execute",
        help="execute: one ExecuteSaga call per saga; poll: StartSaga, then poll the table",
    )
    parser.add_argument("--poll-ms", type=float, default=1.0, help="poll: the shortest interval")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(execute(args) if args.completion == "execute" else poll(args))


if __name__ == "__main__":
    main()
