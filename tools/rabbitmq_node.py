"""A private RabbitMQ node for outage tests and benchmarks.

The broker at 127.0.0.1:5672 is shared with everything else running on the machine, so
a test that stops a broker must never stop that one. `private_rabbitmq()` runs a node
of its own instead: a unique node name, free AMQP and distribution ports on 127.0.0.1,
its database, logs, Erlang cookie and (empty) plugin list in a temporary directory, and
none of the machine's configuration files. `stop_app()`/`start_app()` take the broker
down and up again on the same port (the Erlang VM stays up, as with `rabbitmqctl
stop_app`), and the node is always halted, and its directory removed, on exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
START_TIMEOUT_SECONDS = 90
COMMAND_TIMEOUT_SECONDS = 60


def missing_tools() -> str:
    """What prevents running a private node here, or "" when nothing does."""
    for program in (SERVER, CTL):
        if not program.exists():
            return f"{program} not found (the rabbitmq-server package)"
    return ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRabbitMQ:
    """One throwaway node; `url` reaches it while its app runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = f"saga-test-{secrets.token_hex(4)}@localhost"
        self.port = _free_port()
        self.dist_port = _free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.log = root / "server.log"
        self.pid_file = root / "node.pid"
        self._process: subprocess.Popen[bytes] | None = None
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq-env.conf").write_text("")
        # guest may log in from 127.0.0.1 only, as on the shared broker.
        (root / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        self.env = {
            **os.environ,
            "HOME": str(root),  # the node's and rabbitmqctl's Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, *args: str, timeout: float = COMMAND_TIMEOUT_SECONDS) -> None:
        """`rabbitmqctl -n <node> args`, failing with its output."""
        done = subprocess.run(
            [str(CTL), "-n", self.node, *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} exited with {done.returncode}:\n"
                f"{done.stdout}{done.stderr}\n{self.log_tail()}"
            )

    def start(self) -> None:
        """Boot the node and wait until its broker accepts connections."""
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                [str(SERVER)],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self.pid_file.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.ctl("wait", str(self.pid_file), "--timeout", str(START_TIMEOUT_SECONDS))

    def stop_app(self) -> None:
        """The broker stops (every connection closed, the port closed); the VM stays."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def halt(self) -> None:
        """`rabbitmqctl stop`; if the node is still up after that, SIGKILL to its VM
        (the pid its own pid file names) and to the script that started it."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(Exception):
            self.ctl("stop", timeout=30)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        if process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(self.pid_file.read_text().strip()), signal.SIGKILL)
            process.kill()
            process.wait(30)
        self._process = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no node log)"


@contextlib.contextmanager
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A running private node; halted and deleted on exit, also after a failure."""
    missing = missing_tools()
    if missing:
        raise RuntimeError(missing)
    root = Path(tempfile.mkdtemp(prefix="saga-rabbitmq-"))
    node = PrivateRabbitMQ(root)
    try:
        node.start()
        yield node
    finally:
        try:
            node.halt()
        finally:
            shutil.rmtree(root, ignore_errors=True)
