"""Semantic locks under load: throughput with and without locks, and the wait on hot keys.

    python -m bench.locks --database postgresql://postgres@127.0.0.1:5432/postgres

Three modes of the benchmark saga (bench/sagas.py), each in a PostgreSQL schema of its
own and a closed loop of `--concurrency` workers starting one saga after another:
`none` (no locks), `distinct` (every saga locks a key of its own: the cost of taking
and releasing) and `hot8` (every saga locks one of 8 keys: queueing). Everything runs
in this process (an `Executor` on a `PostgresStore`, as `saga serve` wires them) but
the participants, which are `bench.participant` in a child process. Reported per mode:
sagas/s, p50/p99 start-to-end, p99 lock wait (LOCKS_WAITING to LOCKS_ACQUIRED, from
each saga's log), and what each saga cost: this process's CPU (engine and load loop
together; the participants and PostgreSQL are not in it), the statements it sent
(counted at the psycopg cursor, an executemany counting one per parameter set) and
the transactions it committed (`pg_stat_database.xact_commit` of `--database`, read
after the mode's connections closed; so give the run a database of its own). The
issue's target: `distinct` at least 0.9 x `none`; `--rounds` repeats the modes
interleaved (none, distinct, hot8, none, distinct, ...) so machine drift hits all.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from google.protobuf.message import Message
from psycopg import sql

from bench.sagas import BENCH_TRIP
from bench.workload import PARTICIPANTS, trip_payload
from orchestrator.core.definition import Locks, SagaDefinition
from orchestrator.core.records import TransitionEvent
from orchestrator.core.registry import Registry
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.store import PostgresStore
from saga.examples.v1.inputs_pb2 import TravelBookingInput

MODES = ("none", "distinct", "hot8")


def _customer_key(trip: Message) -> list[str]:
    assert isinstance(trip, TravelBookingInput)
    return [f"customer:{trip.customer_id}"]


LOCKED_TRIP = dataclasses.replace(BENCH_TRIP, locks=Locks(_customer_key))


@contextmanager
def _counting_statements() -> Iterator[list[int]]:
    """Count the statements every psycopg async cursor sends while the block runs."""
    count = [0]
    cursor = psycopg.AsyncCursor
    execute, executemany = cursor.execute, cursor.executemany

    async def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return await execute(self, *args, **kwargs)

    async def counted_executemany(self: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        params_seq = list(params_seq)
        count[0] += len(params_seq)
        return await executemany(self, query, params_seq, **kwargs)

    cursor.execute = counted_execute  # type: ignore[method-assign]
    cursor.executemany = counted_executemany  # type: ignore[method-assign]
    try:
        yield count
    finally:
        cursor.execute = execute  # type: ignore[method-assign]
        cursor.executemany = executemany  # type: ignore[method-assign]


def _commits(database: str) -> int:
    """Transactions committed in the database so far (as far as the server has flushed)."""
    with psycopg.connect(database, autocommit=True) as connection:
        row = connection.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def _customer(mode: str, n: int) -> str:
    return f"hot{n % 8}" if mode == "hot8" else f"c{n}"


async def _run_mode(
    database: str, participants: str, mode: str, n: int, concurrency: int
) -> dict[str, float]:
    definition: SagaDefinition = BENCH_TRIP if mode == "none" else LOCKED_TRIP
    schema = f"saga_bench_locks_{secrets.token_hex(4)}"
    store = PostgresStore(database, schema=schema, max_size=8)
    await store.open()
    client = ParticipantClient(dict.fromkeys(PARTICIPANTS, participants))
    executor = Executor(store, Registry([definition]), client)
    latencies: list[float] = []
    saga_ids: list[str] = []
    counter = iter(range(n))

    async def worker() -> None:
        for number in counter:
            payload = {**trip_payload("success"), "customer_id": _customer(mode, number)}
            began = time.perf_counter()
            result = await executor.start_saga(
                definition, correlation_id=f"b{number}", payload=payload, idempotency_key=None
            )
            saga_id = result.saga.saga_id
            with executor.watchers.subscription(saga_id) as committed:
                while True:
                    committed.clear()
                    saga = await store.get_saga(saga_id)
                    if saga is not None and saga.status.is_terminal:
                        break
                    await executor.watchers.wait(committed)
            latencies.append(time.perf_counter() - began)
            saga_ids.append(saga_id)

    try:
        commits_before = _commits(database)
        with _counting_statements() as statements:
            began, cpu_began = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
            sent = statements[0]
        waits = [await _lock_wait(store, saga_id) for saga_id in saga_ids]
    finally:
        await executor.stop()
        await client.close()
        await store.close()
    # Closed connections have flushed their counters. Not the sagas': the read of each
    # saga's log above (one each) and the count's own read.
    commits = _commits(database) - commits_before - len(saga_ids) - 1
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    cuts = statistics.quantiles(latencies, n=100)
    wait_cuts = statistics.quantiles(waits, n=100) if len(waits) > 1 else [0.0] * 99
    return {
        "sagas_per_s": n / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "p99_lock_wait_ms": wait_cuts[98] * 1000,
        "cpu_ms_per_saga": cpu * 1000 / n,
        "statements_per_saga": sent / n,
        "commits_per_saga": commits / n,
    }


async def _lock_wait(store: PostgresStore, saga_id: str) -> float:
    log = await store.get_transitions(saga_id)
    queued = [t.time for t in log if t.event is TransitionEvent.LOCKS_WAITING]
    taken = [t.time for t in log if t.event is TransitionEvent.LOCKS_ACQUIRED]
    if not queued or not taken:
        return 0.0
    return (taken[0] - queued[0]).total_seconds()


def _start_participants(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = workdir / "participant.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.participant", "--ready-file", str(ready)]
    )
    for _ in range(200):
        if ready.exists():
            return process, str(json.loads(ready.read_text())["address"])
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError("bench.participant did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.locks", description=__doc__)
    parser.add_argument("--database", required=True, help="a PostgreSQL URL")
    parser.add_argument("--n", type=int, default=800, help="sagas per mode")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--rounds", type=int, default=1, help="repeats of all the modes")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        process, address = _start_participants(Path(workdir))
        try:
            for _ in range(args.rounds):
                for mode in args.modes.split(","):
                    print(f"{mode}: load {os.getloadavg()[0]:.2f} ...", flush=True)
                    row = asyncio.run(
                        _run_mode(args.database, address, mode, args.n, args.concurrency)
                    )
                    print(mode, " ".join(f"{k}={v:.1f}" for k, v in row.items()), flush=True)
                    results.setdefault(mode, []).append(row)
        finally:
            process.terminate()
            process.wait(10)
    print("medians:")
    medians = {
        mode: {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        for mode, rows in results.items()
    }
    for mode, row in medians.items():
        print(mode, " ".join(f"{k}={v:.1f}" for k, v in row.items()))
    if "none" in results and "distinct" in results:
        ratios = [
            d["sagas_per_s"] / n["sagas_per_s"]
            for n, d in zip(results["none"], results["distinct"], strict=True)
        ]
        listed = " ".join(f"{r:.2f}" for r in ratios)
        print(f"distinct / none throughput per round: {listed} (target >= 0.9)")


if __name__ == "__main__":
    main()
