"""How each measured system is started: its one-off init process and its measured processes.

- ours: bench.serve_orchestrator (the real engine through `serve()`) and, in a
  separate process, bench.loadgen driving it through StartSaga.
- group: bench.ceiling --writer group, the group-commit ceiling; the load runs in
  its process.
- loop: bench.ceiling --writer per-write, the per-write loop; likewise.
- dbos: bench.dbos_saga in its own virtualenv; the load runs in its process.
- ours2: two bench.serve_orchestrator replicas on the same database, the load
  generator's workers split between them (only where concurrency can use two).

The peer's virtualenv (.bench/dbos-venv) is made on first use with the
ordinary clients (python -m venv, pip); the project never depends on DBOS.
When it cannot be made or imported, the peer is reported unavailable with why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tools.processes import ChildProcess

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = ("group", "loop", "ours", "dbos", "ours2")
REPLICAS = {"ours": 1, "ours2": 2}
"""Our systems, by the orchestrator replicas each runs (sharing one database)."""
MULTI_REPLICA_MIN_CONCURRENCY = 64
"""Below this, a second replica has too few sagas in flight to show anything."""
CEILING_WRITERS = {"group": "group", "loop": "per-write"}
DBOS_VERSION = "3.4.0"
"""Pinned exactly, so runs on different days compare the same peer."""
DBOS_REQUIREMENTS = (f"dbos=={DBOS_VERSION}", "grpcio", "protobuf>=7.35.1,<8")
"""The generated stubs in saga/ need protobuf 7.35.1 or newer."""
DBOS_INSTALL_TIMEOUT_SECONDS = 900.0
_PROBE = (
    "import dbos, grpc, google.protobuf, psycopg; from importlib import metadata; "
    "print(metadata.version('dbos'))"
)


@dataclass
class Peer:
    """The DBOS virtualenv: its interpreter, or why there is none."""

    python: str | None = None
    version: str = ""
    reason: str = ""


def _probe(python: Path) -> str | None:
    """The installed dbos version when the virtualenv imports everything the driver needs."""
    if not python.exists():
        return None
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_dbos_venv(venv: Path, log: Path) -> Peer:
    """Make (once) and check the peer's virtualenv; never raises."""
    python = venv / "bin" / "python"
    version = _probe(python)
    if version == DBOS_VERSION:
        return Peer(str(python), version)
    print(f"bench: installing DBOS Transact into {venv} (first use) ...", flush=True)
    try:
        if venv.exists():
            shutil.rmtree(venv)  # ours, half made by an interrupted run or of another version
        with open(log, "w") as out:
            for argv in (
                [sys.executable, "-m", "venv", str(venv)],
                [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                [str(python), "-m", "pip", "install", "--quiet", *DBOS_REQUIREMENTS],
            ):
                subprocess.run(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=DBOS_INSTALL_TIMEOUT_SECONDS,
                )
    except (OSError, subprocess.SubprocessError) as error:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        return Peer(reason=f"cannot install dbos: {error}; " + " | ".join(tail))
    version = _probe(python)
    if version != DBOS_VERSION:
        return Peer(reason=f"dbos {DBOS_VERSION} installed into {venv} does not import (see {log})")
    return Peer(str(python), version)


@dataclass
class Launch:
    """What the harness needs to know to run one system once."""

    system: str
    python: str
    database_url: str
    participants: str
    workdir: Path
    ceiling_pool_size: int = 8
    poll_ms: float = 1.0
    completion: str = "execute"
    log_level: str = "WARNING"
    env: dict[str, str] = field(default_factory=dict)

    def _child(
        self,
        name: str,
        module: str,
        args: list[str],
        *,
        ready_file: bool = False,
        protocol: bool = False,
    ) -> ChildProcess:
        return ChildProcess(
            name,
            [self.python, "-m", module, *args],
            self.workdir,
            env={"PYTHONPATH": str(REPO), **self.env},
            cwd=REPO,
            ready_file=ready_file,
            protocol=protocol,
        )

    def _orchestrator(self, name: str) -> ChildProcess:
        return self._child(
            name,
            "bench.serve_orchestrator",
            [
                "--database",
                self.database_url,
                "--participants",
                self.participants,
                "--log-level",
                self.log_level,
            ],
            ready_file=True,
        )

    def _ceiling_args(self) -> list[str]:
        """The writer, and its connections: one for the group writer, a pool for the loop."""
        writer = CEILING_WRITERS[self.system]
        pool_size = 1 if writer == "group" else self.ceiling_pool_size
        return ["--writer", writer, "--pool-size", str(pool_size)]

    def initialize(self, name: str, timeout: float = 120.0, idle_seconds: float = 0.0) -> None:
        """Start the system once on its database and stop it: creates or migrates its schema.

        `idle_seconds` (DBOS only) keeps it launched and idle that long first.
        """
        if self.system in REPLICAS:
            orchestrator = self._orchestrator(name)
            try:
                orchestrator.start(timeout)
            finally:
                code = orchestrator.stop()
            if code != 0:
                raise RuntimeError(f"{name} exited with {code}:\n{orchestrator.log_tail()}")
            return
        args = ["--database", self.database_url, "--init-only"]
        if self.system in CEILING_WRITERS:  # the measured run's pool: each connection commits
            module, args = "bench.ceiling", [*args, *self._ceiling_args()]
        else:
            module, args = "bench.dbos_saga", [*args, "--idle-seconds", str(idle_seconds)]
        child = self._child(name, module, args)
        try:
            child.start().run_to_end(timeout + idle_seconds)
        finally:
            child.stop()

    def measured(
        self,
        workload: str,
        sagas: int,
        concurrency: int,
        warmup: int,
        seconds: float | None = None,
    ) -> Measured:
        """Unstarted processes of one measured run: `sagas`, or as many as `seconds` allow."""
        load = [
            "--variant",
            workload,
            *(["--seconds", str(seconds), "--n", "0"] if seconds else ["--n", str(sagas)]),
            "--concurrency",
            str(concurrency),
            "--warmup",
            str(warmup),
        ]
        if self.system in REPLICAS:
            loadgen = self._child(
                "loadgen",
                "bench.loadgen",
                [
                    "--database",
                    self.database_url,
                    "--completion",
                    self.completion,
                    "--poll-ms",
                    str(self.poll_ms),
                    *load,
                ],
                protocol=True,
            )
            replicas = [
                self._orchestrator(f"orchestrator-{number}")
                for number in range(1, REPLICAS[self.system] + 1)
            ]
            return Measured(driver=loadgen, system=replicas[0], replicas=replicas)
        if self.system in CEILING_WRITERS:
            module, extra = "bench.ceiling", self._ceiling_args()
        else:
            module, extra = "bench.dbos_saga", []
        driver = self._child(
            self.system,
            module,
            ["--database", self.database_url, "--participants", self.participants, *load, *extra],
            protocol=True,
        )
        return Measured(driver=driver, system=driver)


@dataclass
class Measured:
    """The processes of one measured run: the system, and the driver speaking the protocol.

    For ours they are separate processes (the orchestrator replicas, then the load
    generator, told their addresses); for the others the system drives itself.
    """

    driver: ChildProcess
    system: ChildProcess
    replicas: list[ChildProcess] = field(default_factory=list)

    @property
    def system_pids(self) -> list[int]:
        """Every process of the measured system (all replicas of ours)."""
        return [child.pid for child in self.replicas or [self.system]]

    @property
    def separate_load(self) -> bool:
        return self.driver is not self.system

    def start(self) -> None:
        if self.separate_load:
            for replica in self.replicas or [self.system]:
                replica.start()
                self.driver.argv += ["--address", str(replica.info["address"])]
        self.driver.start()

    def stop(self) -> dict[str, int | None]:
        """Stop the driver first (it ends the load), then the system; exit codes by name."""
        codes = {self.driver.name: self.driver.stop()}
        if self.separate_load:
            for replica in self.replicas or [self.system]:
                codes[replica.name] = replica.stop()
        return codes
