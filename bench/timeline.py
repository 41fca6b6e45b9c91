"""A timeline of one saga at concurrency 1: where its milliseconds go, step by step.

The real engine runs in this process (store, executor, servicer, gRPC server on
port 0) against a throwaway PostgreSQL database or a SQLite file, with the bench
participants in their own process, as `make bench` runs them. The engine is not
changed for this: the tool wraps, on its own objects, the calls a saga's life goes
through and stamps `time.perf_counter()` at each:

    StartSaga received / answered     the servicer's handler
    write queued / returned           a `create_saga` or `commit` joining group commit
    write begins / committed          the store's `write` (one transaction)
    command sent / reply received     `ParticipantClient.send`
    drive finished                    the saga's task ended

Sagas run one after another (a client in this process calls StartSaga and waits
for the saga's drive to end), and each event's offset from "StartSaga received"
is reported as the median over the measured sagas, with the gap from the event
before it; then the CPU per saga of this process (engine and client) and of the
database's own PostgreSQL backends (the pool's and the listeners', not the rest of
a shared server), which unlike the milliseconds hardly move with the machine's load.

With `--libpq-trace FILE` (PostgreSQL) the last saga's client/server
protocol messages are written to FILE with libpq's timestamps: every round trip
the store makes, and what each carried.

    python -m bench.timeline [--store postgres|sqlite] [--sagas 200] [--warmup 30]

Figures depend on the machine's load; quote them with `uptime`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from bench.pg import Admin, database_url
from bench.procs import cpu_seconds
from bench.sagas import DEFINITIONS
from bench.workload import PARTICIPANTS, SAGA_TYPE, trip_payload
from orchestrator.api.grpc_server import create_server
from orchestrator.api.servicer import SagaOrchestratorService
from orchestrator.core.registry import Registry
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.store import open_store
from orchestrator.store.base import Store
from orchestrator.store.group_commit import GroupCommit
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_ROOT = Path(__file__).resolve().parent.parent


class Marks:
    """The stamps of the saga in flight (one at a time: concurrency 1)."""

    def __init__(self) -> None:
        self.current: list[tuple[str, float]] = []

    def mark(self, event: str) -> None:
        self.current.append((event, time.perf_counter()))

    def take(self) -> list[tuple[str, float]]:
        taken, self.current = self.current, []
        return taken


def _stamp(marks: Marks, target: object, name: str, before: str, after: str) -> None:
    """Replace `target.name` (an async method) on this object only by one that stamps
    `before` and `after` around the call."""
    call: Callable[..., Awaitable[Any]] = getattr(target, name)

    async def stamped(*args: Any, **kwargs: Any) -> Any:
        marks.mark(before)
        try:
            return await call(*args, **kwargs)
        finally:
            marks.mark(after)

    setattr(target, name, stamped)


def instrument(
    marks: Marks,
    store: Store,
    participants: ParticipantClient,
    servicer: SagaOrchestratorService,
) -> None:
    """Wrap, on these objects only, the calls whose times the timeline shows."""
    _stamp(marks, servicer, "StartSaga", "StartSaga received", "StartSaga answered")
    _stamp(marks, store, "write", "write begins", "write committed")
    _stamp(marks, participants, "send", "command sent", "reply received")
    group = GroupCommit(store.write)
    _stamp(marks, group, "_submit", "write queued", "write returned")
    store._group = group


@contextlib.asynccontextmanager
async def participants_process(workdir: Path) -> AsyncIterator[str]:
    ready = workdir / "participants.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.participant", "--ready-file", str(ready), cwd=_ROOT
    )
    try:
        for _ in range(300):
            if ready.exists():
                break
            if process.returncode is not None:
                raise RuntimeError("bench participants exited before they were ready")
            await asyncio.sleep(0.05)
        yield str(json.loads(ready.read_text())["address"])
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


def trace_connections(store: Store, trace: Any) -> None:
    """Make every pooled PostgreSQL connection write libpq's protocol trace to `trace`."""
    traced: set[int] = set()
    original = store._connection  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def traced_connection() -> AsyncIterator[Any]:
        async with original() as connection:
            if id(connection) not in traced:
                traced.add(id(connection))
                connection.pgconn.trace(trace.fileno())
            yield connection

    store._connection = traced_connection  # type: ignore[attr-defined]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="saga-timeline-") as tmp:
        workdir = Path(tmp)
        admin: Admin | None = None
        database = None
        if args.store == "postgres":
            admin = Admin(args.postgres_url)
            database = admin.create_database()
            url = database_url(args.postgres_url, database)
        else:
            url = f"sqlite:///{workdir / 'timeline.db'}"
        try:
            async with participants_process(workdir) as address:
                return await _measure(args, url, address, _backends(admin, database))
        finally:
            if admin is not None and database is not None:
                admin.drop_database(database)
                admin.close()


def _backends(admin: Admin | None, database: str | None) -> Callable[[], list[int]]:
    """The pids of the database's server processes (none for SQLite)."""

    def pids() -> list[int]:
        if admin is None:
            return []
        rows = admin.connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
        return [int(row[0]) for row in rows]

    return pids


def _cpu(pids: list[int]) -> dict[int, float]:
    return {pid: seconds for pid in pids if (seconds := cpu_seconds(pid)) is not None}


async def _measure(
    args: argparse.Namespace, url: str, address: str, backends: Callable[[], list[int]]
) -> dict[str, Any]:
    marks = Marks()
    store = open_store(url)
    await store.open()
    registry = Registry(DEFINITIONS)
    participants = ParticipantClient(dict.fromkeys(PARTICIPANTS, address))
    executor = Executor(store, registry, participants)
    servicer = SagaOrchestratorService(registry, executor, store)
    instrument(marks, store, participants, servicer)
    server, port, _ = create_server("127.0.0.1:0", servicer, with_reflection=False)
    await server.start()
    executor.resume_unfinished()  # leases, and the commit and lock-release listeners
    payload = struct_pb2.Struct()
    payload.update(trip_payload("success"))
    timelines: list[list[tuple[str, float]]] = []
    trace_file = None
    if args.libpq_trace and args.store == "postgres":
        trace_file = open(args.libpq_trace, "w")  # noqa: SIM115 ASYNC230 (before any load)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            total = args.warmup + args.sagas
            for number in range(total):
                if number == total - 1 and trace_file is not None:
                    trace_connections(store, trace_file)
                if number == args.warmup:
                    server_before = _cpu(backends())
                    process_before = time.process_time()
                marks.take()
                reply = await stub.StartSaga(
                    pb.StartSagaRequest(
                        saga_type=SAGA_TYPE, correlation_id=f"t-{number}", payload=payload
                    )
                )
                task = executor._tasks.get(reply.saga_id)
                if task is not None:
                    await task
                marks.mark("drive finished")
                if number >= args.warmup:
                    timelines.append(marks.take())
            process_cpu = time.process_time() - process_before
            server_after = _cpu(backends())
    finally:
        await server.stop(1.0)
        await executor.stop()
        await participants.close()
        await store.close()
        if trace_file is not None:
            trace_file.close()
    # Backends alive at both ends (the pool keeps its connections while sagas run).
    server_cpu = sum(
        server_after[pid] - server_before[pid] for pid in server_after.keys() & server_before.keys()
    )
    summary = summarize(timelines)
    summary["cpu_ms_per_saga"] = {
        "this_process": round(process_cpu * 1000 / args.sagas, 3),
        "server": round(server_cpu * 1000 / args.sagas, 3) if server_before else None,
    }
    return summary


def summarize(timelines: list[list[tuple[str, float]]]) -> dict[str, Any]:
    """Median offset of each event (by its order in the saga) from StartSaga received."""
    shapes = {tuple(event for event, _ in timeline) for timeline in timelines}
    if len(shapes) != 1:
        raise RuntimeError(f"sagas took different paths: {len(shapes)} event sequences")
    (shape,) = shapes
    rows = []
    for position, event in enumerate(shape):
        offsets = [(t[position][1] - t[0][1]) * 1000 for t in timelines]
        gaps = [(t[position][1] - t[max(0, position - 1)][1]) * 1000 for t in timelines]
        rows.append(
            {
                "event": event,
                "offset_ms": round(statistics.median(offsets), 3),
                "gap_ms": round(statistics.median(gaps), 3),
            }
        )
    return {"sagas": len(timelines), "events": rows, "load": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__)
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SAGA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument("--sagas", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--libpq-trace", help="write the last saga's protocol trace here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    load = ", ".join(f"{value:.2f}" for value in result["load"])
    print(f"timeline of one saga, median of {result['sagas']} (load average {load})")
    print(f"{'event':<24} {'at ms':>8} {'gap ms':>8}")
    for row in result["events"]:
        print(f"{row['event']:<24} {row['offset_ms']:>8.2f} {row['gap_ms']:>8.2f}")
    cpu = result["cpu_ms_per_saga"]
    print(
        f"cpu ms per saga: this process (engine and client) {cpu['this_process']:.2f},"
        f" PostgreSQL backends of the database {cpu['server']}"
    )


if __name__ == "__main__":
    main()
