"""Starting orchestrator and participant processes on this machine, and stopping them.

Used by `make demo` and by the end-to-end tests: every process binds port 0,
reports its address through a ready file, and is tracked by PID so it can be
stopped (SIGTERM, then SIGKILL) without touching anything else on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from participants.common.config import ALL_SERVICES

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class LocalProcess:
    """One child process started with a ready file; `info` is what the ready file said."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.env = dict(env or {})
        self.ready_file = workdir / f"{name}.ready.json"
        self.log_file = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> LocalProcess:
        """Start the process and wait (bounded) until its ready file appears."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        env = {**os.environ, **self.env}
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [*self.argv, "--ready-file", str(self.ready_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.ready_file.exists():
                self.info = json.loads(self.ready_file.read_text())
                return self
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before it was ready; "
                    f"log:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(
            f"{self.name} not ready after {READY_TIMEOUT_SECONDS}s:\n{self.log_tail()}"
        )

    @property
    def address(self) -> str:
        return str(self.info["address"])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code. Safe to call twice."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_SECONDS)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL now (a crash), and reap the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_SECONDS)


PARTICIPANT_SERVICES = ALL_SERVICES


def participants_process(
    workdir: Path, services: Sequence[str], extra_args: Sequence[str] = (), name: str = ""
) -> LocalProcess:
    """An unstarted participants process serving `services` with state under `workdir`."""
    label = name or "participants-" + "-".join(services)
    return LocalProcess(
        label,
        [
            sys.executable,
            "-m",
            "participants",
            "--services",
            ",".join(services),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--state-dir",
            str(workdir / "participants"),
            *extra_args,
        ],
        workdir,
    )


def orchestrator_process(
    workdir: Path,
    database_url: str,
    participants: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    name: str = "orchestrator",
) -> LocalProcess:
    """An unstarted `saga serve` process on port 0."""
    argv = [
        sys.executable,
        "-m",
        "orchestrator",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        database_url,
    ]
    for participant, address in sorted(participants.items()):
        argv += ["--participant", f"{participant}={address}"]
    return LocalProcess(name, argv, workdir, env)
