"""Starting orchestrator, participant and benchmark processes on this machine, and
stopping them.

Used by `make demo`, the chaos run, the tests and the benchmark: every process binds
port 0 and reports its address through a ready file (or, with `protocol`, speaks one
JSON event a line on stdout and takes commands on stdin), and is tracked by its Popen
object so it is stopped by PID (stdin closed or SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from participants.common.config import ALL_SERVICES

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
PARTICIPANT_SERVICES = ALL_SERVICES


class ChildError(RuntimeError):
    """A child process failed, exited early or broke the protocol; the message has its log."""


class ChildProcess:
    """A child process with its output in `<workdir>/<name>.log`.

    With `ready_file` (the default), `--ready-file PATH` is appended and `start` waits
    for the file; `info` is what it said. With `protocol`, stdout carries one JSON event
    per line and stdin takes commands. `stdout` sends stdout to a file of its own. `env`
    is added to this process's environment, or with `inherit_env=False` is the whole of it.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        cwd: Path | None = None,
        ready_file: bool = True,
        protocol: bool = False,
        stdout: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.cwd = cwd
        self.log_file = workdir / f"{name}.log"
        self.ready_file = workdir / f"{name}.ready.json" if ready_file else None
        self.protocol = protocol
        self.stdout_file = stdout
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def address(self) -> str:
        return str(self.info["address"])

    def start(self, ready_timeout: float = READY_TIMEOUT_SECONDS) -> ChildProcess:
        """Start; with a ready file, wait (bounded) until it appears."""
        # Logs and state may quote payloads: private to this user.
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = list(self.argv)
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
            argv += ["--ready-file", str(self.ready_file)]
        with contextlib.ExitStack() as files:
            log = files.enter_context(_private_append(self.log_file))
            if self.protocol:
                stdout: Any = subprocess.PIPE
            elif self.stdout_file is not None:
                stdout = files.enter_context(_private_append(self.stdout_file))
            else:
                stdout = log
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if self.protocol else subprocess.DEVNULL,
                stdout=stdout,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
            )
        if self.protocol:
            threading.Thread(
                target=self._read_stdout, name=f"{self.name}-stdout", daemon=True
            ).start()
        if self.ready_file is not None:
            self._wait_ready(self.ready_file, ready_timeout)
        return self

    def _wait_ready(self, ready_file: Path, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not ready_file.exists():
            if self.process.poll() is not None:
                raise ChildError(
                    f"{self.name} exited with {self.process.returncode} before it was ready; "
                    f"log:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ChildError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)
        self.info = json.loads(ready_file.read_text())

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode(errors="replace"))
        self._lines.put(None)

    def read_event(self, expected: str, timeout: float) -> dict[str, Any]:
        """The next protocol event, which must be `expected`; bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildError(f"{self.name}: no {expected!r} event after {timeout:.0f}s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.wait(5.0)
                raise ChildError(
                    f"{self.name} exited ({self.returncode}) before {expected!r}:\n"
                    + self.log_tail()
                )
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a stray print from a library; the protocol lines are JSON
            if event.get("event") != expected:
                raise ChildError(f"{self.name}: expected {expected!r}, got {event.get('event')!r}")
            return dict(event)

    def send(self, command: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())
        self.process.stdin.flush()

    def run_to_end(self, timeout: float) -> None:
        """Wait for a short-lived child to exit 0; raise with its log otherwise."""
        if self.wait(timeout) is None:
            self.stop()
            raise ChildError(f"{self.name} still running after {timeout:.0f}s")
        if self.returncode != 0:
            raise ChildError(f"{self.name} exited with {self.returncode}:\n{self.log_tail()}")

    def wait(self, timeout: float) -> int | None:
        """The exit code once it exits within `timeout`, else None."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> int | None:
        """Close stdin (the protocol's "exit") or SIGTERM, wait, then SIGKILL; returns the
        exit code. Safe to call twice, and before `start`."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            if self.protocol and process.stdin is not None and not process.stdin.closed:
                with contextlib.suppress(OSError):
                    process.stdin.close()
                if self.wait(STOP_TIMEOUT_SECONDS) is not None:
                    return process.returncode
            process.send_signal(signal.SIGTERM)
            if self.wait(STOP_TIMEOUT_SECONDS) is None:
                process.kill()
                process.wait(STOP_TIMEOUT_SECONDS)
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(OSError):
                process.stdin.close()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL now (a crash), and reap the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_SECONDS)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def participants_process(
    workdir: Path, services: Sequence[str], extra_args: Sequence[str] = (), name: str = ""
) -> ChildProcess:
    """An unstarted participants process serving `services` with state under `workdir`."""
    label = name or "participants-" + "-".join(services)
    return ChildProcess(
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
    extra_args: Sequence[str] = (),
) -> ChildProcess:
    """An unstarted `saga serve` process on port 0; `extra_args` go after the others."""
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
    return ChildProcess(name, [*argv, *extra_args], workdir, env=env)


def _private_append(path: Path) -> Any:
    """`path` opened to append bytes, created 0600 if missing."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
