"""Sagas started per second through StartSagas (batches) against single StartSaga calls,
at the same client concurrency, on one orchestrator process (bench.serve_orchestrator).

    python -m bench.batch_start [--database postgres|sqlite] [--sagas 5000]
        [--concurrency 8] [--batch-size 500] [--rounds 2]

Every run gets a fresh database (a throwaway PostgreSQL database, or a new SQLite file)
and a fresh orchestrator; the modes alternate A B B A A B ..., so drift in the machine's
load falls on both. Timed: from the first request sent to the last answer received, for
`--sagas` sagas (both RPCs answer once the sagas are committed), each with its own
idempotency key, the requests built before the clock starts. The sagas started run
meanwhile in both modes (the bench participants answer at once): the orchestrator's CPU
per saga over the window includes driving them, so it is also shown from the first start
until every saga COMPLETED (the same work in both modes but the starts). The client runs
in this process; its CPU per saga is shown too, since it can limit single calls.
The 1-minute load average is printed before each run; on a shared machine compare
the ratio of the medians, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
from google.protobuf import struct_pb2

from bench.harness import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV
from bench.pg import Admin, database_url
from bench.procs import PostgresCpu, cpu_seconds
from bench.workload import SAGA_TYPE, trip_payload
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools.processes import ChildProcess

REPO = Path(__file__).resolve().parents[1]
MODES = ("single", "batch")
IN_FLIGHT = 1_000_000
"""The orchestrator's in-flight limit for the runs: the starts outrun the sagas they start."""


@dataclass(frozen=True)
class Run:
    mode: str
    seconds: float
    sagas: int
    server_cpu: float
    """The orchestrator's CPU seconds over the timed window."""
    whole_cpu: float
    """Its CPU seconds from the first start until every saga COMPLETED (or the wait ended)."""
    completed: int
    """Sagas COMPLETED when the wait for them ended."""
    client_cpu: float
    postgres_cpu: float
    """The PostgreSQL server's CPU seconds (every backend) over the timed window; 0 on SQLite."""
    load_1m: float

    @property
    def rate(self) -> float:
        return self.sagas / self.seconds


def requests(sagas: int) -> list[pb.StartSagaRequest]:
    payload = struct_pb2.Struct()
    payload.update(trip_payload("success"))
    return [
        pb.StartSagaRequest(
            saga_type=SAGA_TYPE,
            correlation_id=f"bench-{n}",
            payload=payload,
            idempotency_key=f"bench-start-{n}",
        )
        for n in range(sagas)
    ]


async def start_all(
    address: str, mode: str, batch: list[pb.StartSagaRequest], concurrency: int, size: int
) -> float:
    """Start every saga of `batch` with `concurrency` callers; the seconds it took."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        await stub.ListSagaTypes(pb.ListSagaTypesRequest(), timeout=10)  # connected
        step = 1 if mode == "single" else size
        chunks = iter(range(0, len(batch), step))
        retried: list[int] = []

        async def caller() -> None:
            for first in chunks:
                for attempt in itertools.count(1):
                    try:
                        await send(first)
                        break
                    except grpc.aio.AioRpcError as error:
                        # Keys make a repeat safe; a store error (a deadlock) is retried.
                        if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == 5:
                            raise
                        retried.append(first)

        async def send(first: int) -> None:
            if mode == "single":
                await stub.StartSaga(batch[first], timeout=30)
                return
            reply = await stub.StartSagas(
                pb.StartSagasRequest(requests=batch[first : first + size]), timeout=60
            )
            refused = [r.error.message for r in reply.results if r.HasField("error")]
            if refused:
                raise RuntimeError(f"{len(refused)} refused, first: {refused[0]}")

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        seconds = time.perf_counter() - began
        if retried:
            print(f"    ({len(retried)} call(s) answered UNAVAILABLE and sent again)", flush=True)
        return seconds


def one_run(
    mode: str, args: argparse.Namespace, workdir: Path, participants: str, admin: Admin | None
) -> Run:
    database = admin.create_database() if admin is not None else ""
    url = (
        database_url(admin.server_url, database)
        if admin is not None
        else f"sqlite:///{workdir / f'{mode}-{time.monotonic_ns()}.sqlite3'}"
    )
    orchestrator = ChildProcess(
        f"orchestrator-{mode}",
        [
            sys.executable,
            "-m",
            "bench.serve_orchestrator",
            "--database",
            url,
            "--participants",
            participants,
            "--max-sagas-in-flight",
            str(IN_FLIGHT),
        ],
        workdir,
        env={"PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    try:
        orchestrator.start()
        batch = requests(args.sagas)
        load_1m = os.getloadavg()[0]
        server_before = cpu_seconds(orchestrator.pid) or 0.0
        postgres = PostgresCpu.from_backend(admin.backend_pid()) if admin is not None else None
        postgres_before = postgres.total_seconds() if postgres is not None else 0.0
        client_before = time.process_time()
        seconds = asyncio.run(
            start_all(orchestrator.address, mode, batch, args.concurrency, args.batch_size)
        )
        server_cpu = (cpu_seconds(orchestrator.pid) or 0.0) - server_before
        client_cpu = time.process_time() - client_before
        postgres_cpu = postgres.total_seconds() - postgres_before if postgres is not None else 0.0
        completed = finished(url, args.sagas)
        whole_cpu = (cpu_seconds(orchestrator.pid) or 0.0) - server_before
    finally:
        orchestrator.stop()
        if admin is not None:
            admin.drop_database(database)
    return Run(
        mode,
        seconds,
        args.sagas,
        server_cpu,
        whole_cpu,
        completed,
        client_cpu,
        postgres_cpu,
        load_1m,
    )


def finished(url: str, sagas: int, timeout: float = 120.0) -> int:
    """Wait (polling the store, bounded) until every saga of the run COMPLETED; how many
    did."""
    query = "SELECT count(*) FROM sagas WHERE status = 'COMPLETED'"
    deadline = time.monotonic() + timeout
    while True:
        if url.startswith("sqlite:///"):
            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
                done = int(db.execute(query).fetchone()[0])
        else:
            with psycopg.connect(url) as db:
                row = db.execute(query).fetchone()
                done = int(row[0]) if row is not None else 0
        if done >= sagas or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


def order(rounds: int) -> list[str]:
    """A B B A, repeated: each mode first as often as last."""
    pattern = [MODES[0], MODES[1], MODES[1], MODES[0]]
    return list(itertools.islice(itertools.cycle(pattern), 2 * rounds))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_start", description=__doc__)
    parser.add_argument(
        "--database",
        default=os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL,
        help="a PostgreSQL maintenance database URL (a throwaway database is made per run), "
        f"or 'sqlite' (env {POSTGRES_URL_ENV}; default {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--sagas", type=int, default=5000, help="sagas started per run")
    parser.add_argument("--concurrency", type=int, default=8, help="callers at once, both modes")
    parser.add_argument("--batch-size", type=int, default=500, help="requests per StartSagas")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each mode")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="saga-bench-batch-"))
    admin = None if args.database == "sqlite" else Admin(args.database)
    participants = ChildProcess(
        "participants",
        [sys.executable, "-m", "bench.participant"],
        workdir,
        env={"PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    store = "sqlite" if admin is None else "postgresql"
    print(
        f"batch start: {args.sagas} sagas a run, concurrency {args.concurrency}, "
        f"batches of {args.batch_size}, {store}; logs in {workdir}",
        flush=True,
    )
    runs: list[Run] = []
    try:
        participants.start()
        for mode in order(args.rounds):
            run = one_run(mode, args, workdir, str(participants.info["address"]), admin)
            runs.append(run)

            def ms(cpu: float) -> str:
                return f"{cpu / args.sagas * 1e3:5.2f}"

            print(
                f"  {run.mode:<6} load {run.load_1m:4.2f}  {run.seconds:6.2f} s  "
                f"{run.rate:8.1f} sagas/s  orchestrator CPU ms/saga: {ms(run.server_cpu)} in the "
                f"window, {ms(run.whole_cpu)} to the end; client {ms(run.client_cpu)}; "
                f"PostgreSQL {ms(run.postgres_cpu)} in the window"
                + ("" if run.completed == run.sagas else f"  ONLY {run.completed} COMPLETED"),
                flush=True,
            )
    finally:
        participants.stop()
        if admin is not None:
            admin.close()
    medians = {
        mode: statistics.median(run.rate for run in runs if run.mode == mode) for mode in MODES
    }
    print(
        f"median: single StartSaga {medians['single']:.1f} sagas/s, StartSagas "
        f"{medians['batch']:.1f} sagas/s: {medians['batch'] / medians['single']:.2f}x "
        "(target >= 3x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
