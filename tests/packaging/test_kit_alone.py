"""The participant kit installed alone: a fresh virtualenv gets `pip install
participants/kit` and nothing else, and serves a participant written on the kit.

The participant's proto imports command.proto from the installed kit (protoc is run
here, with `-I` on the virtualenv's site-packages); the participant runs in the
virtualenv on 127.0.0.1, port 0, and a client there calls it: an action, its repeat,
a key reused with another request, a query and the compensation that undoes the
action from its own reply (`@compensation(of=...)`). Then the orchestrator's own
wheel joins the kit in the same virtualenv: both portions of `participants` and
`saga` import together.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.packaging.support import (
    KIT_SOURCES,
    ORCHESTRATOR_SOURCES,
    compile_users_proto,
    copy_sources,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

INSTALL_TIMEOUT_S = 600
LISTENING_TIMEOUT_S = 30

PING_PROTO = """\
syntax = "proto3";

package pingco.v1;

import "saga/participants/common/v1/command.proto";

service PingService {
  rpc Ping(PingRequest) returns (PingResponse);
  rpc Unping(UnpingRequest) returns (UnpingResponse);
  rpc CountPings(CountPingsRequest) returns (CountPingsResponse);
}

message PingRequest {
  saga.participants.common.v1.CommandContext context = 1;
  string note = 2;
}
message PingResponse { string ping_id = 1; }
message UnpingRequest { saga.participants.common.v1.CommandContext context = 1; }
message UnpingResponse {
  string ping_id = 1;
  bool undone = 2;
}
message CountPingsRequest {}
message CountPingsResponse { int64 count = 1; }
"""

PARTICIPANT = """\
from participants.kit import Participant, Tx, action, compensation, query, run
from pingco.v1 import ping_pb2 as pb


class Pings(Participant):
    service = "pingco.v1.PingService"
    schema = ("CREATE TABLE IF NOT EXISTS pings (ping_id TEXT PRIMARY KEY, note TEXT)",)

    @action
    def Ping(self, tx: Tx, request: pb.PingRequest) -> pb.PingResponse:
        ping_id = f"ping-{request.context.idempotency_key}"
        tx.execute("INSERT INTO pings VALUES (%s, %s)", (ping_id, request.note))
        return pb.PingResponse(ping_id=ping_id)

    @compensation(of="Ping")
    def Unping(self, tx: Tx, request, pinged: pb.PingResponse | None) -> pb.UnpingResponse:
        if pinged is None:
            return pb.UnpingResponse(undone=False)
        tx.execute("DELETE FROM pings WHERE ping_id = %s", (pinged.ping_id,))
        return pb.UnpingResponse(ping_id=pinged.ping_id, undone=True)

    @query
    def CountPings(self, tx: Tx, request) -> pb.CountPingsResponse:
        row = tx.one("SELECT COUNT(*) FROM pings")
        return pb.CountPingsResponse(count=row[0] if row else 0)


if __name__ == "__main__":
    run(Pings)
"""

CLIENT = """\
import json, sys

import grpc
from pingco.v1 import ping_pb2 as pb
from saga.participants.common.v1.command_pb2 import CommandContext

with grpc.insecure_channel(sys.argv[1]) as channel:
    def call(method, request, reply):
        rpc = channel.unary_unary(
            f"/pingco.v1.PingService/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply.FromString,
        )
        return rpc(request, timeout=10)

    ping = CommandContext(saga_id="s1", step="ping", idempotency_key="s1:ping")
    first = call("Ping", pb.PingRequest(context=ping, note="hello"), pb.PingResponse)
    repeat = call("Ping", pb.PingRequest(context=ping, note="hello"), pb.PingResponse)
    try:
        call("Ping", pb.PingRequest(context=ping, note="another"), pb.PingResponse)
        reused = "OK"
    except grpc.RpcError as error:
        reused = error.code().name
    counted = call("CountPings", pb.CountPingsRequest(), pb.CountPingsResponse).count
    undo = CommandContext(
        saga_id="s1", step="ping", idempotency_key="s1:ping:compensate",
        compensated_idempotency_key="s1:ping",
    )
    undone = call("Unping", pb.UnpingRequest(context=undo), pb.UnpingResponse)
    after = call("CountPings", pb.CountPingsRequest(), pb.CountPingsResponse).count
print(json.dumps({
    "first": first.ping_id, "repeat": repeat.ping_id, "reused": reused,
    "counted": counted, "undone": [undone.ping_id, undone.undone], "after": after,
}))
"""


def clean_env() -> dict[str, str]:
    """The environment without anything that would put this checkout on sys.path."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }


def run_in(venv: Path, *args: str, cwd: Path, timeout: float = 60) -> str:
    done = subprocess.run(
        [str(venv / "bin" / "python"), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def pip_install(venv: Path, *args: str, cwd: Path) -> None:
    run_in(venv, "-m", "pip", "install", "--quiet", *args, cwd=cwd, timeout=INSTALL_TIMEOUT_S)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kit-alone")


@pytest.fixture(scope="module")
def venv(work: Path) -> Path:
    """A fresh virtualenv holding the kit and its dependencies, nothing else."""
    copy_sources(KIT_SOURCES, work / "source")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip_install(venv, str(work / "source" / "participants" / "kit"), cwd=work)
    return venv


@pytest.fixture(scope="module")
def project(work: Path, venv: Path) -> Path:
    """A participant's own project: its proto compiled against the installed kit."""
    project = work / "project"
    (project / "pingco" / "v1").mkdir(parents=True)
    proto = project / "pingco" / "v1" / "ping.proto"
    proto.write_text(PING_PROTO)
    site_packages = run_in(
        venv, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work
    ).strip()
    status = compile_users_proto(proto, project, Path(site_packages), project)
    assert status == 0, "protoc could not import command.proto from the installed kit"
    (project / "ping_participant.py").write_text(PARTICIPANT)
    (project / "ping_client.py").write_text(CLIENT)
    return project


def installed_distributions(venv: Path, cwd: Path) -> set[str]:
    listed = json.loads(run_in(venv, "-m", "pip", "list", "--format", "json", cwd=cwd))
    return {entry["name"].lower() for entry in listed}


def test_the_kit_installs_without_the_orchestrator_and_its_dependencies(venv, work):
    installed = installed_distributions(venv, work)
    assert "saga-participant-kit" in installed
    assert installed.isdisjoint({"saga-orchestrator", "aiohttp", "rich", "opentelemetry-api"})
    probe = (
        "import importlib.util, participants.kit\n"
        "print(importlib.util.find_spec('orchestrator') is None)"
    )
    assert run_in(venv, "-c", probe, cwd=work).strip() == "True"


def wait_listening(process: subprocess.Popen[str]) -> str:
    """The address from the `... listening on HOST:PORT` line the kit prints when ready."""
    assert process.stdout is not None
    deadline = time.monotonic() + LISTENING_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = process.stdout.readline()
            if not line:
                break
            if " listening on " in line:
                return line.rsplit(" ", 1)[1].strip()
    process.kill()
    raise AssertionError(f"the participant did not start: {process.communicate()}")


def test_a_participant_on_the_kit_alone_serves_over_grpc(venv, project, work):
    participant = subprocess.Popen(
        [
            str(venv / "bin" / "python"),
            "ping_participant.py",
            "--port",
            "0",
            "--database",
            f"sqlite:///{work / 'pings.sqlite3'}",
        ],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        address = wait_listening(participant)
        assert address.startswith("127.0.0.1:") and not address.endswith(":0")
        answers = json.loads(run_in(venv, "ping_client.py", address, cwd=project))
    finally:
        participant.terminate()
        participant.wait(10)

    assert answers == {
        "first": "ping-s1:ping",
        "repeat": "ping-s1:ping",
        "reused": "ALREADY_EXISTS",
        "counted": 1,
        "undone": ["ping-s1:ping", True],
        "after": 0,
    }


def test_the_orchestrator_wheel_installed_beside_the_kit_shares_its_namespaces(venv, work):
    """Last: it adds the orchestrator's wheel (without its dependencies) to the venv."""
    source = work / "orchestrator-source"
    copy_sources(ORCHESTRATOR_SOURCES, source)
    pip_install(venv, "--no-deps", str(source), cwd=work)
    assert {"saga-participant-kit", "saga-orchestrator"} <= installed_distributions(venv, work)
    probe = (
        "import participants, participants.kit, participants.flight.service\n"
        "import saga.v1.orchestrator_pb2\n"
        "print(len(list(participants.__path__)))"
    )
    assert run_in(venv, "-c", probe, cwd=work).strip() == "1"
