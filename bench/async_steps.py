"""Asynchronous steps under load: waiting sagas idle, heartbeats, a restart, completions.

On a throwaway PostgreSQL database, one orchestrator (`saga serve`, a child process)
runs `bench_wait` sagas: one asynchronous step on an airline served in this process,
which accepts every booking and keeps the step's completion token. In order:

1. **Parking**: N sagas started (c=64) until every one is parked (WAITING, no lease).
2. **Idle cost**: for `--idle-seconds` nothing happens; the orchestrator's CPU (% of
   one core, from /proc) and resident memory, and the database's transactions.
3. **Claims**: EXPLAIN ANALYZE of the claim statement with the N sagas parked (rows it
   filters, buffers it reads), as a replica polling for work runs it.
4. **Heartbeats**: `--heartbeat-rate` HeartbeatStep calls a second over the first
   `--heartbeat-sagas` tokens for `--heartbeat-seconds`, after one heartbeat per token
   (each token's first is written); the run's database's
   transactions a second (pg_stat_database.xact_commit: reads count too) and rows
   written a second (tup_inserted + tup_updated + tup_deleted), idle rate included.
5. **Recovery and CompleteStep**: the orchestrator is stopped and a fresh one started
   (nothing in memory); then every saga is completed with CompleteStep at c=64.
   Reported: the fresh replica's time to serve, CompleteStep throughput and p50/p99,
   and "recovered" = sagas COMPLETED per second, from the first completion sent until
   the last saga is COMPLETED in the store.

    python -m bench.async_steps [--sagas 10000] [--idle-seconds 30] [--postgres-url URL]

The figures depend on the machine's load, which is reported with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import psycopg
from google.protobuf import any_pb2

from bench.pg import Admin, database_url
from bench.procs import cpu_seconds, machine_load
from bench.workload import trip_input
from orchestrator.core.definition import AsyncCompletion, Call, SagaDefinition, Step, StepContext
from orchestrator.store.postgres.sql import DIALECT
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.participants.common.v1 import callbacks_pb2 as cb
from saga.participants.common.v1 import callbacks_pb2_grpc as cb_grpc
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools.processes import ChildProcess, orchestrator_process

FLIGHT = "saga.participants.flight.v1.FlightService"
CONCURRENCY = 64
HEARTBEAT_TIMEOUT_SECONDS = 600.0
"""Each token's heartbeat is written at most once per fifth of this (120 s). Long enough
that the sagas not heartbeated outlive a run of 10,000 (parking, idling, restarting)."""
SETTLE_TIMEOUT_SECONDS = 600.0
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _book(ctx: StepContext) -> flight_pb2.BookFlightRequest:
    return flight_pb2.BookFlightRequest(flight_number="BENCH1", passenger_name="P", seats=1)


def _cancel(ctx: StepContext) -> flight_pb2.CancelFlightRequest:
    return flight_pb2.CancelFlightRequest()


BENCH_WAIT = SagaDefinition(
    name="bench_wait",
    version=1,
    input_type=TravelBookingInput,
    description="One flight the airline confirms later (bench.async_steps).",
    steps=(
        Step(
            "confirm_flight",
            participant="flight",
            action=Call(FLIGHT, "BookFlight", _book),
            compensation=Call(FLIGHT, "CancelFlight", _cancel),
            completion=AsyncCompletion(
                result_type=flight_pb2.BookFlightResponse,
                timeout=24 * 3600.0,
                heartbeat_timeout=HEARTBEAT_TIMEOUT_SECONDS,
            ),
        ),
    ),
)
DEFINITIONS = (BENCH_WAIT,)


class Airline(flight_pb2_grpc.FlightServiceServicer):
    """Accepts every booking and keeps its token, by saga."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}

    async def BookFlight(self, request: Any, context: Any) -> flight_pb2.BookFlightResponse:
        self.tokens[request.context.saga_id] = request.context.completion_token
        return flight_pb2.BookFlightResponse()

    async def CancelFlight(self, request: Any, context: Any) -> flight_pb2.CancelFlightResponse:
        return flight_pb2.CancelFlightResponse()


def _count(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(query).fetchone()
        return int(row[0]) if row else 0


def _activity(url: str) -> tuple[int, int]:
    """The run's database's committed transactions (reads too) and rows written so far."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted"
            " FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)


def _rates(before: tuple[int, int], after: tuple[int, int], seconds: float) -> dict[str, float]:
    return {
        "db_transactions_per_s": (after[0] - before[0]) / seconds,
        "db_rows_written_per_s": (after[1] - before[1]) / seconds,
    }


PARKED = "SELECT count(*) FROM sagas WHERE wake_time IS NOT NULL AND lease_owner IS NULL"
COMPLETED = "SELECT count(*) FROM sagas WHERE status = 'COMPLETED'"


async def _until(url: str, query: str, target: int, what: str) -> float:
    began = time.perf_counter()
    while _count(url, query) < target:
        if time.perf_counter() - began > SETTLE_TIMEOUT_SECONDS:
            raise RuntimeError(f"{what}: not reached in {SETTLE_TIMEOUT_SECONDS}s")
        await asyncio.sleep(0.1)
    return time.perf_counter() - began


async def _in_parallel(calls: list[Any], concurrency: int) -> list[float]:
    """Run the coroutine factories `concurrency` at a time; each one's latency in ms."""
    latencies: list[float] = []
    queue = iter(calls)

    async def worker() -> None:
        for call in queue:
            began = time.perf_counter()
            await call()
            latencies.append(1000.0 * (time.perf_counter() - began))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _rss_mib(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return None


def claim_plan(url: str) -> dict[str, Any]:
    """The claim statement's plan with the sagas parked, in a transaction rolled back."""
    from orchestrator.store._statements import Statements

    statement = Statements.render(DIALECT).claim_sagas
    params = {"owner": "bench-explain", "seconds": 30.0, "limit": 100}
    with psycopg.connect(url) as connection:
        plan = connection.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params
        ).fetchone()
        connection.rollback()
    assert plan is not None
    top = plan[0][0]
    removed = 0
    nodes = [top["Plan"]]
    while nodes:
        node = nodes.pop()
        removed += int(node.get("Rows Removed by Filter", 0))
        nodes.extend(node.get("Plans", []))
    return {
        "execution_ms": top["Execution Time"],
        "shared_buffers": top["Plan"].get("Shared Hit Blocks", 0)
        + top["Plan"].get("Shared Read Blocks", 0),
        "rows_removed_by_filter": removed,
    }


async def _heartbeats(
    callbacks: cb_grpc.SagaCallbacksStub, tokens: list[str], rate: float, seconds: float
) -> dict[str, int]:
    """Send `rate` heartbeats a second round-robin over `tokens` for `seconds`; how many
    were answered, by status code."""
    codes: dict[str, int] = {}

    async def beat(token: str) -> None:
        try:
            await callbacks.HeartbeatStep(cb.HeartbeatStepRequest(token=token), timeout=10)
            code = "OK"
        except grpc.aio.AioRpcError as error:
            code = error.code().name
        codes[code] = codes.get(code, 0) + 1

    sent = 0
    began = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    while (elapsed := time.perf_counter() - began) < seconds:
        for _ in range(int(rate * elapsed) - sent):
            task = asyncio.ensure_future(beat(tokens[sent % len(tokens)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.05)
    await asyncio.gather(*pending)
    return codes


def _orchestrator(workdir: Path, url: str, airline_address: str, name: str) -> ChildProcess:
    env = {
        "SAGA_DEFINITIONS": "bench.async_steps",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    return orchestrator_process(workdir, url, {"flight": airline_address}, env=env, name=name)


async def run(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    airline = Airline()
    server = grpc.aio.server()
    flight_pb2_grpc.add_FlightServiceServicer_to_server(airline, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await _measure(args, url, workdir, airline, f"127.0.0.1:{port}")
    finally:
        await server.stop(None)


async def _measure(
    args: argparse.Namespace, url: str, workdir: Path, airline: Airline, airline_address: str
) -> dict[str, Any]:
    result: dict[str, Any] = {"sagas": args.sagas, "concurrency": CONCURRENCY}
    orchestrator = _orchestrator(workdir, url, airline_address, "orchestrator-a").start()
    try:
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            payload = trip_input("success")
            payload_any = any_pb2.Any()
            payload_any.Pack(payload)
            began = time.perf_counter()
            await _in_parallel(
                [
                    (lambda n=n: stub.StartSaga(
                        pb.StartSagaRequest(
                            saga_type="bench_wait", correlation_id=f"wait-{n}", input=payload_any
                        ),
                        timeout=30,
                    ))
                    for n in range(args.sagas)
                ],
                CONCURRENCY,
            )  # fmt: skip
            await _until(url, PARKED, args.sagas, "every saga parked")
            result["parked_per_s"] = args.sagas / (time.perf_counter() - began)

            cpu_before, activity = cpu_seconds(orchestrator.pid) or 0.0, _activity(url)
            await asyncio.sleep(args.idle_seconds)
            cpu_after = cpu_seconds(orchestrator.pid) or 0.0
            result["idle"] = {
                "seconds": args.idle_seconds,
                "cpu_percent_of_a_core": 100.0 * (cpu_after - cpu_before) / args.idle_seconds,
                "rss_mib": _rss_mib(orchestrator.pid),
                **_rates(activity, _activity(url), args.idle_seconds),
            }
            result["claim_plan"] = claim_plan(url)

            callbacks = cb_grpc.SagaCallbacksStub(channel)
            tokens = [airline.tokens[k] for k in sorted(airline.tokens)][: args.heartbeat_sagas]
            # One heartbeat per token first: each token's first one is written, the
            # measured ones only when a fifth of the heartbeat timeout has passed.
            await _in_parallel(
                [
                    (lambda token=token: callbacks.HeartbeatStep(
                        cb.HeartbeatStepRequest(token=token), timeout=30
                    ))
                    for token in tokens
                ],
                CONCURRENCY,
            )  # fmt: skip
            activity = _activity(url)
            began = time.perf_counter()
            codes = await _heartbeats(
                callbacks, tokens, args.heartbeat_rate, args.heartbeat_seconds
            )
            elapsed = time.perf_counter() - began
            result["heartbeats"] = {
                "sagas": len(tokens),
                "sent_per_s": sum(codes.values()) / elapsed,
                "answers": codes,
                **_rates(activity, _activity(url), elapsed),
            }
    finally:
        orchestrator.stop()

    launched = time.perf_counter()
    fresh = _orchestrator(workdir, url, airline_address, "orchestrator-b").start()
    try:
        result["restart_serving_s"] = time.perf_counter() - launched
        async with grpc.aio.insecure_channel(fresh.address) as channel:
            callbacks = cb_grpc.SagaCallbacksStub(channel)
            result_any = any_pb2.Any()
            result_any.Pack(flight_pb2.BookFlightResponse(booking_id="B-1"))
            began = time.perf_counter()
            latencies = await _in_parallel(
                [
                    (lambda token=token: callbacks.CompleteStep(
                        cb.CompleteStepRequest(
                            token=token, completion_id="bench", result=result_any
                        ),
                        timeout=30,
                    ))
                    for token in airline.tokens.values()
                ],
                CONCURRENCY,
            )  # fmt: skip
            answered = time.perf_counter() - began
            await _until(url, COMPLETED, args.sagas, "every saga completed")
            finished = time.perf_counter() - began
        cuts = statistics.quantiles(latencies, n=100)
        result["complete_step"] = {
            "per_s": len(latencies) / answered,
            "p50_ms": cuts[49],
            "p99_ms": cuts[98],
        }
        result["recovered_per_s"] = args.sagas / finished
    finally:
        fresh.stop()
    return result


def report(result: dict[str, Any]) -> str:
    idle, plan, beats, done = (
        result["idle"],
        result["claim_plan"],
        result["heartbeats"],
        result["complete_step"],
    )
    return "\n".join(
        [
            f"{result['sagas']} waiting sagas (parked at {result['parked_per_s']:.0f}/s)",
            f"  idle {idle['seconds']:g}s: {idle['cpu_percent_of_a_core']:.2f}% of a core, "
            f"RSS {idle['rss_mib']:.0f} MiB, {idle['db_transactions_per_s']:.1f} db tx/s, "
            f"{idle['db_rows_written_per_s']:.1f} rows written/s",
            f"  claim with all parked: {plan['execution_ms']:.2f} ms, "
            f"{plan['rows_removed_by_filter']} rows filtered, {plan['shared_buffers']} buffers",
            f"  heartbeats: {beats['sent_per_s']:.0f}/s over {beats['sagas']} sagas "
            f"(answers {beats['answers']}) -> "
            f"{beats['db_transactions_per_s']:.1f} db tx/s, "
            f"{beats['db_rows_written_per_s']:.1f} rows written/s",
            f"  fresh replica serving in {result['restart_serving_s']:.2f}s; CompleteStep "
            f"c={result['concurrency']}: {done['per_s']:.0f}/s, p50 {done['p50_ms']:.1f} ms, "
            f"p99 {done['p99_ms']:.1f} ms; recovered {result['recovered_per_s']:.0f} sagas/s",
            f"  machine: {result['machine']}",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.async_steps", description=__doc__)
    parser.add_argument("--sagas", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--heartbeat-rate", type=float, default=1000.0)
    parser.add_argument("--heartbeat-sagas", type=int, default=1000)
    parser.add_argument("--heartbeat-seconds", type=float, default=10.0)
    parser.add_argument("--postgres-url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL"))
    parser.add_argument("--out-dir", type=Path, default=Path(".bench"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_url = args.postgres_url or DEFAULT_SERVER_URL
    admin = Admin(server_url)
    database = admin.create_database()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-async-") as workdir:
            machine = machine_load()
            result = asyncio.run(run(args, database_url(server_url, database), Path(workdir)))
            result["machine"] = machine
    finally:
        admin.drop_database(database)
        admin.close()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "async-steps-latest.json").write_text(json.dumps(result, indent=2))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
