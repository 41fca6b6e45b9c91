"""Recovery speed: N sagas in flight in the store, then an orchestrator starts.

The store is filled with N `bench_trip` sagas left RUNNING by a replica that died:
their first step STARTED (its command may or may not have gone out), no lease.
The harness then starts the light participants and one orchestrator and reports
the time from launching the orchestrator process until it served, until every
saga was claimed (resumed), and until every saga finished; resumed per second
counts from the moment it served. Meanwhile a client starts new sagas at a steady
rate and times each StartSaga (p50, p99, and how many were refused for lack of
room: new and resumed sagas share --max-sagas-in-flight). Two figures do not
depend on the machine's load: the orchestrator's CPU time per saga, and database
transactions per saga (pg_stat_database of the run's own database; each
autocommit read is one, a group commit one), the harness's own polls left out.

    python -m bench.recovery [--sagas 10000] [--max-sagas-in-flight N]
                             [--new-per-second 20] [--profile] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from google.protobuf import json_format

from bench.pg import Admin, database_url
from bench.profile import Profiler, ensure_py_spy
from bench.sagas import BENCH_TRIP
from bench.workload import SAGA_TYPE, trip_input
from orchestrator.client import SagaClient
from orchestrator.client.errors import ClientError
from orchestrator.core.limits import DEFAULT_MAX_SAGAS_IN_FLIGHT
from orchestrator.core.records import Lease
from orchestrator.engine.leases import CLAIM_BATCH
from orchestrator.store import PoolConfig, PostgresStore
from tools.processes import ChildProcess

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POLL_SECONDS = 0.05
PER_SAGA_LOADS_AT_ONCE = 8
"""Sagas loaded at once by the per-saga pass: as many as the pool can serve side by side."""
FINISH_TIMEOUT_SECONDS = 600.0
SETTLE_TIMEOUT_SECONDS = 10.0

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
FROM sagas WHERE correlation_id LIKE 'recovery-%'
"""
_TRANSACTIONS = """
SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()
"""
_OTHER_SESSIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
_NEW_SAGAS = "SELECT count(*) FROM sagas WHERE correlation_id LIKE 'new-%'"


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


LOADING_PASSES = ("per_batch", "per_saga", "per_saga", "per_batch")
"""Claim-and-load passes in ABBA order, so a change of the machine's load hits both alike."""


def claim_and_load(url: str, batch: int) -> dict[str, list[dict[str, float]]]:
    """Claim and load the whole backlog as a restarted replica does, without driving it:
    each claimed batch loaded with one set-based read (`load_sagas`, as the executor
    does now), or with three reads per saga, eight at a time (as it did before). The
    leases are handed back after each pass. Per pass: sagas per second, this process's
    CPU and the database's transactions per saga."""
    passes: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    for how in LOADING_PASSES:
        before = _transactions(url, settled=True)
        cpu_before = time.process_time()
        began = time.perf_counter()
        claimed = asyncio.run(_claim_and_load_all(url, batch, per_saga=how == "per_saga"))
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_before
        transactions = _transactions(url, settled=True) - before
        passes[how].append(
            {
                "sagas": claimed,
                "per_s": claimed / elapsed,
                "cpu_ms_per_saga": 1000.0 * cpu / claimed,
                "transactions_per_saga": transactions / claimed,
            }
        )
    return dict(passes)


async def _claim_and_load_all(url: str, batch: int, *, per_saga: bool) -> int:
    store = PostgresStore(url, max_size=PoolConfig().max_size)
    await store.open()
    lease = Lease(f"bench-claim-and-load-{os.getpid()}", 60.0)
    claimed_ids: list[str] = []
    try:
        while True:
            ids = [saga.saga_id for saga in await store.claim_sagas(lease, batch)]
            if per_saga:
                loading = asyncio.Semaphore(PER_SAGA_LOADS_AT_ONCE)
                await asyncio.gather(*(_load_alone(store, loading, saga_id) for saga_id in ids))
            else:
                await store.load_sagas(ids)
            claimed_ids += ids
            if len(ids) < batch:
                return len(claimed_ids)
    finally:
        await store.release_leases(lease.owner, claimed_ids)
        await store.close()


async def _load_alone(store: PostgresStore, loading: asyncio.Semaphore, saga_id: str) -> None:
    """One saga's row, steps and newest seq, three reads, as a saga's task loaded it before."""
    async with loading:
        await store.get_saga(saga_id)
        await store.get_steps(saga_id)
        await store.last_seq(saga_id)


def measure(
    url: str,
    sagas: int,
    workdir: Path,
    *,
    max_in_flight: int,
    new_per_second: float,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Start participants and an orchestrator; time serving, resuming all, finishing all,
    while new sagas are started at `new_per_second`."""
    python = sys.executable
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    participants = ChildProcess(
        "participants", [python, "-m", "bench.participant"], workdir, env=env
    )
    orchestrator: ChildProcess | None = None
    profiler: Profiler | None = None
    new_sagas: NewSagas | None = None
    try:
        participants.start()
        transactions_before = _transactions(url)
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
                "--max-sagas-in-flight",
                str(max_in_flight),
            ],
            workdir,
            env=env,
        ).start()
        serving = time.monotonic() - launched
        if profile is not None:
            profiler = _profiler(profile, orchestrator.pid)
        new_sagas = NewSagas(orchestrator.address, new_per_second).start()
        resumed = finished = None
        cpu_resumed = 0.0
        polls = 0
        with psycopg.connect(url, autocommit=True) as connection:
            while finished is None:
                if time.monotonic() - launched > FINISH_TIMEOUT_SECONDS:
                    raise TimeoutError(f"sagas not finished after {FINISH_TIMEOUT_SECONDS}s")
                row = connection.execute(_PROGRESS).fetchone()
                polls += 1
                assert row is not None
                claimed, done = int(row[0]), int(row[1])
                now = time.monotonic() - launched
                if resumed is None and claimed >= sagas:
                    resumed = now
                    cpu_resumed = cpu_seconds(orchestrator.pid)
                    new_sagas.mark("after_resumed")
                if done >= sagas:
                    finished = now
                time.sleep(POLL_SECONDS)
            cpu_finished = cpu_seconds(orchestrator.pid)
            starts = new_sagas.stop()
            new_sagas = None
            statuses: dict[str, int] = dict(
                connection.execute(
                    "SELECT status, count(*) FROM sagas WHERE correlation_id LIKE 'recovery-%' "
                    "GROUP BY 1"
                ).fetchall()
            )
            stored_new = connection.execute(_NEW_SAGAS).fetchone()
            polls += 2
        hotspots = profiler.stop() if profiler is not None else None
        profiler = None
        orchestrator.stop()
        orchestrator = None
        transactions = _transactions(url, settled=True) - transactions_before - polls
        stored = sagas + (int(stored_new[0]) if stored_new else 0)
        assert resumed is not None
        return {
            "max_sagas_in_flight": max_in_flight,
            "serving_s": serving,
            "all_resumed_s": resumed,
            "all_finished_s": finished,
            "resumed_per_s": sagas / (resumed - serving),
            "finished_per_s": sagas / (finished - serving),
            "orchestrator_cpu_s_until_resumed": cpu_resumed,
            "orchestrator_cpu_ms_per_saga": 1000.0 * cpu_finished / stored,
            "transactions_per_saga": transactions / stored,
            "statuses": statuses,
            "new_sagas": starts,
            **({"profile": hotspots} if hotspots is not None else {}),
        }
    finally:
        if new_sagas is not None:
            new_sagas.stop()
        if profiler is not None:
            profiler.stop()
        if orchestrator is not None:
            orchestrator.stop()
        participants.stop()


class NewSagas:
    """StartSaga calls at a steady rate from a thread of their own, each timed from the
    call to its answer; calls do not wait for each other, so a slow answer does not
    delay the next start. Calls are grouped by phase (`mark`)."""

    def __init__(self, address: str, per_second: float) -> None:
        self._address = address
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._phase = "while_resuming"
        self._latencies_ms: dict[str, list[float]] = collections.defaultdict(list)
        self._refused: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="new-sagas", daemon=True)

    def start(self) -> NewSagas:
        if self._interval:
            self._thread.start()
        return self

    def mark(self, phase: str) -> None:
        self._phase = phase

    def stop(self) -> dict[str, Any]:
        """Stop starting; wait for the calls under way; their latencies by phase."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
        return {
            phase: {
                "started": len(latencies),
                "refused": dict(self._refused[phase]),
                "p50_ms": _percentile(latencies, 50),
                "p99_ms": _percentile(latencies, 99),
            }
            for phase, latencies in self._latencies_ms.items()
        } | {
            phase: {"started": 0, "refused": dict(refused)}
            for phase, refused in self._refused.items()
            if phase not in self._latencies_ms
        }

    def _run(self) -> None:
        asyncio.run(self._start_steadily())

    async def _start_steadily(self) -> None:
        calls: set[asyncio.Task[None]] = set()
        async with SagaClient(self._address) as client:
            next_at = time.monotonic()
            number = 0
            while not self._stopping.is_set():
                number += 1
                call = asyncio.create_task(self._start_one(client, number))
                calls.add(call)
                call.add_done_callback(calls.discard)
                next_at += self._interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*calls)

    async def _start_one(self, client: SagaClient, number: int) -> None:
        phase = self._phase
        began = time.perf_counter()
        try:
            await client.start(
                trip_input("success"), correlation_id=f"new-{number}", saga_type=SAGA_TYPE
            )
        except ClientError as error:
            self._refused[phase][error.reason or type(error).__name__] += 1
            return
        self._latencies_ms[phase].append(1000.0 * (time.perf_counter() - began))


def _percentile(values: list[float], percent: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percent / 100.0 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a live process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _transactions(url: str, *, settled: bool = False) -> int:
    """Transactions committed or rolled back in the database so far (each autocommit
    statement is one). With `settled`, first wait until no other session is connected:
    a session's counts reach pg_stat_database when it ends, at the latest."""
    with psycopg.connect(url, autocommit=True) as connection:
        for _ in range(int(SETTLE_TIMEOUT_SECONDS / POLL_SECONDS)):
            if not settled:
                break
            row = connection.execute(_OTHER_SESSIONS).fetchone()
            if row is not None and int(row[0]) == 0:
                break
            time.sleep(POLL_SECONDS)
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(_TRANSACTIONS).fetchone()
        return int(row[0]) if row is not None else 0


def _profiler(output: Path, pid: int) -> Profiler | None:
    output.parent.mkdir(parents=True, exist_ok=True)
    executable, why = ensure_py_spy(
        output.parent / "tools-venv", output.parent / "tools-venv-install.log"
    )
    if executable is None:
        print(f"recovery: not profiling: {why}", file=sys.stderr)
        return None
    return Profiler(executable, pid, output, focus="orchestrator/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--sagas", type=int, default=10_000)
    parser.add_argument(
        "--max-sagas-in-flight",
        type=int,
        default=DEFAULT_MAX_SAGAS_IN_FLIGHT,
        help="the orchestrator's budget of sagas driven at once, resumed and new alike",
    )
    parser.add_argument(
        "--new-per-second",
        type=float,
        default=20.0,
        help="StartSaga calls per second while the backlog is resumed (0: none)",
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL", DEFAULT_SERVER_URL)
    )
    parser.add_argument("--out-dir", type=Path, default=Path(".bench"))
    parser.add_argument(
        "--profile", action="store_true", help="sample the orchestrator with py-spy"
    )
    parser.add_argument(
        "--claim-and-load",
        action="store_true",
        help="first time claiming and loading the backlog alone, per batch and per saga",
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    admin = Admin(args.postgres_url)
    database = admin.create_database()
    try:
        url = database_url(args.postgres_url, database)
        fill_s = fill(url, args.sagas)
        loading = claim_and_load(url, CLAIM_BATCH) if args.claim_and_load else None
        with tempfile.TemporaryDirectory(prefix="saga-recovery-") as workdir:
            result = {
                "sagas": args.sagas,
                "load_average_before": load_before,
                "fill_s": fill_s,
                **({"claim_and_load": loading} if loading is not None else {}),
                **measure(
                    url,
                    args.sagas,
                    Path(workdir),
                    max_in_flight=args.max_sagas_in_flight,
                    new_per_second=args.new_per_second,
                    profile=args.out_dir / "recovery-profile.txt" if args.profile else None,
                ),
            }
    finally:
        admin.drop_database(database)
        admin.close()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "recovery-latest.json").write_text(json.dumps(result, indent=2))
    print(summary(result))
    return 0


def summary(result: dict[str, Any]) -> str:
    """The run in a few lines: times, rates, cost per saga, new sagas' StartSaga latency."""
    lines = [
        f"recovery: {result['sagas']} sagas in flight, max sagas in flight "
        f"{result['max_sagas_in_flight']}, load average before "
        f"{result['load_average_before'][0]:.2f}",
        f"  orchestrator serving after {result['serving_s']:.2f}s, all resumed after "
        f"{result['all_resumed_s']:.2f}s, all finished after {result['all_finished_s']:.2f}s "
        f"({result['statuses']})",
        f"  resumed {result['resumed_per_s']:.0f}/s, finished {result['finished_per_s']:.0f}/s "
        f"(from serving); orchestrator CPU {result['orchestrator_cpu_ms_per_saga']:.2f} ms and "
        f"{result['transactions_per_saga']:.2f} database transactions per saga",
    ]
    for how, passes in result.get("claim_and_load", {}).items():
        lines.append(
            f"  claim and load alone, {how.replace('_', ' ')}: "
            + "; ".join(
                f"{run['per_s']:.0f}/s, {run['cpu_ms_per_saga']:.3f} ms CPU and "
                f"{run['transactions_per_saga']:.3f} transactions per saga"
                for run in passes
            )
        )
    for phase, starts in result["new_sagas"].items():
        p50, p99 = starts.get("p50_ms"), starts.get("p99_ms")
        latency = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms" if p50 is not None else "no latency"
        lines.append(
            f"  new sagas {phase.replace('_', ' ')}: {starts['started']} started ({latency}), "
            f"refused {starts['refused'] or 0}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
