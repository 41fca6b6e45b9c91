"""StartSaga p99 at concurrency 8 while retention deletes a large backlog of finished
sagas, against the same without retention (issue 12's third benchmark).

The store (PostgreSQL) is seeded with `--sagas` COMPLETED sagas last changed two days
ago, each with `--steps` steps and `--transitions` log rows, written by SQL in one
statement per table. Then, twice on a fresh copy of that seed: an orchestrator
without retention, and one with `--retention 1d`, whose first sweep starts at boot;
each takes `--starts` StartSagas at c=8 while (in the second run) the sweep deletes.

    python -m bench.retention_load --database postgresql://postgres@127.0.0.1:5432/test \\
        --sagas 1000000 --starts 5000

Not part of `make test`; not yet run (see docs/limits.md).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
from pathlib import Path

import grpc
import psycopg
from psycopg import sql

from bench.idle_watchers import Starts, start_many
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.conftest import url_with_search_path
from tools.processes import PARTICIPANT_SERVICES, orchestrator_process, participants_process

_SEED_SAGAS = """
INSERT INTO sagas (saga_id, saga_type, definition_version, correlation_id, payload, status,
                   create_time, update_time, version)
SELECT 'seed-' || n, 'travel_booking', 1, 'seed-' || n, '{}'::jsonb, 'COMPLETED',
       now() - interval '2 days', now() - interval '2 days', 5
FROM generate_series(1, %(sagas)s) AS n
"""
_SEED_STEPS = """
INSERT INTO saga_steps (saga_id, step_index, name, status)
SELECT 'seed-' || n, s, 'step_' || s, 'COMPLETED'
FROM generate_series(1, %(sagas)s) AS n, generate_series(0, %(steps)s - 1) AS s
"""
_SEED_TRANSITIONS = """
INSERT INTO saga_transitions (saga_id, seq, event, time, saga_status, actor)
SELECT 'seed-' || n, t, 'STEP_COMPLETED', now() - interval '2 days', 'RUNNING', 'seed'
FROM generate_series(1, %(sagas)s) AS n, generate_series(1, %(transitions)s) AS t
"""


async def seeded_schema(base_url: str, args: argparse.Namespace) -> str:
    """A new schema, migrated by the store, holding the seed; returns its URL."""
    schema = f"retention_bench_{secrets.token_hex(4)}"
    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = url_with_search_path(base_url, schema)
    store = open_store(url)
    await store.open()
    await store.close()
    params = {"sagas": args.sagas, "steps": args.steps, "transitions": args.transitions}
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in (_SEED_SAGAS, _SEED_STEPS, _SEED_TRANSITIONS):
            connection.execute(statement, params)
        connection.execute("ANALYZE")
    return url


async def run_once(
    url: str, addresses: dict[str, str], workdir: Path, env: dict[str, str], starts: int
) -> Starts:
    orchestrator = orchestrator_process(
        workdir, url, addresses, env={"SAGA_LOG_LEVEL": "WARNING", **env}
    )
    orchestrator.start()
    try:
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            return await start_many(stub, starts, secrets.token_hex(3))
    finally:
        orchestrator.stop()


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    participants = participants_process(workdir, PARTICIPANT_SERVICES, ["--capacity", "100000000"])
    participants.start()
    try:
        addresses = participants.info["services"]
        without_url = await seeded_schema(args.database, args)
        without = await run_once(without_url, addresses, workdir, {}, args.starts)
        during_url = await seeded_schema(args.database, args)
        during = await run_once(
            during_url, addresses, workdir, {"SAGA_RETENTION": "1d"}, args.starts
        )
        with psycopg.connect(during_url) as connection:
            row = connection.execute(
                "SELECT count(*) FROM sagas WHERE saga_id LIKE 'seed-%'"
            ).fetchone()
        left = 0 if row is None else int(row[0])
    finally:
        participants.stop()
    print(f"StartSaga c=8, {args.starts} starts, {args.sagas} finished sagas seeded")
    print(f"  without retention: p50 {without.p50_ms:.1f} ms, p99 {without.p99_ms:.1f} ms")
    print(f"  while deleting:    p50 {during.p50_ms:.1f} ms, p99 {during.p99_ms:.1f} ms")
    print(f"  seeded sagas left after the run: {left} (the sweep may still have been going)")
    print("schemas retention_bench_* are left for inspection; drop them when done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="postgresql://...")
    parser.add_argument("--sagas", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--transitions", type=int, default=10)
    parser.add_argument("--starts", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="retention-load-") as workdir:
        asyncio.run(measure(args, Path(workdir)))


if __name__ == "__main__":
    main()
