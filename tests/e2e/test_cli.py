"""The `saga` command as an operator and a script use it: `python -m orchestrator ...` as a
real process against a real orchestrator and participants.

Every run is checked for a traceback on stderr; a person's mistake or a missing
server must read as one `error: ...` line with a useful exit code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import FAIL_CAR_CLASS, wait_terminal
from tests.support.payloads import travel
from tests.support.starting import start_saga
from tools.processes import (
    PARTICIPANT_SERVICES,
    ChildProcess,
    orchestrator_process,
    participants_process,
)

pytestmark = pytest.mark.e2e

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
CLIENT_VARIABLES = ("SAGA_ADDRESS", "SAGA_OPERATOR", "SAGA_TIMEOUT", "COLUMNS", "NO_COLOR")
LINE = re.compile(r"^#(\d+) \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z_]+ ")


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without the client settings a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES}
    return {**env, **(extra or {})}


def saga_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=client_env(env),
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


async def start(stub, correlation_id: str, **payload) -> str:
    return await start_saga(stub, travel(**payload), correlation_id, timeout=5)


@pytest.fixture
async def finished(stub) -> tuple[pb.Saga, pb.Saga]:
    """One saga that completed and, started after it, one that failed at rent_car."""
    ok = await start(stub, "cli-ok")
    ok_saga = await wait_terminal(stub, ok)
    bad = await start(stub, "cli-bad", car_class=FAIL_CAR_CLASS)
    return ok_saga, await wait_terminal(stub, bad)


# --- list ---------------------------------------------------------------------------------------


async def test_list_filters_select_the_same_sagas_as_the_api(orchestrator, finished):
    ok, bad = (saga.saga_id for saga in finished)
    created = finished[1].create_time.ToDatetime().isoformat() + "Z"

    def listed(*flags: str) -> list[str]:
        result = saga_cli("list", "--address", orchestrator.address, "--json", *flags)
        assert result.returncode == 0, result.stderr
        return [saga["saga_id"] for saga in json.loads(result.stdout).get("sagas", [])]

    assert listed() == [bad, ok]
    assert listed("--status", "failed") == [bad]
    assert listed("--status", "COMPLETED") == [ok]
    assert listed("--type", "travel_booking") == [bad, ok]
    assert listed("--type", "order_fulfillment") == []
    assert listed("--correlation-id", "cli-ok") == [ok]
    assert listed("--needs-intervention") == []
    assert listed("--no-needs-intervention") == [bad, ok]
    assert listed("--since", "1h") == [bad, ok]
    assert listed("--until", "1h") == []
    assert listed("--since", created) == [bad]
    assert listed("--until", created) == [ok]


async def test_list_prints_an_aligned_table_and_pages_on_request(orchestrator, finished):
    ok, bad = (saga.saga_id for saga in finished)
    address = ["--address", orchestrator.address]

    table = saga_cli("list", *address)

    assert table.returncode == 0 and table.stderr == ""
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "SAGA", "ID", "TYPE", "CORRELATION", "STATUS", "FAILED", "STEP", "CREATED", "UPDATED",
    ]  # fmt: skip
    cells = [row.split() for row in rows]
    assert [row[:5] for row in cells] == [
        [bad, "travel_booking", "cli-bad", "FAILED", "rent_car"],
        [ok, "travel_booking", "cli-ok", "COMPLETED", "-"],
    ]  # a pipe gets whole ids, one line per saga
    assert len({row.index(row.split()[3]) for row in rows}) == 1  # aligned status column

    first = saga_cli("list", *address, "--limit", "1")
    assert [row.split()[0] for row in first.stdout.splitlines()[1:]] == [bad]
    token = re.search(r"--page-token (\S+)", first.stderr)
    assert token, first.stderr
    rest = json.loads(saga_cli("list", *address, "--page-token", token[1], "--json").stdout)
    assert [saga["saga_id"] for saga in rest["sagas"]] == [ok]
    assert "next_page_token" not in rest
    everything = json.loads(saga_cli("list", *address, "--limit", "1", "--all", "--json").stdout)
    assert [saga["saga_id"] for saga in everything["sagas"]] == [bad, ok]

    none = saga_cli("list", *address, "--type", "order_fulfillment")
    assert (none.returncode, none.stdout, none.stderr) == (0, "", "no sagas found\n")


# --- get and history ----------------------------------------------------------------------------


async def test_get_shows_the_saga_and_its_steps_and_json_is_the_api_message(
    orchestrator, stub, finished
):
    bad = finished[1]
    address = ["--address", orchestrator.address]

    shown = saga_cli("get", bad.saga_id, *address)

    assert shown.returncode == 0, shown.stderr
    lines = [line.split() for line in shown.stdout.splitlines()]
    assert ["Status:", "FAILED"] in lines
    assert ["Failed", "step:", "rent_car"] in lines
    steps = {line[0]: line for line in lines if line and line[0] in {s.name for s in bad.steps}}
    assert steps["book_flight"][:3] == ["book_flight", "book_travel", "COMPENSATED"]
    assert steps["rent_car"][2] == "FAILED" and "fail-this-car" in " ".join(steps["rent_car"])
    assert steps["charge_payment"][:3] == ["charge_payment", "-", "PENDING"]

    as_json = saga_cli("get", bad.saga_id, *address, "--json")
    current = await stub.GetSaga(pb.GetSagaRequest(saga_id=bad.saga_id), timeout=5)
    assert json.loads(as_json.stdout) == as_dict(current)


async def test_history_is_the_whole_log_in_order(orchestrator, stub, finished):
    bad = finished[1]
    address = ["--address", orchestrator.address]
    log = await stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=bad.saga_id), timeout=5)

    as_json = json.loads(saga_cli("history", bad.saga_id, *address, "--json").stdout)
    table = saga_cli("history", bad.saga_id, *address)

    assert as_json == as_dict(log)
    assert [t["seq"] for t in as_json["transitions"]] == list(range(1, len(log.transitions) + 1))
    rows = [row.split() for row in table.stdout.splitlines()[1:]]
    assert [int(row[0]) for row in rows] == [t.seq for t in log.transitions]
    assert rows[0][3] == "SAGA_STARTED" and rows[-1][3] == "SAGA_FAILED"
    failed = next(row for row in rows if row[3] == "STEP_FAILED")
    assert failed[4:7] == ["rent_car", "RUNNING", "FAILED"]


# --- watch --------------------------------------------------------------------------------------


async def test_watch_prints_a_line_per_transition_and_exits_by_outcome(orchestrator, finished):
    ok, bad = (saga.saga_id for saga in finished)
    address = ["--address", orchestrator.address]

    failed = saga_cli("watch", bad, *address)
    completed = saga_cli("watch", ok, *address, "--json")
    middle = saga_cli("watch", ok, *address, "--json", "--from-seq", "3")
    past_the_end = saga_cli("watch", ok, *address, "--from-seq", "999")

    assert failed.returncode == 3, failed.stderr
    lines = failed.stdout.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert [int(LINE.match(line)[1]) for line in lines] == list(range(1, len(lines) + 1))
    assert " SAGA_FAILED " in lines[-1] and 'error="step rent_car failed' in lines[-1]
    assert completed.returncode == 0, completed.stderr
    transitions = json_lines(completed.stdout)
    assert [t["seq"] for t in transitions] == list(range(1, len(transitions) + 1))
    assert transitions[-1]["event"] == "TRANSITION_EVENT_SAGA_COMPLETED"
    assert middle.returncode == 0
    assert json_lines(middle.stdout) == transitions[3:]
    assert (past_the_end.returncode, past_the_end.stdout) == (0, "")


def run_on_terminal(argv: list[str], columns: int = 110, timeout: float = 60) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal of `columns`, as a person at a shell would."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        argv, stdin=follower, stdout=follower, stderr=follower, env=client_env()
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the process closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        return process.wait(timeout=10), output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


async def test_watch_on_a_terminal_draws_the_steps_table_in_place(orchestrator, finished):
    ok = finished[0]

    code, screen = run_on_terminal(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "watch",
            ok.saga_id,
            "--address",
            orchestrator.address,
        ]
    )

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert code == 0, plain
    assert "Traceback" not in plain
    assert f"saga {ok.saga_id}" in plain and "COMPLETED  elapsed" in plain
    for step in ok.steps:
        assert re.search(rf"{step.name}\s+\S+\s+COMPLETED", plain), plain
    assert "\x1b[32mCOMPLETED" in screen  # green on a terminal
    assert "SAGA_COMPLETED" in plain


# --- start ----------------------------------------------------------------------------------------


def test_start_says_what_it_did_and_can_watch_to_the_end(orchestrator):
    address = ["--address", orchestrator.address]
    flags = ["--correlation-id", "cli-start", "--payload", json.dumps(travel())]

    first = saga_cli("start", "travel_booking", *address, *flags, "--idempotency-key", "k1")
    again = saga_cli("start", "travel_booking", *address, *flags, "--idempotency-key", "k1")
    watched = saga_cli("start", "travel_booking", *address, *flags, "--watch", "--json")

    assert first.returncode == 0, first.stderr
    match = re.fullmatch(r"started saga (\S+) \(travel_booking\): RUNNING\n", first.stdout)
    assert match, first.stdout
    assert again.stdout == (
        f"saga {match[1]} was already started with this idempotency key: "
        f"{again.stdout.rsplit(': ', 1)[1]}"
    )
    assert watched.returncode == 0, watched.stderr
    reply, *transitions = json_lines(watched.stdout)
    assert reply["created"] is True and reply["status"] == "SAGA_STATUS_RUNNING"
    assert transitions[0]["event"] == "TRANSITION_EVENT_SAGA_STARTED"
    assert transitions[-1]["event"] == "TRANSITION_EVENT_SAGA_COMPLETED"


# --- operator calls -----------------------------------------------------------------------------


@dataclass
class Rig:
    """Participants and an orchestrator of the test's own, for sagas that take a while."""

    workdir: Path
    database_url: str
    participants: dict[str, ChildProcess]
    orchestrator: ChildProcess

    @property
    def address(self) -> list[str]:
        return ["--address", self.orchestrator.address]

    def stub_call(self, method: str, request):
        with grpc.insecure_channel(self.orchestrator.address) as channel:
            return getattr(pb_grpc.SagaOrchestratorStub(channel), method)(request, timeout=5)

    def wait_until(self, saga_id: str, condition, what: str, timeout: float = 20) -> pb.Saga:
        deadline = time.monotonic() + timeout
        while True:
            saga = self.stub_call("GetSaga", pb.GetSagaRequest(saga_id=saga_id))
            if condition(saga):
                return saga
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(0.05)

    def start(self, saga_type: str, correlation_id: str, **payload) -> str:
        result = saga_cli(
            "start",
            saga_type,
            *self.address,
            "--correlation-id",
            correlation_id,
            "--payload",
            json.dumps(travel(**payload)),
            "--json",
        )
        assert result.returncode == 0, result.stderr
        return str(json.loads(result.stdout)["saga_id"])

    def restart_orchestrator(self) -> None:
        """A new orchestrator on the same port and database (after the old one died)."""
        process = orchestrator_process(
            self.workdir,
            self.database_url,
            {
                service: address
                for process in self.participants.values()
                for service, address in process.info["services"].items()
            },
            env=self.orchestrator.env,
            name="orchestrator-again",
        )
        process.argv[process.argv.index("127.0.0.1:0")] = self.orchestrator.address
        self.orchestrator = process.start()


@contextlib.contextmanager
def rig(
    workdir: Path,
    database_url: str,
    flags: dict[tuple[str, ...], list[str]],
    env: dict[str, str] | None = None,
) -> Iterator[Rig]:
    """One participants process per group of services, with its flags, then an orchestrator."""
    processes: dict[str, ChildProcess] = {}
    built: Rig | None = None
    try:
        for services, extra in flags.items():
            name = "-".join(services)
            processes[name] = participants_process(workdir, services, extra, name=name).start()
        addresses = {
            service: address
            for process in processes.values()
            for service, address in process.info["services"].items()
        }
        orchestrator = orchestrator_process(
            workdir, database_url, addresses, env={"SAGA_LEASE_SECONDS": "1", **(env or {})}
        )
        built = Rig(workdir, database_url, processes, orchestrator)
        orchestrator.start()
        yield built
    finally:
        if built is not None:
            built.orchestrator.stop()
        for process in processes.values():
            process.stop()


SLOW = {PARTICIPANT_SERVICES: ["--latency-ms", "1500"]}
"""Every step takes 1.5 s: time to start a `saga` process that acts while the saga runs."""


def a_step_started(saga: pb.Saga) -> bool:
    return any(step.status == pb.STEP_STATUS_STARTED for step in saga.steps)


class Watcher:
    """`saga watch` running in the background; its lines are collected as they come."""

    def __init__(self, saga_id: str, address: list[str], *flags: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "watch", saga_id, *address, *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=client_env(),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_lines(self, count: int, timeout: float = 20) -> None:
        """Until the watcher has printed `count` lines: it is connected and streaming."""
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"watcher printed {self.lines}, exit {self.process.poll()}")
            time.sleep(0.02)

    def finish(self, timeout: float = 60) -> tuple[int, list[str], str]:
        """Wait for the watcher to end (killed if it does not); its code, lines and stderr."""
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        assert self.process.stderr is not None
        err = self.process.stderr.read()
        self.process.stderr.close()
        self.process.stdout.close()
        assert "Traceback" not in err, err
        return self.process.returncode, self.lines, err


SLOWER = {PARTICIPANT_SERVICES: ["--latency-ms", "4000"]}
"""Every step takes 4 s: the abort must reach a saga still running on a loaded machine."""


@pytest.mark.slow
def test_abort_a_running_saga_while_watching_it(tmp_path, database_url):
    with rig(tmp_path, database_url, SLOWER) as r:
        saga_id = r.start("travel_booking", "cli-abort")
        watcher = Watcher(saga_id, r.address)
        try:
            r.wait_until(saga_id, a_step_started, "a step to start")
            watcher.wait_for_lines(2)
            aborted = saga_cli(
                "abort", saga_id, *r.address, "--reason", "customer called",
                env={"SAGA_OPERATOR": "carol"},
            )  # fmt: skip
        finally:
            code, lines, err = watcher.finish()
        again = saga_cli("abort", saga_id, *r.address, "--reason", "twice", "--json")

    assert aborted.returncode == 0, aborted.stderr
    assert aborted.stdout.startswith(f"aborted by carol: saga {saga_id} is now COMPENSATING\n")
    assert "Status:" in aborted.stdout and "book_flight" in aborted.stdout
    assert code == 3, err
    assert [int(LINE.match(line)[1]) for line in lines] == list(range(1, len(lines) + 1))
    abort = next(line for line in lines if " SAGA_ABORTED " in line)
    assert 'actor=operator:carol reason="customer called"' in abort
    assert " SAGA_FAILED " in lines[-1]
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("error: FAILED_PRECONDITION: ")
    assert again.stderr.count("\n") == 1


@pytest.mark.slow
def test_watch_resumes_after_the_orchestrator_is_killed_and_restarted(tmp_path, database_url):
    with rig(tmp_path, database_url, SLOW) as r:
        saga_id = r.start("travel_booking", "cli-restart")
        watcher = Watcher(saga_id, r.address, "--json")
        try:
            watcher.wait_for_lines(2)
            r.orchestrator.kill()
            time.sleep(0.5)  # the watcher notices and starts reconnecting
            r.restart_orchestrator()
        finally:
            code, lines, err = watcher.finish()

    assert code == 0, err
    transitions = [json.loads(line) for line in lines]
    assert [t["seq"] for t in transitions] == list(range(1, len(transitions) + 1))
    assert transitions[-1]["event"] == "TRANSITION_EVENT_SAGA_COMPLETED"
    assert "saga watch: connection lost" in err and "reconnecting after seq" in err


@pytest.mark.slow
def test_watch_gives_up_with_a_clear_message_when_the_orchestrator_stays_away(
    tmp_path, database_url
):
    with rig(tmp_path, database_url, SLOW) as r:
        saga_id = r.start("travel_booking", "cli-gone")
        watcher = Watcher(saga_id, r.address, "--reconnect-timeout", "1.5")
        try:
            watcher.wait_for_lines(2)
            r.orchestrator.kill()
        finally:
            code, lines, err = watcher.finish()

    assert code == 1
    last_seq = int(LINE.match(lines[-1])[1])
    assert err.splitlines()[-1].startswith(
        f"error: lost the orchestrator at {r.orchestrator.address} and could not get the stream "
        "back within 1.5s"
    )
    assert f"saga watch {saga_id} --from-seq {last_seq}" in err and "SAGA_ADDRESS" in err


STUCK = {
    ("hotel",): ["--compensation-failures", "-1"],
    ("flight",): ["--fail-ids", "NO-FLY"],
    ("payment",): [],
}
"""The flight is refused and the hotel's cancellation always fails: an operator must act."""


@pytest.mark.slow
def test_an_operator_finds_a_stuck_saga_and_resolves_it(tmp_path, database_url):
    with rig(
        tmp_path, database_url, STUCK, env={"SAGA_DEFINITIONS": "tests.support.policy_sagas"}
    ) as r:
        saga_id = r.start("retry_probe", "cli-stuck", flight="NO-FLY")
        stuck = saga_cli("watch", saga_id, *r.address)
        listed = saga_cli("list", *r.address, "--needs-intervention", "--json")
        table = saga_cli("list", *r.address, "--needs-intervention")
        shown = saga_cli("get", saga_id, *r.address)
        retried_too_early = saga_cli(
            "resolve", saga_id, *r.address, "--step", "book_flight", "--reason", "x", "--by", "al"
        )
        resolved = saga_cli(
            "resolve", saga_id, *r.address, "--step", "book_hotel",
            "--reason", "refunded by phone, ticket 123", "--by", "alice", "--json",
        )  # fmt: skip
        done = saga_cli("watch", saga_id, *r.address, "--json", "--from-seq", "1")
        final = json.loads(saga_cli("get", saga_id, *r.address, "--json").stdout)
        history = json.loads(saga_cli("history", saga_id, *r.address, "--json").stdout)

    assert stuck.returncode == 3
    assert [saga["saga_id"] for saga in json.loads(listed.stdout)["sagas"]] == [saga_id]
    assert "FAILED (needs intervention)" in table.stdout.splitlines()[1]
    hotel = next(
        line.split() for line in shown.stdout.splitlines() if line.startswith("book_hotel")
    )
    assert hotel[2] == "COMPENSATION_FAILED" and "UNAVAILABLE" in " ".join(hotel)
    assert retried_too_early.returncode == 1
    assert retried_too_early.stderr.startswith("error: FAILED_PRECONDITION: ")
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["status"] == "SAGA_STATUS_COMPENSATING"
    assert done.returncode == 3
    assert json_lines(done.stdout)[-1]["event"] == "TRANSITION_EVENT_SAGA_FAILED"
    assert final["status"] == "SAGA_STATUS_FAILED" and "needs_intervention" not in final
    resolution = next(
        t for t in history["transitions"] if t["event"] == "TRANSITION_EVENT_STEP_RESOLVED"
    )
    assert resolution["actor"] == "operator:alice"
    assert resolution["reason"] == "refunded by phone, ticket 123"


async def test_retry_and_resolve_refuse_a_saga_that_needs_no_operator(orchestrator, finished):
    ok, bad = (saga.saga_id for saga in finished)
    address = ["--address", orchestrator.address]

    retry = saga_cli("retry", ok, *address, "--reason", "why not", "--by", "dan")
    resolve = saga_cli("resolve", bad, *address, "--step", "rent_car", "--reason", "x", "--json")
    abort = saga_cli("abort", ok, *address, "--reason", "too late", "--by", "dan")
    unknown = saga_cli("abort", UNKNOWN_ID, *address, "--reason", "r", "--by", "dan")

    for result, saga_id in ((retry, ok), (resolve, bad), (abort, ok)):
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr.startswith("error: FAILED_PRECONDITION: ")
        assert saga_id in result.stderr and result.stderr.count("\n") == 1
    assert "does not need intervention" in retry.stderr
    assert unknown.returncode == 1
    assert unknown.stderr == f"error: NOT_FOUND: no saga with id {UNKNOWN_ID}\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["retry", UNKNOWN_ID, "--by", "dan"], "--reason"),
        (["resolve", UNKNOWN_ID, "--reason", "r"], "--step"),
        (["abort", "order-42", "--reason", "r"], "`saga list --wide` shows whole ids"),
        (["list", "--status", "stuck"], "invalid choice"),
        (["list", "--limit", "0"], "between 1 and 1000"),
        (["list", "--since", "last tuesday"], "ISO 8601"),
        (["watch", UNKNOWN_ID, "--from-seq", "-1"], "must not be negative"),
        (["get", UNKNOWN_ID, "--timeout", "0"], "must be positive"),
        (["describe", "travel_booking", "--json", "--format", "dot"], "not allowed with"),
        (
            ["start", "travel_booking", "--correlation-id", "c", "--payload", '{"x": "\\ud800"}'],
            "lone surrogate",
        ),
    ],
)
def test_usage_mistakes_exit_2_before_calling_anyone(args, words):
    nowhere = [] if args[0] == "describe" else ["--address", "127.0.0.1:9"]
    result = saga_cli(*args, *nowhere)
    assert result.returncode == 2
    assert words in result.stderr
    assert result.stdout == ""


# --- no server, a silent server ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--json"],
        ["get", UNKNOWN_ID],
        ["history", UNKNOWN_ID],
        ["watch", UNKNOWN_ID],
        ["abort", UNKNOWN_ID, "--reason", "r", "--by", "dan"],
        ["start", "travel_booking", "--correlation-id", "c", "--payload", "{}"],
    ],
)
def test_an_unreachable_orchestrator_is_named_with_the_setting_that_points_at_it(args):
    # Bound and never listening: connections are refused, and no other process can take
    # the port meanwhile.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{held.getsockname()[1]}"
        result = saga_cli(*args, env={"SAGA_ADDRESS": address})

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: UNAVAILABLE: cannot reach the orchestrator at {address} (connection refused); "
        "is `saga serve` running there? Point --address (env SAGA_ADDRESS) at it\n"
    )


def test_a_silent_orchestrator_runs_into_the_deadline():
    with socket.socket() as silent:  # accepts connections (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = saga_cli("get", UNKNOWN_ID, "--address", address, env={"SAGA_TIMEOUT": "0.5"})
        took = time.monotonic() - started

    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: DEADLINE_EXCEEDED: the orchestrator at {address} did not answer within 0.5s"
    )
    assert "SAGA_ADDRESS" in result.stderr
    assert took < 10


def test_describe_json_is_the_definition_as_data():
    result = saga_cli("describe", "travel_booking", "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["saga_type"] == "travel_booking"
    assert [step["name"] for step in document["steps"]] == [
        "book_flight",
        "book_hotel",
        "rent_car",
        "charge_payment",
    ]


async def test_get_json_shows_the_output_and_step_replies_read_through_reflection(
    orchestrator, finished
):
    ok = finished[0]
    shown = json.loads(
        saga_cli("get", ok.saga_id, "--address", orchestrator.address, "--json").stdout
    )
    assert shown["output"]["@type"] == "type.googleapis.com/saga.examples.v1.TravelBookingOutput"
    assert shown["output"]["booking_id"]
    flight = next(step for step in shown["steps"] if step["name"] == "book_flight")
    assert flight["reply"]["booking_id"] == shown["output"]["booking_id"]
    table = saga_cli("get", ok.saga_id, "--address", orchestrator.address).stdout
    row = next(line for line in table.splitlines() if line.startswith("book_flight"))
    assert f'booking_id="{flight["reply"]["booking_id"]}"' in row  # the reply, summarised


def test_describe_with_an_address_prints_the_servers_catalogue_entry(orchestrator):
    local = saga_cli("describe", "travel_booking", "--json")
    remote = saga_cli("describe", "travel_booking", "--json", "--address", orchestrator.address)
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    text = saga_cli("describe", "order_fulfillment", "--address", orchestrator.address)
    assert "output: saga.examples.v1.OrderFulfillmentOutput" in text.stdout
    assert "pivot: stage 4" in text.stdout


def test_describe_of_an_unknown_type_says_where_it_looked():
    result = saga_cli("describe", "loyalty_points")
    assert result.returncode == 2
    assert "looked in module(s) orchestrator.examples" in result.stderr
    assert "--definitions" in result.stderr and "--address" in result.stderr


async def test_a_short_id_as_saga_list_shows_it_names_the_saga(orchestrator, finished):
    ok = finished[0]
    short = ok.saga_id[-8:]
    shown = saga_cli("get", short, "--address", orchestrator.address, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["saga_id"] == ok.saga_id
    history = saga_cli("history", short, "--address", orchestrator.address, "--json")
    assert history.returncode == 0, history.stderr
    none = saga_cli("get", "0000000000ff", "--address", orchestrator.address)
    assert none.returncode == 1 and "no saga id ends in '0000000000ff'" in none.stderr
