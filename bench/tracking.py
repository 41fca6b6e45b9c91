"""Tracked sagas on PostgreSQL: events ingested per second, how late a stuck instance is
flagged, and what 100,000 open tracked sagas cost an idle replica.

On a throwaway PostgreSQL database, in order:

1. **Ingest**: `--instances` bookings of a tracked type (a start and three steps, so four
   events each) are ingested through `TrackedEvents` in this process, as a broker
   consumer delivers them: batches of `--batch` events (each a slice of the stream, in
   which a booking's events come in their order, bookings interleaved), `--consumers`
   batches in flight at once. Reported: events/s from the first batch to the last
   commit, every instance COMPLETED, and this process's CPU meanwhile.
2. **Flagging**: `--stuck` instances of a type whose steps must happen within
   `--window` seconds are started and left alone, with the executor serving (its lease
   keeper claims a parked saga at its wake time). For each, lateness = the time of its
   STEP_TIMED_OUT row less its deadline (its STEP_WAITING row + the window); p50, p99
   and max, waited for through the store, never slept out.
3. **Idle**: the open sagas are topped up to `--open` (start events only: each waits for
   its first step, a window of an hour, parked), the in-process replica is stopped, and a
   `saga serve` child process serves the database; after `--settle-seconds`, its CPU (%
   of one core, from /proc) over `--idle-seconds`, its RSS, and the database's
   transactions a second.

    python -m bench.tracking [--instances 5000] [--open 100000] [--postgres-url URL]

The figures depend on the machine's load, which is reported with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.pg import Admin, database_url
from bench.procs import cpu_seconds, machine_load
from orchestrator import Correlation, TrackedStep, tracked_saga
from orchestrator.core.incoming import IncomingEvent
from orchestrator.core.records import Lease
from orchestrator.core.registry import Registry
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.engine.leases import unique_replica_id
from orchestrator.engine.tracking import TrackedEvents
from orchestrator.store import PostgresStore
from tools.processes import orchestrator_process

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
T = "bench.travel."
HOUR = 3600.0
STUCK_WINDOW_SECONDS = 1.0
SETTLE_TIMEOUT_SECONDS = 900.0


def _flow(name: str, within: float) -> Any:
    return tracked_saga(
        name,
        version=1,
        started_by=(T + name + ".started",),
        correlation=Correlation(data_path="booking_id"),
        description="A booking its services carry through events (bench.tracking).",
        steps=tuple(
            TrackedStep(
                step,
                participant=step,
                completes_on=f"{T}{name}.{step}_done",
                fails_on=f"{T}{name}.{step}_failed",
                within=within,
                compensated_on=f"{T}{name}.{step}_undone",
            )
            for step in ("flight", "hotel", "car")
        ),
    )


BENCH_FLOW = _flow("bench_flow", HOUR)
BENCH_STUCK = _flow("bench_stuck", STUCK_WINDOW_SECONDS)
DEFINITIONS = (BENCH_FLOW, BENCH_STUCK)


def _event(flow: str, kind: str, booking: str) -> IncomingEvent:
    return IncomingEvent(
        source=f"/bench/{kind}",
        id=f"{kind}-{booking}",
        type=f"{T}{flow}.{kind}",
        data={"booking_id": booking, "ref": f"{kind}-{booking}"},
        received_via="bench",
    )


def stream(flow: str, bookings: Sequence[str], batch: int) -> list[list[IncomingEvent]]:
    """A consumer's batches: bookings in groups of batch/4, each group's starts, then its
    flights, hotels and cars (a booking's events in order, bookings interleaved)."""
    group = max(1, batch // 4)
    batches: list[list[IncomingEvent]] = []
    for first in range(0, len(bookings), group):
        chunk = bookings[first : first + group]
        events = [
            _event(flow, kind, booking)
            for kind in ("started", "flight_done", "hotel_done", "car_done")
            for booking in chunk
        ]
        batches += [events[i : i + batch] for i in range(0, len(events), batch)]
    return batches


def _batches(events: list[IncomingEvent], size: int) -> list[list[IncomingEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def _count(url: str, query: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(query, params).fetchone()
        return int(row[0]) if row else 0


async def _until(url: str, query: str, params: tuple[Any, ...], target: int, what: str) -> None:
    """Until the count reaches `target`, reading the store every 0.1 s (bounded)."""
    began = time.perf_counter()
    while _count(url, query, params) < target:
        if time.perf_counter() - began > SETTLE_TIMEOUT_SECONDS:
            raise RuntimeError(f"{what}: not reached in {SETTLE_TIMEOUT_SECONDS}s")
        await asyncio.sleep(0.1)


async def _consume(tracked: TrackedEvents, batches: list[list[IncomingEvent]], n: int) -> None:
    """`n` consumers taking the next batch as each finishes its own."""
    queue = iter(batches)

    async def consumer() -> None:
        for batch in queue:
            await tracked.ingest(batch)

    await asyncio.gather(*(consumer() for _ in range(n)))


BY_STATUS = "SELECT count(*) FROM sagas WHERE saga_type = %s AND status = %s"
FLAGGED = "SELECT count(*) FROM sagas WHERE saga_type = %s AND needs_intervention"
LATENESS = """
SELECT extract(epoch FROM t.time - (w.time + make_interval(secs => %s))) AS late
FROM saga_transitions t
JOIN saga_transitions w ON w.saga_id = t.saga_id AND w.step = t.step
     AND w.event = 'STEP_WAITING'
JOIN sagas s ON s.saga_id = t.saga_id
WHERE s.saga_type = %s AND t.event = 'STEP_TIMED_OUT'
"""


async def _in_process(args: argparse.Namespace, url: str) -> dict[str, Any]:
    store = PostgresStore(url, min_size=2, max_size=args.pool, replica_id=unique_replica_id())
    await store.open()
    registry = Registry(DEFINITIONS)
    participants = ParticipantClient({})
    executor = Executor(store, registry, participants, lease=Lease(unique_replica_id(), 10.0))
    tracked = TrackedEvents(store, registry, executor)
    result: dict[str, Any] = {}
    try:
        bookings = [f"B{n:07d}" for n in range(args.instances)]
        batches = stream(BENCH_FLOW.name, bookings, args.batch)
        cpu_before, began = cpu_seconds(os.getpid()) or 0.0, time.perf_counter()
        await _consume(tracked, batches, args.consumers)
        elapsed = time.perf_counter() - began
        cpu = (cpu_seconds(os.getpid()) or 0.0) - cpu_before
        completed = _count(url, BY_STATUS, (BENCH_FLOW.name, "COMPLETED"))
        result["ingest"] = {
            "instances": args.instances,
            "events": 4 * args.instances,
            "batch": args.batch,
            "consumers": args.consumers,
            "events_per_s": 4 * args.instances / elapsed,
            "completed": completed,
            "cpu_percent_of_a_core": 100.0 * cpu / elapsed,
        }

        executor.resume_unfinished()
        stuck = [f"S{n:06d}" for n in range(args.stuck)]
        starts = [_event(BENCH_STUCK.name, "started", booking) for booking in stuck]
        await _consume(
            tracked, [starts[i : i + args.batch] for i in range(0, len(starts), args.batch)], 1
        )
        await _until(url, FLAGGED, (BENCH_STUCK.name,), args.stuck, "every stuck saga flagged")
        with psycopg.connect(url, autocommit=True) as connection:
            rows = connection.execute(LATENESS, (STUCK_WINDOW_SECONDS, BENCH_STUCK.name)).fetchall()
        late = sorted(1000.0 * float(row[0]) for row in rows)
        cuts = statistics.quantiles(late, n=100, method="inclusive") if len(late) > 1 else late * 99
        result["flagging"] = {
            "instances": args.stuck,
            "window_s": STUCK_WINDOW_SECONDS,
            "late_p50_ms": cuts[49],
            "late_p99_ms": cuts[98],
            "late_max_ms": late[-1],
        }

        open_now = _count(url, BY_STATUS, (BENCH_FLOW.name, "RUNNING"))
        more = [f"O{n:07d}" for n in range(max(0, args.open - open_now))]
        starts = [_event(BENCH_FLOW.name, "started", booking) for booking in more]
        began = time.perf_counter()
        await _consume(
            tracked,
            [starts[i : i + args.batch] for i in range(0, len(starts), args.batch)],
            args.consumers,
        )
        result["open_started_per_s"] = len(more) / max(time.perf_counter() - began, 1e-9)
    finally:
        await executor.stop()
        await participants.close()
        await store.close()
    return result


def _rss_mib(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return None


def _transactions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0


REPO = Path(__file__).resolve().parents[1]


async def _idle(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    """A `saga serve` replica on the database, idle with the open sagas parked."""
    env = {"SAGA_DEFINITIONS": "bench.tracking", "PYTHONPATH": str(REPO)}
    replica = orchestrator_process(workdir, url, {}, env=env, name="idle-replica").start()
    try:
        await asyncio.sleep(args.settle_seconds)  # start-up and first claims done
        before, tx_before = cpu_seconds(replica.pid) or 0.0, _transactions(url)
        await asyncio.sleep(args.idle_seconds)
        after, tx_after = cpu_seconds(replica.pid) or 0.0, _transactions(url)
        return {
            "open_sagas": _count(url, "SELECT count(*) FROM sagas WHERE status = 'RUNNING'"),
            "seconds": args.idle_seconds,
            "cpu_percent_of_a_core": 100.0 * (after - before) / args.idle_seconds,
            "rss_mib": _rss_mib(replica.pid),
            "db_transactions_per_s": (tx_after - tx_before) / args.idle_seconds,
        }
    finally:
        replica.stop()


def report(result: dict[str, Any]) -> str:
    ingest, flagging, idle = result["ingest"], result["flagging"], result["idle"]
    return "\n".join(
        [
            f"ingest: {ingest['events']} events ({ingest['instances']} bookings x 4) in batches "
            f"of {ingest['batch']}, {ingest['consumers']} in flight: "
            f"{ingest['events_per_s']:.0f} events/s, {ingest['completed']} COMPLETED, "
            f"{ingest['cpu_percent_of_a_core']:.0f}% of a core (target >= 2,000/s)",
            f"flagging: {flagging['instances']} stuck, window {flagging['window_s']:g}s: late "
            f"p50 {flagging['late_p50_ms']:.0f} ms, p99 {flagging['late_p99_ms']:.0f} ms, "
            f"max {flagging['late_max_ms']:.0f} ms (target p99 <= 1,000 ms)",
            f"idle: {idle['open_sagas']} open tracked sagas, {idle['seconds']:g}s: "
            f"{idle['cpu_percent_of_a_core']:.2f}% of a core, RSS {idle['rss_mib']:.0f} MiB, "
            f"{idle['db_transactions_per_s']:.1f} db tx/s (target < 2%)",
            f"machine: {result['machine']}",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking", description=__doc__)
    parser.add_argument("--instances", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--stuck", type=int, default=200)
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--settle-seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--postgres-url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL"))
    parser.add_argument("--out-dir", type=Path, default=Path(".bench"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The flagging phase makes sagas need an operator on purpose: no line each.
    logging.getLogger("orchestrator.engine.executor").setLevel(logging.CRITICAL)
    server_url = args.postgres_url or DEFAULT_SERVER_URL
    admin = Admin(server_url)
    database = admin.create_database()
    try:
        url = database_url(server_url, database)
        with tempfile.TemporaryDirectory(prefix="bench-tracking-") as workdir:
            machine = machine_load()
            result = asyncio.run(_in_process(args, url))
            result["idle"] = asyncio.run(_idle(args, url, Path(workdir)))
            result["machine"] = machine
    finally:
        admin.drop_database(database)
        admin.close()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "tracking-latest.json").write_text(json.dumps(result, indent=2))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
