"""Recovery speed: N sagas in flight in the store, then an orchestrator starts.

The store is filled with N `bench_trip` sagas left RUNNING by a replica that died:
their first step STARTED (its command may or may not have gone out), no lease.
The harness then starts the light participants and one orchestrator and reports
the time from launching the orchestrator process until it served, until every
saga was claimed (resumed), and until every saga finished.

    python -m bench.recovery [--sagas 10000] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from google.protobuf import json_format

from bench.pg import Admin, database_url
from bench.sagas import BENCH_TRIP
from bench.workload import trip_input
from orchestrator.store import PostgresStore
from tools.processes import ChildProcess

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POLL_SECONDS = 0.05
FINISH_TIMEOUT_SECONDS = 600.0

_FILL = """
WITH ids AS (
    SELECT gen_random_uuid()::text AS saga_id, n,
           now() - make_interval(secs => %(n)s - n) AS t
    FROM generate_series(1, %(n)s) AS n
), sagas AS (
    INSERT INTO sagas (saga_id, saga_type, definition_version, correlation_id,
                       request_fingerprint, payload, status, create_time, update_time, version)
    SELECT saga_id, %(saga_type)s, 1, 'recovery-' || n, '', %(payload)s::jsonb, 'RUNNING',
           t, t, 2
    FROM ids
    RETURNING saga_id, create_time
), steps AS (
    INSERT INTO saga_steps (saga_id, step_index, name, status, attempts, start_time, update_time)
    SELECT s.saga_id, i - 1, names[i], CASE WHEN i = 1 THEN 'STARTED' ELSE 'PENDING' END,
           CASE WHEN i = 1 THEN 1 ELSE 0 END,
           CASE WHEN i = 1 THEN s.create_time END, CASE WHEN i = 1 THEN s.create_time END
    FROM sagas s, (SELECT %(names)s::text[] AS names) AS n,
         generate_series(1, cardinality(%(names)s::text[])) AS i
)
INSERT INTO saga_transitions (saga_id, seq, event, time, saga_status, step, step_status,
                              attempt, actor)
SELECT saga_id, 1, 'SAGA_STARTED', create_time, 'RUNNING', '', NULL, 0, 'engine' FROM sagas
UNION ALL
SELECT saga_id, 2, 'STEP_STARTED', create_time, 'RUNNING', %(first)s, 'STARTED', 1, 'engine'
FROM sagas
"""

_PROGRESS = """
SELECT count(*) FILTER (WHERE lease_owner IS NOT NULL OR status IN ('COMPLETED', 'FAILED')),
       count(*) FILTER (WHERE status IN ('COMPLETED', 'FAILED'))
FROM sagas
"""


def fill(url: str, sagas: int) -> float:
    """Leave `sagas` RUNNING sagas in the store as a dead replica would; returns seconds."""
    asyncio.run(_migrate(url))
    names = [step.name for step in BENCH_TRIP.all_steps]
    payload = json_format.MessageToDict(trip_input("success"), preserving_proto_field_name=True)
    started = time.monotonic()
    with psycopg.connect(url) as connection:
        connection.execute(
            _FILL,
            {
                "n": sagas,
                "saga_type": BENCH_TRIP.name,
                "payload": json.dumps(payload),
                "names": names,
                "first": names[0],
            },
        )
    return time.monotonic() - started


async def _migrate(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    await store.close()


def measure(url: str, sagas: int, workdir: Path) -> dict[str, Any]:
    """Start participants and an orchestrator; time serving, resuming all, finishing all."""
    python = sys.executable
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    participants = ChildProcess(
        "participants", [python, "-m", "bench.participant"], workdir, env=env
    )
    orchestrator: ChildProcess | None = None
    try:
        participants.start()
        launched = time.monotonic()
        orchestrator = ChildProcess(
            "orchestrator",
            [
                python,
                "-m",
                "bench.serve_orchestrator",
                "--database",
                url,
                "--participants",
                participants.address,
            ],
            workdir,
            env=env,
        ).start()
        serving = time.monotonic() - launched
        resumed = finished = None
        with psycopg.connect(url, autocommit=True) as connection:
            while finished is None:
                if time.monotonic() - launched > FINISH_TIMEOUT_SECONDS:
                    raise TimeoutError(f"sagas not finished after {FINISH_TIMEOUT_SECONDS}s")
                row = connection.execute(_PROGRESS).fetchone()
                assert row is not None
                claimed, done = int(row[0]), int(row[1])
                now = time.monotonic() - launched
                if resumed is None and claimed >= sagas:
                    resumed = now
                if done >= sagas:
                    finished = now
                time.sleep(POLL_SECONDS)
            statuses: dict[str, int] = dict(
                connection.execute("SELECT status, count(*) FROM sagas GROUP BY 1").fetchall()
            )
        return {
            "serving_s": serving,
            "all_resumed_s": resumed,
            "all_finished_s": finished,
            "statuses": statuses,
        }
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        participants.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--sagas", type=int, default=10_000)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL", DEFAULT_SERVER_URL)
    )
    parser.add_argument("--out-dir", type=Path, default=Path(".bench"))
    args = parser.parse_args(argv)
    admin = Admin(args.postgres_url)
    database = admin.create_database()
    try:
        url = database_url(args.postgres_url, database)
        fill_s = fill(url, args.sagas)
        with tempfile.TemporaryDirectory(prefix="saga-recovery-") as workdir:
            result = {
                "sagas": args.sagas,
                "fill_s": fill_s,
                **measure(url, args.sagas, Path(workdir)),
            }
    finally:
        admin.drop_database(database)
        admin.close()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "recovery-latest.json").write_text(json.dumps(result, indent=2))
    print(
        f"recovery: {result['sagas']} sagas in flight; orchestrator serving after "
        f"{result['serving_s']:.2f}s, all resumed after {result['all_resumed_s']:.2f}s, "
        f"all finished after {result['all_finished_s']:.2f}s ({result['statuses']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
