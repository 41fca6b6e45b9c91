"""A private PostgreSQL server for tests that stop and start the database.

The shared server named by SAGA_TEST_POSTGRES_URL serves other tests at the same
time, so an outage test must never restart it. `private_postgres()` instead runs
`initdb` into a fresh directory and `pg_ctl start` on a free port of 127.0.0.1
(unix socket inside that directory, fsync on), and always stops the server and
removes the directory afterwards. `initdb` and `postgres` refuse to run as root,
so under root they run as the `postgres` OS user in a directory it owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_USER = "postgres"
COMMAND_TIMEOUT_SECONDS = 60


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, or pg_config's."""

    def version(path: str) -> int:
        try:
            return int(Path(path).parent.parent.name)
        except ValueError:
            return -1

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(on_path)
    for initdb in candidates:
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def missing_tools() -> str:
    """What prevents running a private server here, or "" when nothing does."""
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "runuser not found (needed to run PostgreSQL as its own user under root)"
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"no {SERVER_USER!r} OS user to run PostgreSQL under root"
    return ""


def require_bindir() -> Path:
    """The PostgreSQL binaries; skips without them, or fails under CI=true."""
    missing = missing_tools()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; a private PostgreSQL is required under CI=true")
        pytest.skip(missing)
    bindir = find_bindir()
    assert bindir is not None
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivatePostgres:
    """One throwaway cluster: `url` reaches it; `stop()` and `start()` keep its port."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.port = port
        self.data = root / "data"
        self.log = root / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._as_server_user = os.geteuid() == 0

    def _run(self, program: str, *args: str) -> None:
        argv = [str(self.bindir / program), *args]
        if self._as_server_user:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        result = subprocess.run(
            argv,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n{self.log_tail()}"
            )

    def init(self) -> None:
        # --no-sync only skips initdb's own flush of a directory thrown away afterwards;
        # the server itself runs with fsync on.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        """Start on the same port and wait until it accepts connections."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=on"
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "30",
            "-o",
            options,
        )

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m mode`: fast rolls back open transactions and ends every session."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private PostgreSQL; stopped and deleted on exit, also after a failure."""
    bindir = require_bindir()
    root = Path(tempfile.mkdtemp(prefix="saga-pg-"))
    server = PrivatePostgres(bindir, root, free_port())
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
        server.init()
        server.start()
        yield server
    finally:
        try:
            if server.running():
                server.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)
