"""The CPU the store's write path costs this process, for a fixed batch.

`PostgresStore.write` of B commits (one per saga: a step completed, the next started,
three log rows), repeated; the figure is process CPU per write and per commit. The
batch is fixed, so unlike `bench/run.py` it does not move with how the machine's load
shapes group commit's batches: use it to compare two versions of the write path, run
alternately. Writes into a throwaway schema of the given database, dropped at the end.

    python -m bench.write_path --database postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from orchestrator.core.records import (
    SagaCommit,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.store.postgres import PostgresStore

STEPS = 3


class Sagas:
    """B sagas in the store and their next commit, each one step further."""

    def __init__(self, sagas: list[SagaRecord]) -> None:
        self.sagas = sagas
        self.seqs = [1] * len(sagas)
        self.round = 0

    def next_commits(self) -> list[SagaCommit]:
        commits = [self._commit(k) for k in range(len(self.sagas))]
        self.round += 1
        return commits

    def _commit(self, k: int) -> SagaCommit:
        saga = self.sagas[k]
        moment = saga.update_time + timedelta(milliseconds=1)
        done, started = self.round % STEPS, (self.round + 1) % STEPS
        steps = (
            StepRecord(
                saga.saga_id,
                done,
                f"step{done}",
                StepStatus.COMPLETED,
                attempts=1,
                result=b"\x0a\x05reply",
                start_time=moment,
                update_time=moment,
            ),
            StepRecord(
                saga.saga_id,
                started,
                f"step{started}",
                StepStatus.STARTED,
                attempts=1,
                start_time=moment,
                update_time=moment,
            ),
        )
        seq = self.seqs[k]
        transitions = tuple(
            TransitionRecord(
                saga.saga_id,
                seq + n,
                TransitionEvent.STEP_COMPLETED,
                moment,
                SagaStatus.RUNNING,
                step=f"step{done}",
                step_status=StepStatus.COMPLETED,
                attempt=1,
            )
            for n in (1, 2, 3)
        )
        self.seqs[k] = seq + 3
        self.sagas[k] = dataclasses.replace(saga, update_time=moment, version=saga.version + 1)
        return SagaCommit(self.sagas[k], saga.version, steps, transitions)


async def measure(url: str, schema: str, batch: int, rounds: int) -> tuple[float, float]:
    """Process CPU seconds and wall seconds per write."""
    store = PostgresStore(url, schema=schema)
    await store.open()
    try:
        now = datetime.now(UTC)
        created = []
        for n in range(batch):
            saga_id = str(uuid.uuid4())
            saga = SagaRecord(
                saga_id=saga_id,
                saga_type="trip",
                definition_version=1,
                correlation_id=f"c{n}",
                payload={"n": n},
                status=SagaStatus.RUNNING,
                create_time=now,
                update_time=now,
            )
            await store.create_saga(
                saga,
                [StepRecord(saga_id, i, f"step{i}") for i in range(STEPS)],
                [
                    TransitionRecord(
                        saga_id, 1, TransitionEvent.SAGA_STARTED, now, SagaStatus.RUNNING
                    )
                ],
            )
            created.append(saga)
        sagas = Sagas(created)
        for _ in range(20):  # warm-up: prepared statements, pool
            await store.write([], sagas.next_commits())
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await store.write([], sagas.next_commits())
        return (time.process_time() - cpu) / rounds, (time.perf_counter() - wall) / rounds
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.write_path", description=__doc__)
    parser.add_argument("--database", required=True, help="libpq URL of an existing database")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 6], help="commits per write")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    schema = f"write_path_{secrets.token_hex(4)}"
    try:
        for batch in args.batch:
            cpu, wall = asyncio.run(measure(args.database, schema, batch, args.rounds))
            print(
                f"batch {batch}: {1e3 * cpu:.3f} ms CPU per write, {1e6 * cpu / batch:.0f} us"
                f" per commit; {1e3 * wall:.2f} ms wall per write ({args.rounds} writes)"
            )
    finally:
        with psycopg.connect(args.database, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


if __name__ == "__main__":
    main()
