"""What the engine does per saga, counted: a measure that does not move with the machine's load.

The real orchestrator (`orchestrator.server.serve` with the bench definitions, as
`bench.serve_orchestrator` runs it) runs in THIS process on a throwaway PostgreSQL
database; the bench participants and the load generator (`bench.loadgen`, one
ExecuteSaga call per saga, closed loop) run in processes of their own, as in
`make bench`. So everything this process spends is the engine's. Per measured saga:

- **cpu ms**: this process's CPU (all threads: gRPC's poller too), an unprofiled pass;
  beside it, **postgres cpu ms**: the CPU of the PostgreSQL backends of the throwaway
  database over the same pass (its sessions: the engine's pool and listener);
- **tasks**, **futures** (`loop.create_future`, which asyncio, gRPC and psycopg use),
  **loop iterations** (`_run_once`: one per wake-up of the event loop), **gen-0
  collections** of the garbage collector (one per 700 net new container objects), and
  with `--callgrind` the **instructions** (valgrind's callgrind, collection switched on
  for the measured load only);
- the **PostgreSQL traffic** (psycopg's cursors and pipelines, wrapped in this process
  only): **pg statements** (an `executemany` counts one per row of parameters;
  BEGIN and COMMIT apart), **pg syncs** (a pipeline's Sync, explicit or at its end),
  **pg round trips** (syncs plus statements sent outside a pipeline), **pg
  transactions** (COMMITs, implicit transactions closed by a Sync, and autocommit
  statements outside a pipeline), and the statements by kind (`pg: ...`, their SQL's
  first words; not under `--callgrind`, whose instructions are the engine's alone);
- a cProfile pass (a second load, same size): the **Python calls**, the handles run
  (`Handle._run`), **protobuf conversions** (`json_format`, message (de)serialization),
  **record copies** (`dataclasses.replace`), **log calls** (every `Logger` method entered
  and the records actually made), **metric calls** (prometheus_client), and own time by
  package (orchestrator.engine, .core, .store, .api, .telemetry, grpc, asyncio, psycopg,
  protobuf, logging, prometheus_client, C builtins, other). cProfile sees the main
  thread only (not gRPC's poller) and slows what it sees: its shares, not its
  milliseconds, are the figure.

    python -m bench.counts [--sagas 1000] [--concurrency 64] [--variant success]
        [--callgrind] [--metrics] [--json FILE]

Quote cpu ms with `uptime`; the counts do not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import gc
import json
import logging
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg._pipeline_base import BasePipeline

from bench.pg import Admin, database_url
from bench.procs import cpu_seconds
from bench.sagas import DEFINITIONS
from bench.workload import PARTICIPANTS
from orchestrator.server import ServeConfig, serve
from tools.processes import ChildProcess

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EVENT_TIMEOUT_SECONDS = 600.0
READY_TIMEOUT_SECONDS = 300.0
CALLGRIND_LEASE_SECONDS = 3600.0

PACKAGES = (
    ("/orchestrator/engine/", "orchestrator.engine"),
    ("/orchestrator/core/", "orchestrator.core"),
    ("/orchestrator/store/", "orchestrator.store"),
    ("/orchestrator/api/", "orchestrator.api"),
    ("/orchestrator/telemetry/", "orchestrator.telemetry"),
    ("/orchestrator/", "orchestrator (other)"),
    ("/saga/", "generated stubs"),
    ("/grpc/", "grpc"),
    ("/asyncio/", "asyncio"),
    ("/psycopg_pool/", "psycopg"),
    ("/psycopg/", "psycopg"),
    ("/google/protobuf/", "protobuf"),
    ("/logging/", "logging"),
    ("/prometheus_client/", "prometheus_client"),
    ("/opentelemetry/", "opentelemetry"),
)


def package_of(filename: str) -> str:
    if filename == "~":
        return "C builtins"
    for marker, name in PACKAGES:
        if marker in filename:
            return name
    return "other"


class LoopCounters:
    """Tasks, futures and event-loop iterations of one loop, counted by wrapping its methods
    (on this loop object only; nothing in the engine changes)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.counts: Counter[str] = Counter()
        counts = self.counts
        base_loop: Any = loop
        create_future = base_loop.create_future
        run_once = base_loop._run_once
        previous_factory = loop.get_task_factory()

        def counted_future() -> asyncio.Future[Any]:
            counts["futures"] += 1
            return create_future()  # type: ignore[no-any-return]

        def counted_run_once() -> None:
            counts["loop iterations"] += 1
            run_once()

        def task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            counts["tasks"] += 1
            counts[f"tasks: {getattr(coro, '__qualname__', type(coro).__name__)}"] += 1
            if previous_factory is not None:
                return previous_factory(loop, coro, **kwargs)
            return asyncio.Task(coro, loop=loop, **kwargs)

        base_loop.create_future = counted_future
        base_loop._run_once = counted_run_once
        loop.set_task_factory(task_factory)

    def snapshot(self) -> Counter[str]:
        taken = Counter(self.counts)
        taken["gen-0 collections"] = gc.get_stats()[0]["collections"]
        return taken


def _kind(query: object) -> str:
    """A statement's label: its SQL's first words, spaces folded."""
    return "pg: " + " ".join(str(query).split())[:70]


class PostgresCounters:
    """Statements, syncs, round trips and transactions sent through psycopg's async
    cursors, counted by wrapping psycopg's classes in this process (the engine's code
    does not change). See the module for what each count means."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        counts = self.counts
        explicit: dict[int, bool] = {}
        pending: dict[int, bool] = {}
        execute = psycopg.AsyncCursor.execute
        executemany = psycopg.AsyncCursor.executemany
        enqueue_sync = BasePipeline._enqueue_sync

        def sent(cursor: Any, query: object, rows: int, own_pipeline: bool) -> None:
            connection = id(cursor.connection)
            in_pipeline = cursor.connection._pipeline is not None or own_pipeline
            text = str(query).strip().upper()
            if text in ("BEGIN", "COMMIT", "ROLLBACK"):
                explicit[connection] = text == "BEGIN"
                counts[f"pg {text}"] += 1
                if text == "COMMIT":
                    counts["pg transactions"] += 1
                if not in_pipeline:
                    counts["pg round trips"] += 1
                return
            counts["pg statements"] += rows
            counts[_kind(query)] += rows
            if not explicit.get(connection):  # in an explicit transaction, COMMIT counts
                if in_pipeline:
                    pending[connection] = True  # the transaction its next Sync commits
                else:
                    counts["pg transactions"] += 1  # autocommit
            if not in_pipeline:
                counts["pg round trips"] += 1

        async def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent(self, query, 1, False)
            return await execute(self, query, *args, **kwargs)

        async def counted_executemany(
            self: Any, query: Any, params_seq: Any, *args: Any, **kwargs: Any
        ) -> Any:
            params_seq = list(params_seq)
            sent(self, query, len(params_seq), True)  # psycopg pipelines it, at worst alone
            return await executemany(self, query, params_seq, *args, **kwargs)

        def counted_sync(self: Any) -> Any:
            connection = id(self._conn)
            counts["pg syncs"] += 1
            counts["pg round trips"] += 1
            if pending.pop(connection, False):
                counts["pg transactions"] += 1
            return enqueue_sync(self)

        psycopg.AsyncCursor.execute = counted_execute  # type: ignore[method-assign]
        psycopg.AsyncCursor.executemany = counted_executemany  # type: ignore[method-assign]
        BasePipeline._enqueue_sync = counted_sync  # type: ignore[method-assign]

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)


class BackendCpu:
    """CPU seconds of the PostgreSQL backends of one database, by pid (/proc; the server
    runs on this machine), found through the maintenance database's pg_stat_activity."""

    def __init__(self, server_url: str, database_url: str) -> None:
        self._connection = psycopg.connect(server_url, autocommit=True)
        self._database = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]

    def snapshot(self) -> dict[int, float]:
        rows = self._connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self._database,)
        ).fetchall()
        taken = {int(pid): cpu_seconds(int(pid)) for (pid,) in rows}
        return {pid: seconds for pid, seconds in taken.items() if seconds is not None}

    def close(self) -> None:
        self._connection.close()


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the backends alive at `after` spent since `before` (new ones: all)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _callgrind(command: str) -> None:
    """Switch callgrind's collection on or off in this process, when it runs under it."""
    if shutil.which("callgrind_control") is None:
        raise RuntimeError("callgrind_control not found (valgrind)")
    subprocess.run(
        ["callgrind_control", command, str(os.getpid())],
        check=True,
        capture_output=True,
        timeout=120,
    )


def profile_counts(stats: pstats.Stats, sagas: int) -> dict[str, Any]:
    """Calls per saga of the functions that tell what a saga costs, and own time by package."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total_time = sum(entry[2] for entry in raw.values()) or 1.0
    by_package: dict[str, float] = {}
    calls: Counter[str] = Counter()
    top: list[tuple[float, str, int]] = []
    for (filename, line, name), (_, ncalls, tottime, _, _) in raw.items():
        package = package_of(filename)
        by_package[package] = by_package.get(package, 0.0) + tottime
        calls["python calls" if filename != "~" else "C calls"] += ncalls
        label = f"{name} ({package})" if filename == "~" else f"{Path(filename).name}:{line} {name}"
        top.append((tottime, label, ncalls))
        if "/asyncio/events.py" in filename and name == "_run":
            calls["handles run"] += ncalls
        if "/google/protobuf/json_format.py" in filename and name in (
            "MessageToDict",
            "MessageToJson",
            "ParseDict",
            "Parse",
        ):
            calls[f"json_format.{name}"] += ncalls
        if filename == "~" and (
            "SerializeToString" in name or "FromString" in name or "ParseFromString" in name
        ):
            calls["protobuf (de)serializations"] += ncalls
        if filename.endswith("/dataclasses.py") and name == "replace":
            calls["dataclasses.replace"] += ncalls
        if filename.endswith("/logging/__init__.py"):
            if name in ("debug", "info", "warning", "error", "exception", "log"):
                calls["log calls"] += ncalls
            if name == "makeRecord":
                calls["log records made"] += ncalls
        if "/prometheus_client/metrics.py" in filename and name in (
            "inc",
            "observe",
            "set",
            "dec",
            "labels",
        ):
            calls[f"metric .{name}()"] += ncalls
    top.sort(reverse=True)
    return {
        "calls_per_saga": {key: value / sagas for key, value in sorted(calls.items())},
        "own_time_share_by_package": {
            package: round(100.0 * seconds / total_time, 1)
            for package, seconds in sorted(by_package.items(), key=lambda item: -item[1])
        },
        "top_own_time": [
            {
                "function": label,
                "percent": round(100.0 * seconds / total_time, 1),
                "calls_per_saga": n / sagas,
            }
            for seconds, label, n in top[:25]
        ],
    }


@contextlib.contextmanager
def _database(postgres_url: str) -> Iterator[str]:
    admin = Admin(postgres_url)
    try:
        name = admin.create_database()
        try:
            yield database_url(postgres_url, name)
        finally:
            admin.drop_database(name)
    finally:
        admin.close()


async def _load(
    args: argparse.Namespace,
    workdir: Path,
    address: str,
    url: str,
    label: str,
    before: Callable[[], None],
    after: Callable[[], None],
) -> dict[str, Any]:
    """One load generator run: warm-up, then `before()`, the measured sagas, `after()`."""
    loadgen = ChildProcess(
        f"loadgen-{label}",
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--address",
            address,
            "--database",
            url,
            "--variant",
            args.variant,
            "--n",
            str(args.sagas),
            "--concurrency",
            str(args.concurrency),
            "--warmup",
            str(args.warmup),
        ],
        workdir,
        env={"PYTHONPATH": str(REPO)},
        cwd=REPO,
        ready_file=False,
        protocol=True,
    )
    try:
        loadgen.start()
        await asyncio.to_thread(loadgen.read_event, "warm", EVENT_TIMEOUT_SECONDS)
        before()
        loadgen.send("go")
        result = await asyncio.to_thread(loadgen.read_event, "result", EVENT_TIMEOUT_SECONDS)
        after()
    finally:
        await asyncio.to_thread(loadgen.stop)
    statuses: dict[str, int] = result["statuses"]
    if sum(statuses.values()) != args.sagas or any(
        s.startswith(("ERROR", "EXECUTE")) for s in statuses
    ):
        raise RuntimeError(f"the load did not run cleanly: {statuses}")
    return result


async def measure(
    args: argparse.Namespace, workdir: Path, url: str, participants: str
) -> dict[str, Any]:
    ready = workdir / "orchestrator.ready.json"
    config = ServeConfig(
        database_url=url,
        listen="127.0.0.1:0",
        participants=dict.fromkeys(PARTICIPANTS, participants),
        ready_file=str(ready),
        # Served, but never scraped during the load: what recording them costs per saga.
        metrics_listen="127.0.0.1:0" if args.metrics else None,
    )
    if args.callgrind:
        # Under callgrind the engine runs some fifty times slower: a default lease would
        # lapse mid-run and the resumes it causes would be counted as the sagas' work.
        config = dataclasses.replace(config, lease_seconds=CALLGRIND_LEASE_SECONDS)
    serving = asyncio.create_task(serve(config, DEFINITIONS))
    for _ in range(int(READY_TIMEOUT_SECONDS / 0.05)):  # long: under valgrind it is slow
        if ready.exists() or serving.done():
            break
        await asyncio.sleep(0.05)
    if serving.done():
        serving.result()
    address = json.loads(ready.read_text())["address"]
    counters = LoopCounters(asyncio.get_running_loop())
    # Not under callgrind: its instructions are the engine's alone, without these wrappers.
    postgres = None if args.callgrind else PostgresCounters()
    backends = BackendCpu(args.postgres_url, url)
    report: dict[str, Any] = {}
    try:
        marks: dict[str, Any] = {}

        def begin() -> None:
            marks["backends"] = backends.snapshot()
            marks["counts"], marks["cpu"] = counters.snapshot(), time.process_time()
            marks["postgres"] = Counter() if postgres is None else postgres.snapshot()
            if args.callgrind:
                _callgrind("--instr=on")

        def end() -> None:
            if args.callgrind:
                _callgrind("--instr=off")
                _callgrind("--dump")
            marks["cpu"] = time.process_time() - marks["cpu"]
            marks["backends"] = spent(marks["backends"], backends.snapshot())
            marks["counts"] = counters.snapshot() - marks["counts"]
            marks["postgres"] = (
                Counter() if postgres is None else postgres.snapshot() - marks["postgres"]
            )

        await _load(args, workdir, address, url, "plain", begin, end)
        report["cpu_ms_per_saga"] = marks["cpu"] * 1000.0 / args.sagas
        report["postgres_cpu_ms_per_saga"] = marks["backends"] * 1000.0 / args.sagas
        report["counts_per_saga"] = {
            key: value / args.sagas for key, value in sorted(marks["counts"].items())
        }
        report["postgres_per_saga"] = {
            key: value / args.sagas for key, value in sorted(marks["postgres"].items())
        }
        if not args.no_profile:
            profiler = cProfile.Profile()
            await _load(args, workdir, address, url, "profiled", profiler.enable, profiler.disable)
            report["profile"] = profile_counts(pstats.Stats(profiler), args.sagas)
            if args.pstats is not None:
                profiler.dump_stats(str(args.pstats))
    finally:
        backends.close()
        os.kill(os.getpid(), signal.SIGTERM)  # serve() stops on it, as under a supervisor
        await serving
    return report


def _instructions(outfile: Path) -> int | None:
    """The largest `summary:`/`totals:` figure among callgrind's dumps (the measured part)."""
    best = None
    for path in outfile.parent.glob(outfile.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                value = int(line.split()[1])
                best = value if best is None else max(best, value)
    return best


def _without(argv: list[str], *options: str) -> list[str]:
    """`argv` less the given options and their values."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in options)):
            kept.append(arg)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.counts", description=__doc__)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--sagas", type=int, default=1000, help="measured sagas per pass")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--variant", choices=("success", "compensation"), default="success")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile pass")
    parser.add_argument(
        "--metrics", action="store_true", help="serve Prometheus metrics, as production does"
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="rerun this under valgrind's callgrind and count instructions per saga (slow)",
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument(
        "--keep-callgrind",
        type=Path,
        help="with --callgrind: keep its output files as PATH* (for callgrind_annotate)",
    )
    parser.add_argument("--pstats", type=Path, help="write the cProfile pass's raw stats here")
    parser.add_argument("--under-callgrind", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.callgrind and args.under_callgrind is None:
        with tempfile.TemporaryDirectory(prefix="bench-counts-cg-") as scratch:
            out = Path(scratch) / "callgrind.out"
            report_file = Path(scratch) / "report.json"
            argv = _without(sys.argv[1:], "--json", "--keep-callgrind")
            log_path = Path(scratch) / "valgrind.log"
            with open(log_path, "w") as log:
                done = subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        "--collect-atstart=yes",
                        "--instr-atstart=no",
                        f"--callgrind-out-file={out}",
                        sys.executable,
                        "-m",
                        "bench.counts",
                        *argv,
                        "--no-profile",
                        "--under-callgrind",
                        str(report_file),
                    ],
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            if done.returncode != 0:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                raise SystemExit(f"the run under callgrind failed ({done.returncode}):\n{tail}")
            report = json.loads(report_file.read_text())
            instructions = _instructions(out)
            report["instructions_per_saga"] = (
                None if instructions is None else instructions / args.sagas
            )
            if args.keep_callgrind is not None:
                for path in out.parent.glob(out.name + "*"):
                    shutil.copy(
                        path,
                        args.keep_callgrind.parent
                        / (args.keep_callgrind.name + path.name[len(out.name) :]),
                    )
    else:
        args.callgrind = args.under_callgrind is not None
        with tempfile.TemporaryDirectory(prefix="bench-counts-") as scratch:
            workdir = Path(scratch)
            participants = ChildProcess(
                "participants",
                [sys.executable, "-m", "bench.participant"],
                workdir,
                env={"PYTHONPATH": str(REPO)},
                cwd=REPO,
            )
            try:
                participants.start(READY_TIMEOUT_SECONDS)
                with _database(args.postgres_url) as url:
                    report = asyncio.run(measure(args, workdir, url, participants.address))
            finally:
                participants.stop()
        if args.under_callgrind is not None:
            args.under_callgrind.write_text(json.dumps(report))
            return
    report = {
        "sagas": args.sagas,
        "concurrency": args.concurrency,
        "variant": args.variant,
        "metrics": args.metrics,
        "load_average": os.getloadavg(),
        **report,
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
