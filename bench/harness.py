"""`make bench`: our orchestrator, two hand-written ceilings and DBOS Transact, side by side.

Every cell (workload and concurrency, per system) runs `--repeats` times; the
systems take turns round-robin (repeat r starts with the r-th system), so a
drift of a shared machine falls on all of them. Each run of one system gets a
throwaway database `saga_bench_<hex>` on the same PostgreSQL server and talks
to the same participants process:

0. record the 1-minute load average and the CPU busy share over 1 s
   (/proc/stat); a run is flagged BUSY when something else is using the
   machine (see `is_busy`);
1. create the database; start and stop the system twice with no load: the
   first creates its schema, the second measures what a start and stop cost
   in commits (subtracted below); DBOS then stays launched and idle for
   `--idle-seconds` to measure its background commits per second;
2. start the system (and for ours the separate load generator), let the
   driver warm up, read every process's CPU counters, say "go", let it run
   for `--seconds` (or `--sagas`), read the counters again, read the
   system's peak RSS;
3. stop every process, read the database's commit counter once no backend of
   it is left (bench/pg.py says why), read the measured sagas' committed
   latencies (bench/latency.py), drop the database.

Commits per saga = (commits of run 2 - start/stop cost - the load
generator's own polling reads - idle commits/s x the run's lifetime) /
(warm-up + measured sagas), exact because the counter is read only after
every backend has flushed it. CPU per saga divides the CPU used during the
measured load alone by the measured sagas; PostgreSQL's is the postmaster and
all its children (so the server must be local), less the harness's and the
load generator's own backends.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from bench import floor, report
from bench.latency import committed_latencies_ms
from bench.pg import (
    INFO_SETTINGS,
    Admin,
    DurabilityOff,
    autovacuum_runs,
    check_durability,
    database_url,
    disable_autovacuum,
)
from bench.procs import PostgresCpu, cpu_seconds, machine_load, peak_rss_mib
from bench.profile import Profiler, ensure_py_spy
from bench.systems import (
    MULTI_REPLICA_MIN_CONCURRENCY,
    REPLICAS,
    REPO,
    SYSTEMS,
    Launch,
    Measured,
    Peer,
    ensure_dbos_venv,
)
from bench.workload import expected_status
from tools.processes import ChildProcess

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL_ENV = "SAGA_BENCH_POSTGRES_URL"
COMPLETION_DETECTION = {
    "ours": "separate load-generator process: one ExecuteSaga call per saga over gRPC, "
    "answered by the orchestrator when the saga's terminal transition is committed "
    "(with --completion poll: StartSaga, then one poller for all sagas in flight reads "
    "`sagas.status` on its own connection, its reads and CPU subtracted); paces the loop only",
    "group": "in-process load: the saga's terminal commit returned",
    "loop": "in-process load: the saga's terminal commit returned",
    "dbos": "in-process load: the awaited workflow returned (after DBOS committed its result)",
}
COMPLETION_DETECTION["ours2"] = COMPLETION_DETECTION["ours"]
LATENCY_DEFINITION = (
    "start to terminal commit, from the timestamps each system committed with the saga "
    "(bench/latency.py), read from its tables after the run"
)

PROFILE_FOCUS = {
    "ours": "orchestrator/",
    "ours2": "orchestrator/",
    "group": "bench/",
    "loop": "bench/",
    "dbos": "dbos/",
}
"""Where each system's own code lives, for the profile's time-below-function ranking."""


@dataclass(frozen=True)
class Variant:
    workload: str
    concurrency: int
    sagas: int
    warmup: int
    seconds: float | None = None
    """Measured load for this long (then `sagas` is not used)."""


@dataclass(frozen=True)
class Slot:
    """One run of the plan: a system on a variant, the repeat-th time."""

    variant: Variant
    system: str
    repeat: int


def schedule(
    variants: list[Variant],
    systems: list[str],
    repeats: int,
    multi_replica_from: int = MULTI_REPLICA_MIN_CONCURRENCY,
) -> list[Slot]:
    """Every variant `repeats` times; repeat r runs the systems starting with the r-th
    (round-robin), so no system always goes first or last on a drifting machine. Several
    replicas of ours run only where the concurrency can keep them busy."""
    slots = []
    for variant in variants:
        cell_systems = [
            system
            for system in systems
            if REPLICAS.get(system, 1) == 1 or variant.concurrency >= multi_replica_from
        ]
        for repeat in range(repeats):
            shift = repeat % len(cell_systems)
            for system in cell_systems[shift:] + cell_systems[:shift]:
                slots.append(Slot(variant, system, repeat))
    return slots


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL,
        help=f"a maintenance database on the server (env {POSTGRES_URL_ENV}; "
        f"default {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="default: %(default)s")
    parser.add_argument("--concurrency", type=_int_list, default=[1, 8, 64])
    parser.add_argument(
        "--compensation-concurrency",
        type=_int_list,
        default=[64, 1],
        help="concurrencies of the compensation workload ('' for none)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="measured load per run, in seconds (0: a fixed number of sagas, --sagas)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each cell")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short look, not a result: --seconds 2 --repeats 1 --idle-seconds 1",
    )
    parser.add_argument("--sagas-c1", type=int, default=200, help="with --seconds 0: at c=1")
    parser.add_argument("--sagas", type=int, default=800, help="with --seconds 0: at c>1")
    parser.add_argument("--warmup", type=int, help="warm-up sagas (default max(30, 2c))")
    parser.add_argument(
        "--busy-load",
        type=float,
        default=0.5,
        help="flag the first run if the 1-minute load average before it was above this",
    )
    parser.add_argument(
        "--busy-cpu",
        type=float,
        default=0.15,
        help="flag a run if this share of the CPU was busy in the second before it",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="DBOS launched with no load this long before each run: its background commits/s",
    )
    parser.add_argument(
        "--completion",
        choices=("execute", "poll"),
        default="execute",
        help="ours: each saga one ExecuteSaga call (the default), or StartSaga and a poller",
    )
    parser.add_argument(
        "--poll-ms", type=float, default=1.0, help="ours with --completion poll: its interval"
    )
    parser.add_argument(
        "--multi-replica-from",
        type=int,
        default=MULTI_REPLICA_MIN_CONCURRENCY,
        help="run ours2 (two replicas) only in cells of at least this concurrency",
    )
    parser.add_argument(
        "--ceiling-pool-size",
        type=int,
        default=16,
        help="the ceiling's connections, at most the concurrency (16 was its best at c=64)",
    )
    parser.add_argument("--log-level", default="WARNING", help="the orchestrator's log level")
    parser.add_argument("--out-dir", type=Path, default=REPO / ".bench")
    parser.add_argument(
        "--profile",
        default="",
        help="systems whose process py-spy samples during the measured load, e.g. 'ours' "
        "(py-spy is installed into .bench/tools-venv on first use; it costs some CPU)",
    )
    parser.add_argument(
        "--floor-calls",
        type=int,
        default=5000,
        help="calls per floor row (a bare gRPC call pair, a bare group-commit write; 0: none)",
    )
    parser.add_argument(
        "--min-rate",
        type=float,
        default=10.0,
        help="a run slower than this many sagas/s is stopped as failed (bounds the time)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats, args.idle_seconds = 2.0, 1, 1.0
        args.floor_calls = min(args.floor_calls, 1000)
    if args.repeats < 1 or args.idle_seconds <= 0:
        parser.error("--repeats must be at least 1 and --idle-seconds above 0")
    args.systems = [name for name in args.systems.split(",") if name]
    args.profile = [name for name in args.profile.split(",") if name]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s) {sorted(unknown)}; expected some of {SYSTEMS}")
    return args


def plan(args: argparse.Namespace) -> list[Variant]:
    def warmup(concurrency: int) -> int:
        return args.warmup if args.warmup is not None else max(30, 2 * concurrency)

    seconds = args.seconds or None
    variants = [
        Variant("success", c, args.sagas_c1 if c == 1 else args.sagas, warmup(c), seconds)
        for c in args.concurrency
    ]
    variants += [
        Variant("compensation", c, args.sagas_c1 if c == 1 else args.sagas, warmup(c), seconds)
        for c in args.compensation_concurrency
    ]
    return variants


def is_busy(machine: dict[str, float], first_run: bool, args: argparse.Namespace) -> bool:
    """Whether a run begins on a busy machine.

    The CPU busy share over the second before the run says whether anything else is
    running now. The 1-minute load average says so only before the first run: after
    that it carries the tail of the bench's own runs (back to back at a load of 2 to 3,
    it needs about two minutes to fall below 0.5), which would flag every run.
    """
    if machine["cpu_busy_share"] > args.busy_cpu:
        return True
    return first_run and machine["load_1m"] > args.busy_load


class Harness:
    """Owns the participants process, the admin connection and every run's throwaway database."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.runs_started = 0
        self.admin = Admin(args.postgres_url)
        self.admin_pid = self.admin.backend_pid()
        self.postgres_cpu = PostgresCpu.from_backend(self.admin_pid)
        self.participants = ChildProcess(
            "participants",
            [sys.executable, "-m", "bench.participant"],
            workdir,
            env={"PYTHONPATH": str(REPO)},
            cwd=REPO,
            ready_file=True,
        )
        self.peer = Peer(reason="not requested")
        self.py_spy: str | None = None

    def close(self) -> None:
        self.participants.stop()
        self.admin.close()

    def prepare(self) -> dict[str, Any]:
        """Check durability, start the participants, make the peer's virtualenv."""
        durability = check_durability(self.args.postgres_url)
        info = self.admin.settings(INFO_SETTINGS)
        self.participants.start()
        if "dbos" in self.args.systems:
            self.peer = ensure_dbos_venv(
                self.args.out_dir / "dbos-venv", self.args.out_dir / "dbos-venv-install.log"
            )
        if self.args.profile:
            self.py_spy, why = ensure_py_spy(
                self.args.out_dir / "tools-venv", self.args.out_dir / "tools-venv-install.log"
            )
            if self.py_spy is None:
                print(f"bench: no profile: {why}", flush=True)
        return {**durability, **info}

    def snapshot(self, run: Measured, excluded_backends: list[int]) -> dict[str, float | None]:
        values: dict[str, float | None] = {
            "system": _total(cpu_seconds(pid) for pid in run.system_pids),
            "participants": cpu_seconds(self.participants.pid),
        }
        if run.separate_load:
            values["loadgen"] = cpu_seconds(run.driver.pid)
        if self.postgres_cpu is not None:
            excluded = sum(cpu_seconds(pid) or 0.0 for pid in excluded_backends)
            values["postgres"] = self.postgres_cpu.total_seconds() - excluded
        return values

    def run_one(self, slot: Slot) -> dict[str, Any]:
        system, variant = slot.system, slot.variant
        machine = machine_load()
        self.runs_started += 1
        base: dict[str, Any] = {
            "system": system,
            "workload": variant.workload,
            "concurrency": variant.concurrency,
            "repeat": slot.repeat,
            "warmup": variant.warmup,
            "machine_before": machine,
            "busy": is_busy(machine, self.runs_started == 1, self.args),
            "completion_detection": COMPLETION_DETECTION[system],
            "latency_definition": LATENCY_DEFINITION,
        }
        python = sys.executable
        if system == "dbos":
            if self.peer.python is None:
                return {**base, "status": "unavailable", "reason": self.peer.reason}
            python = self.peer.python
        database = self.admin.create_database()
        base["database"] = database
        workdir = self.workdir / f"{system}-{variant.workload}-c{variant.concurrency}"
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            launch = Launch(
                system=system,
                python=python,
                database_url=database_url(self.args.postgres_url, database),
                participants=str(self.participants.info["address"]),
                workdir=workdir,
                ceiling_pool_size=min(self.args.ceiling_pool_size, variant.concurrency),
                poll_ms=self.args.poll_ms,
                completion=self.args.completion,
                log_level=self.args.log_level,
            )
            check_durability(launch.database_url)
            launch.initialize("init-1")
            tables = disable_autovacuum(launch.database_url)
            created = self.admin.settled_commits(database)
            launch.initialize("init-2")
            restarted = self.admin.settled_commits(database)
            startup = restarted - created
            idle_rate = 0.0
            if system == "dbos":  # its background work: commits/s launched with no load
                launch.initialize("idle", idle_seconds=self.args.idle_seconds)
                idled = self.admin.settled_commits(database)
                idle_rate = max(0, idled - restarted - startup) / self.args.idle_seconds
                restarted = idled
            measured = self._measure(launch, variant)
            final = self.admin.settled_commits(database)
            measured["committed_latencies_ms"] = committed_latencies_ms(
                system, launch.database_url, measured["result"].get("saga_ids", [])
            )
            measured["autovacuum_runs"] = autovacuum_runs(launch.database_url)
            measured["tables"] = tables
            if system in REPLICAS:
                measured["store_check"] = store_check(launch.database_url)
        except Exception as error:
            return {**base, "status": "error", "reason": f"{type(error).__name__}: {error}"}
        finally:
            self.admin.drop_database(database)
        observer = int(measured["result"].get("observer_commits", 0))
        background = idle_rate * measured["lifetime_s"]
        counted = final - restarted - startup - observer - background
        sagas_counted = variant.warmup + int(measured["result"]["sagas"])
        return {
            **base,
            **summarize(variant, measured, system),
            "commits_per_saga": counted / sagas_counted,
            "commits": {
                "counted": counted,
                "lifecycle_total": final - restarted,
                "start_stop": startup,
                "observer_reads": observer,
                "idle_commits_per_s": idle_rate,
                "idle_background_subtracted": background,
                "sagas_counted": sagas_counted,
            },
        }

    def _measure(self, launch: Launch, variant: Variant) -> dict[str, Any]:
        run = launch.measured(
            variant.workload, variant.sagas, variant.concurrency, variant.warmup, variant.seconds
        )
        profile: dict[str, Any] | None = None
        profiler: Profiler | None = None
        began = time.monotonic()
        try:
            run.start()
            warm = run.driver.read_event("warm", 60.0 + variant.warmup / self.args.min_rate)
            excluded = [self.admin_pid]
            if "observer_pid" in warm:
                excluded.append(int(warm["observer_pid"]))
            if self.py_spy and launch.system in self.args.profile:
                profiler = Profiler(
                    self.py_spy,
                    run.system.pid,
                    launch.workdir / "profile.txt",
                    focus=PROFILE_FOCUS[launch.system],
                )
            before = self.snapshot(run, excluded)
            run.driver.send("go")
            limit = variant.seconds * 3 if variant.seconds else variant.sagas / self.args.min_rate
            result = run.driver.read_event("result", 30.0 + limit)
            after = self.snapshot(run, excluded)
            rss = _total(peak_rss_mib(pid) for pid in run.system_pids)
            if profiler is not None:
                profile = profiler.stop()
                profiler = None
            run.driver.send("exit")
        finally:
            if profiler is not None:
                profiler.stop()
            exit_codes = run.stop()
        lifetime = time.monotonic() - began
        return {
            "lifetime_s": lifetime,
            "profile": profile,
            "warm": warm,
            "result": result,
            "before": before,
            "after": after,
            "peak_rss_mib": rss,
            "separate_load": run.separate_load,
            "exit_codes": exit_codes,
        }


def _total(values: Iterable[float | None]) -> float | None:
    """The sum over a system's processes; None when any could not be read."""
    listed = list(values)
    return None if any(value is None for value in listed) else sum(v or 0.0 for v in listed)


def store_check(url: str) -> dict[str, Any]:
    """Our sagas and steps by status, read from the store after the run (not measured)."""
    with psycopg.connect(url, autocommit=True) as connection:
        sagas: dict[str, int] = dict(
            connection.execute("SELECT status, count(*) FROM sagas GROUP BY 1").fetchall()
        )
        steps: dict[str, int] = dict(
            connection.execute("SELECT status, count(*) FROM saga_steps GROUP BY 1").fetchall()
        )
    return {"sagas": sagas, "steps": steps}


def summarize(variant: Variant, measured: dict[str, Any], system: str) -> dict[str, Any]:
    """Throughput, latency and CPU of the measured load; the run's status and why."""
    result = measured["result"]
    elapsed = float(result["elapsed_s"])
    sagas = int(result["sagas"])
    statuses = {str(key): int(value) for key, value in result["statuses"].items()}
    wanted = expected_status(variant.workload)
    unexpected = sagas - statuses.get(wanted, 0)
    committed = measured["committed_latencies_ms"]
    if len(committed) != sagas:
        unexpected = max(unexpected, sagas - len(committed))
    before, after = measured["before"], measured["after"]
    cpu = {
        role: (after[role] - before[role])
        for role in after
        if after.get(role) is not None and before.get(role) is not None
    }
    extra = {
        key: value
        for key, value in result.items()
        if key
        not in (
            "event",
            "latencies_ms",
            "statuses",
            "sagas",
            "concurrency",
            "elapsed_s",
            "saga_ids",
        )
    }
    if "self_counted_commits" in result:
        own = result["self_counted_commits"] - measured["warm"]["self_counted_commits"]
        extra["self_counted_commits_per_saga"] = own / sagas if sagas else None
        # Over the warm-up too, as the database's count is (`commits_per_saga`): warm-up
        # sagas start together and batch differently from the measured ones.
        counted = variant.warmup + sagas
        extra["self_counted_commits_per_saga_with_warmup"] = (
            result["self_counted_commits"] / counted if counted else None
        )
    summary: dict[str, Any] = {
        "status": "ok" if unexpected == 0 and sagas > 0 else "error",
        "sagas": sagas,
        "statuses": statuses,
        "elapsed_s": elapsed,
        "throughput_per_s": sagas / elapsed if elapsed > 0 else None,
        "latency_ms": report.latency_summary(committed),
        "client_latency_ms": report.latency_summary(result["latencies_ms"]),
        "cpu_s": cpu,
        "cpu_s_per_saga": {role: seconds / sagas for role, seconds in cpu.items()} if sagas else {},
        "peak_rss_mib": measured["peak_rss_mib"],
        "separate_load": measured["separate_load"],
        "exit_codes": measured["exit_codes"],
        "driver": extra,
    }
    if measured["profile"] is not None:
        summary["profile"] = measured["profile"]
    summary["autovacuum_runs"] = measured["autovacuum_runs"]
    summary["tables_with_autovacuum_off"] = measured["tables"]
    if "store_check" in measured:
        summary["store_check"] = measured["store_check"]
    if any(code != 0 for code in measured["exit_codes"].values()):
        summary["warning"] = f"a process did not stop cleanly: exit codes {measured['exit_codes']}"
    if unexpected:
        summary["reason"] = (
            f"{unexpected} saga(s) did not end {wanted} or were not found committed: "
            f"{statuses}, {len(committed)} committed latencies"
        )
    elif not sagas:
        summary["reason"] = "no saga was measured"
    return summary


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the plan; every process started is stopped and every database dropped, always."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = args.out_dir / "runs" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    load_before = os.getloadavg()
    try:
        harness = Harness(args, workdir)
    except psycopg.OperationalError as error:
        print(f"bench: cannot connect to PostgreSQL at {args.postgres_url}: {error}", flush=True)
        return 2
    runs: list[dict[str, Any]] = []
    try:
        try:
            settings = harness.prepare()
        except DurabilityOff as error:
            print(f"bench: {error}", flush=True)
            return 2
        print(
            "bench: PostgreSQL {server_version}: fsync={fsync} synchronous_commit="
            "{synchronous_commit} wal_sync_method={wal_sync_method}".format(**settings),
            flush=True,
        )
        cpus = os.cpu_count() or 1
        print(
            f"bench: {cpus} CPUs, load average {load_before[0]:.2f} before the run"
            + (
                " (busy machine: expect noise; compare the ratios)"
                if load_before[0] > cpus / 2
                else ""
            ),
            flush=True,
        )
        if harness.postgres_cpu is None:
            print("bench: PostgreSQL is not a local process: its CPU is not reported", flush=True)
        if "dbos" in args.systems:
            peer = harness.peer
            print(
                f"bench: peer DBOS Transact {peer.version}"
                if peer.python
                else f"bench: peer DBOS Transact unavailable: {peer.reason}",
                flush=True,
            )
        for slot in schedule(plan(args), args.systems, args.repeats, args.multi_replica_from):
            started = time.monotonic()
            run = harness.run_one(slot)
            runs.append(run)
            print(_progress(run, time.monotonic() - started), flush=True)
    finally:
        harness.close()
    floor_rows = _floor(args, workdir)
    results = {
        "time": stamp,
        "source": _source_version(),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "postgres": {**settings, "postgres_cpu_measured": harness.postgres_cpu is not None},
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "peer": {
            "name": "DBOS Transact",
            "available": harness.peer.python is not None,
            "version": harness.peer.version,
            "reason": harness.peer.reason,
        },
        "methodology": __doc__,
        "latency_definition": LATENCY_DEFINITION,
        "busy_load": args.busy_load,
        "busy_cpu": args.busy_cpu,
        "runs": runs,
        "cells": report.cells(runs),
        "ratios": report.ratios(report.cells(runs)),
        "floor": floor_rows,
        "wall_seconds": time.monotonic() - began,
    }
    path = report.write(results, args.out_dir, stamp)
    print()
    print(report.render(results))
    print(f"\nbench: {len(runs)} runs in {results['wall_seconds']:.0f}s; results in {path}")
    return 0 if all(run["status"] in ("ok", "unavailable") for run in runs) else 1


def _floor(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """The floor rows (bench/floor.py) at c=1 and the highest concurrency measured."""
    if args.floor_calls <= 0:
        return []
    levels = sorted({1, max(args.concurrency, default=1)})
    started = time.monotonic()
    rows = floor.measure(args.postgres_url, args.floor_calls, levels, workdir)
    print(f"bench: floor rows at c={levels} ({time.monotonic() - started:.0f}s)", flush=True)
    return rows


def _source_version() -> dict[str, Any]:
    """The commit measured, and whether the work tree had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "", "uncommitted_changes": None}
    return {"commit": commit, "uncommitted_changes": bool(dirty)}


def _progress(run: dict[str, Any], seconds: float) -> str:
    head = (
        f"bench: {run['system']:<6} {run['workload']:<12} c={run['concurrency']:<3} "
        f"#{run['repeat'] + 1} load {run['machine_before']['load_1m']:.2f}"
        f"{' BUSY' if run['busy'] else ''}"
    )
    if run["status"] != "ok":
        return f"{head} {run['status']}: {run.get('reason', '')}"
    return (
        f"{head} {run['throughput_per_s']:8.1f} sagas/s  p50 {run['latency_ms']['p50']:7.2f} ms"
        f"  {run['commits_per_saga']:5.2f} commits/saga  ({seconds:.0f}s)"
    )


if __name__ == "__main__":
    sys.exit(main())
