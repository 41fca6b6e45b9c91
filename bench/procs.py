"""Child processes of the harness, and what /proc says about them.

Every process is started by the harness, tracked by its Popen object and
stopped by PID (stdin closed or SIGTERM, then SIGKILL), never by name. CPU
time is read from /proc/<pid>/stat (utime + stime, all threads) and peak RSS
from VmHWM in /proc/<pid>/status, so the benchmark needs no psutil.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_TIMEOUT_SECONDS = 10.0


class ChildError(RuntimeError):
    """A child process failed, exited early or broke the protocol; the message has its log."""


class Child:
    """A child process with its output in a log file; optionally a ready file or a JSON protocol.

    With `ready_file`, `--ready-file PATH` is appended and `start` waits for the
    file. With `protocol`, stdout carries one JSON event per line (bench/load.py)
    and stdin takes the harness's commands; stderr goes to the log.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_file: bool = False,
        protocol: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.log_file = workdir / f"{name}.log"
        self.ready_file = workdir / f"{name}.ready.json" if ready_file else None
        self.protocol = protocol
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def start(self, ready_timeout: float = 60.0) -> Child:
        """Start; with a ready file, wait (bounded) until it appears."""
        argv = list(self.argv)
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
            argv += ["--ready-file", str(self.ready_file)]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if self.protocol else subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.protocol else log,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
            )
        if self.protocol:
            threading.Thread(
                target=self._read_stdout, name=f"{self.name}-stdout", daemon=True
            ).start()
        if self.ready_file is not None:
            deadline = time.monotonic() + ready_timeout
            while not self.ready_file.exists():
                if self.process.poll() is not None:
                    raise ChildError(f"{self.name} exited before it was ready:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise ChildError(f"{self.name} not ready after {ready_timeout}s")
                time.sleep(0.02)
            self.info = json.loads(self.ready_file.read_text())
        return self

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
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> int | None:
        """Close stdin (the protocol's "exit") or SIGTERM, wait, then SIGKILL. Idempotent."""
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

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a live process (all its threads), or None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class PostgresCpu:
    """CPU of a local PostgreSQL server: the postmaster and all its children.

    Children that exit are reaped by the postmaster, whose cutime/cstime then
    hold their CPU, so the sum over (postmaster self + children waited for +
    live children) only grows and a delta counts every backend that ran.
    """

    def __init__(self, postmaster_pid: int) -> None:
        self.postmaster_pid = postmaster_pid

    @classmethod
    def from_backend(cls, backend_pid: int) -> PostgresCpu | None:
        """Find the postmaster as the parent of one of its backends; None when not local."""
        postmaster = parent_pid(backend_pid)
        if postmaster is None:
            return None
        try:
            name = Path(f"/proc/{postmaster}/comm").read_text().strip()
        except OSError:
            return None
        return cls(postmaster) if name.startswith("postgres") else None

    def total_seconds(self) -> float:
        fields = _stat_fields(self.postmaster_pid)
        if fields is None:
            raise ChildError("the PostgreSQL postmaster is gone")
        total = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            child = _stat_fields(int(entry.name))
            if child is not None and int(child[1]) == self.postmaster_pid:
                total += (int(child[11]) + int(child[12])) / CLOCK_TICKS
        return total
