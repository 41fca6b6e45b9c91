"""The floor of this design: what one bare gRPC call and one bare group-commit write cost.

`make bench` prints these rows beside the systems, so every run shows how far the
engine is above what its transport and its writes cost on the same machine:

- **grpc call pair**: a bare `grpc.aio` unary call, server and client in separate
  processes (the server `python -m bench.floor --serve`, the client this process),
  messages of `MESSAGE_BYTES` bytes each way, no protobuf (identity serializers), a
  closed loop of c callers. CPU per call of each side from /proc (all threads: gRPC's
  poller thread counts). The engine pays one server call (ExecuteSaga/StartSaga) and
  three client calls (the participants) per saga.
- **group-commit write**: `bench.ceiling.GroupWriter` (one batching writer, BEGIN,
  statements and COMMIT in one pipeline, no timer) on a throwaway database, c callers
  each awaiting the commit of its own INSERT of a `MESSAGE_BYTES`-byte row. CPU per
  write of this process and of PostgreSQL (every backend of a local server).

    python -m bench.floor [--postgres-url URL] [--calls 5000] [--concurrency 1,64]

Nothing here asserts a speed; CPU per call hardly moves with the machine's load, the
rates do. Every process is stopped by PID and the database dropped, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool

from bench.ceiling import GroupWriter
from bench.pg import Admin, database_url
from bench.procs import PostgresCpu, cpu_seconds
from tools.processes import ChildProcess

REPO = Path(__file__).resolve().parents[1]
MESSAGE_BYTES = 200
LOOP_TIMEOUT_SECONDS = 300.0
_METHOD = "/bench.floor.Echo/Call"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_TABLE = "CREATE TABLE floor_writes (id bigint PRIMARY KEY, body bytea NOT NULL)"
_INSERT = "INSERT INTO floor_writes (id, body) VALUES (%s, %s)"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    path.write_text(json.dumps(info))


async def serve(ready_file: Path) -> None:
    """The bare server: one unary method answering its request's bytes."""
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.floor.Echo", {"Call": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    _write_ready(ready_file, {"address": f"127.0.0.1:{port}", "pid": os.getpid()})
    await server.wait_for_termination()


async def _closed_loop(calls: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> None:
    numbers = iter(range(calls))

    async def worker() -> None:
        for number in numbers:
            await one(number)

    async with asyncio.timeout(LOOP_TIMEOUT_SECONDS):  # a stuck write fails the row
        await asyncio.gather(*(worker() for _ in range(min(calls, concurrency))))


async def _timed(
    calls: int, concurrency: int, one: Callable[[int], Awaitable[None]], others: dict[str, Any]
) -> dict[str, float]:
    """Run `calls` closed-loop at `concurrency`: wall time, and CPU of this process and of
    `others` (name: pid, or a PostgresCpu) over the run alone."""

    def cpu_now() -> dict[str, float]:
        values = {"client": time.process_time()}
        for name, source in others.items():
            value = (
                source.total_seconds() if isinstance(source, PostgresCpu) else cpu_seconds(source)
            )
            values[name] = value or 0.0
        return values

    before, began = cpu_now(), time.perf_counter()
    await _closed_loop(calls, concurrency, one)
    elapsed, after = time.perf_counter() - began, cpu_now()
    return {
        "calls_per_s": calls / elapsed,
        **{
            f"cpu_ms_per_call_{name}": (after[name] - before[name]) * 1000.0 / calls
            for name in after
        },
    }


async def grpc_rows(
    address: str, server_pid: int, calls: int, levels: list[int]
) -> list[dict[str, Any]]:
    body = b"x" * MESSAGE_BYTES
    rows = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(_METHOD)

        async def one(_: int) -> None:
            reply = await call(body, timeout=30.0)
            assert len(reply) == MESSAGE_BYTES

        for concurrency in levels:
            await _closed_loop(max(50, calls // 10), concurrency, one)  # warm-up
            figures = await _timed(calls, concurrency, one, {"server": server_pid})
            rows.append(
                {"floor": "grpc call pair", "concurrency": concurrency, "calls": calls, **figures}
            )
    return rows


async def write_rows(
    url: str, postgres: PostgresCpu | None, calls: int, levels: list[int]
) -> list[dict[str, Any]]:
    body = b"x" * MESSAGE_BYTES
    rows = []
    async with AsyncConnectionPool(
        url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    ) as pool:
        async with pool.connection() as connection:
            await connection.execute(_TABLE)
        ids = iter(range(1, 1 << 62))
        for concurrency in levels:
            writer = GroupWriter(pool)

            async def one(_: int, writer: GroupWriter = writer) -> None:
                await writer.commit((_INSERT, (next(ids), body)))

            await _closed_loop(max(50, calls // 10), concurrency, one)  # warm-up
            commits_before = writer.commits
            others: dict[str, Any] = {"postgres": postgres} if postgres is not None else {}
            figures = await _timed(calls, concurrency, one, others)
            await writer.close()
            rows.append(
                {
                    "floor": "group-commit write",
                    "concurrency": concurrency,
                    "calls": calls,
                    "commits_per_call": (writer.commits - commits_before) / calls,
                    **figures,
                }
            )
    return rows


def measure(
    postgres_url: str, calls: int, levels: list[int], workdir: Path
) -> list[dict[str, Any]]:
    """Both floors at each concurrency; the server process and the database are ours to end."""
    server = ChildProcess(
        "floor-server",
        [sys.executable, "-m", "bench.floor", "--serve"],
        workdir,
        env={"PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    rows: list[dict[str, Any]] = []
    try:
        server.start()
        rows += asyncio.run(grpc_rows(server.address, server.pid, calls, levels))
    finally:
        server.stop()
    admin = Admin(postgres_url)
    try:
        postgres = PostgresCpu.from_backend(admin.backend_pid())
        database = admin.create_database()
        try:
            rows += asyncio.run(
                write_rows(database_url(postgres_url, database), postgres, calls, levels)
            )
        finally:
            admin.drop_database(database)
    finally:
        admin.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="be the bare gRPC server")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--calls", type=int, default=5000, help="measured calls per row")
    parser.add_argument("--concurrency", default="1,64")
    args = parser.parse_args()
    if args.serve:
        if args.ready_file is None:
            parser.error("--serve needs --ready-file")
        asyncio.run(serve(args.ready_file))
        return
    levels = [int(value) for value in args.concurrency.split(",") if value]
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as workdir:
        rows = measure(args.postgres_url, args.calls, levels, Path(workdir))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
