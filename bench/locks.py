"""Semantic locks under load: throughput with and without locks, and the wait on hot keys.

    python -m bench.locks --database postgresql://postgres@127.0.0.1:5432/postgres

Three modes of the benchmark saga (bench/sagas.py), each in a PostgreSQL schema of its
own and a closed loop of `--concurrency` workers starting one saga after another:
`none` (no locks), `distinct` (every saga locks a key of its own: the cost of taking
and releasing) and `hot8` (every saga locks one of 8 keys: queueing). Everything runs
in this process (an `Executor` on a `PostgresStore`, as `saga serve` wires them) but
the participants, which are `bench.participant` in a child process. Reported per mode:
sagas/s, p50/p99 start-to-end, and p99 lock wait (LOCKS_WAITING to LOCKS_ACQUIRED, from
each saga's log). The issue's target: `distinct` at least 0.9 x `none`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from google.protobuf.message import Message
from psycopg import sql

from bench.sagas import BENCH_TRIP
from bench.workload import PARTICIPANTS, trip_payload
from orchestrator.commands import ParticipantClient
from orchestrator.definition import Locks, SagaDefinition
from orchestrator.executor import Executor
from orchestrator.records import TransitionEvent
from orchestrator.registry import Registry
from orchestrator.store import PostgresStore
from saga.examples.v1.inputs_pb2 import TravelBookingInput

MODES = ("none", "distinct", "hot8")


def _customer_key(trip: Message) -> list[str]:
    assert isinstance(trip, TravelBookingInput)
    return [f"customer:{trip.customer_id}"]


LOCKED_TRIP = dataclasses.replace(BENCH_TRIP, locks=Locks(_customer_key))


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
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        waits = [await _lock_wait(store, saga_id) for saga_id in saga_ids]
    finally:
        await executor.stop()
        await client.close()
        await store.close()
        with psycopg.connect(database, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    cuts = statistics.quantiles(latencies, n=100)
    wait_cuts = statistics.quantiles(waits, n=100) if len(waits) > 1 else [0.0] * 99
    return {
        "sagas_per_s": n / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "p99_lock_wait_ms": wait_cuts[98] * 1000,
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        process, address = _start_participants(Path(workdir))
        try:
            results = {
                mode: asyncio.run(_run_mode(args.database, address, mode, args.n, args.concurrency))
                for mode in args.modes.split(",")
            }
        finally:
            process.terminate()
            process.wait(10)
    for mode, row in results.items():
        print(mode, " ".join(f"{k}={v:.1f}" for k, v in row.items()))
    if "none" in results and "distinct" in results:
        ratio = results["distinct"]["sagas_per_s"] / results["none"]["sagas_per_s"]
        print(f"distinct / none throughput: {ratio:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
