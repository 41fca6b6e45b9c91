"""A user's own saga, done exactly as the walkthrough in docs/own-saga.md says.

tests/own_saga/ is the user's project directory: the proto, the stubs the
walkthrough's protoc command makes, the participant server and the definitions
module, each file equal to its listing in the walkthrough. The participants, the
orchestrator and the `saga` commands run as separate processes, and the
project directory is on their import path as it is when a user runs the
commands from it. Also here: two versions of one saga type served side by side
from a definitions module, and an orchestrator refusing to start without a
version its unfinished sagas need.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.support.payloads import struct, travel
from tools.processes import (
    PARTICIPANT_SERVICES,
    ChildProcess,
    orchestrator_process,
    participants_process,
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "tests" / "own_saga"
WALKTHROUGH = ROOT / "docs" / "own-saga.md"
WALKTHROUGH_FILES = (
    "protos/acme/loyalty/v1/loyalty.proto",
    "loyalty_participant.py",
    "loyalty_sagas.py",
    "signup.py",
)
GENERATED = (
    "acme/loyalty/v1/loyalty_pb2.py",
    "acme/loyalty/v1/loyalty_pb2.pyi",
    "acme/loyalty/v1/loyalty_pb2_grpc.py",
)
STARTUP_SECONDS = 30.0


# --- the walkthrough and the files agree -----------------------------------------------------


def walkthrough_listings() -> dict[str, str]:
    """Each walkthrough code block that follows a line naming a file as **`path`**."""
    text = WALKTHROUGH.read_text()
    return dict(re.findall(r"^\*\*`([^`]+)`\*\*\n\n```\w*\n(.*?)^```$", text, re.M | re.S))


def walkthrough_saga_protos(cwd: Path) -> str:
    """What the walkthrough's `export SAGA_PROTOS=...` line sets, run by sh as written."""
    match = re.search(r"^(export SAGA_PROTOS=.*)$", WALKTHROUGH.read_text(), re.M)
    assert match, "the walkthrough sets no SAGA_PROTOS"
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(
        ["sh", "-c", f'{match.group(1)} && printf %s "$SAGA_PROTOS"'],
        cwd=cwd,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def walkthrough_protoc_argv(saga_protos: str) -> list[str]:
    """The walkthrough's protoc command, with $SAGA_PROTOS as the walkthrough sets it."""
    match = re.search(
        r"^(python -m grpc_tools\.protoc .*?)$\n(?!  )", WALKTHROUGH.read_text(), re.M | re.S
    )
    assert match, "the walkthrough shows no `python -m grpc_tools.protoc` command"
    command = match.group(1).replace("\\\n", " ").replace('"$SAGA_PROTOS"', saga_protos)
    argv = shlex.split(command)
    return [sys.executable, *argv[1:]]


@pytest.mark.unit
def test_the_walkthrough_files_are_the_walkthroughs_listings():
    listings = walkthrough_listings()
    for name in WALKTHROUGH_FILES:
        assert name in listings, f"the walkthrough lists no {name}"
        assert listings[name] == (PROJECT / name).read_text(), f"{name} differs from its listing"


@pytest.mark.unit
def test_the_committed_stubs_are_what_the_walkthroughs_protoc_command_makes(tmp_path):
    shutil.copytree(PROJECT / "protos", tmp_path / "protos")
    result = subprocess.run(
        walkthrough_protoc_argv(walkthrough_saga_protos(tmp_path)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fresh = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "acme").rglob("*.py*"))
    assert fresh == sorted(GENERATED)
    stale = [
        name
        for name in GENERATED
        if (tmp_path / name).read_bytes() != (PROJECT / name).read_bytes()
    ]
    assert not stale, f"stale stubs in tests/own_saga, rerun the walkthrough's protoc: {stale}"


# --- processes -------------------------------------------------------------------------------


class PrintedAddressProcess:
    """A process that prints `... listening on HOST:PORT`, like the walkthrough's participant."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        cwd: Path,
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.env = {**os.environ, **(env or {})}
        self.argv = argv
        self.cwd = cwd
        self.log_file = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self) -> PrintedAddressProcess:
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            found = re.search(r"listening on (\S+)", self.log_file.read_text(errors="replace"))
            if found:
                self.address = found.group(1)
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_file.read_text()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} printed no address:\n{self.log_file.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def with_pythonpath(directory: Path) -> dict[str, str]:
    """The environment of a process that can import modules from `directory`."""
    paths = [str(directory), *filter(None, [os.environ.get("PYTHONPATH", "")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def serve_process(
    workdir: Path,
    database_url: str,
    definitions: str,
    addresses: dict[str, str],
    importable: Path,
    name: str,
) -> ChildProcess:
    """`saga serve --definitions MODULE --participant ...` on a free port."""
    argv = [sys.executable, "-m", "orchestrator", "serve", "--definitions", definitions]
    for participant, address in sorted(addresses.items()):
        argv += ["--participant", f"{participant}={address}"]
    argv += ["--database", database_url, "--listen", "127.0.0.1:0"]
    return ChildProcess(name, argv, workdir, env=with_pythonpath(importable))


def saga_cli(*args: str, cwd: Path = PROJECT, env: dict[str, str] | None = None):
    """A `saga` command run from the user's project directory."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def signup(customer: str, fee_minor: int) -> str:
    return json.dumps(
        {
            "customer_id": customer,
            "welcome_points": 500,
            "fee": {"currency_code": "EUR", "amount_minor": fee_minor},
        }
    )


@pytest.fixture
def walkthrough(tmp_path: Path, database_url: str) -> Iterator[dict[str, str]]:
    """The walkthrough's processes: payment participant, loyalty participant, orchestrator."""
    payment = participants_process(tmp_path, ["payment"])
    loyalty = PrintedAddressProcess(
        "loyalty",
        [
            sys.executable,
            "loyalty_participant.py",
            "--port",
            "0",
            "--database",
            f"sqlite:///{tmp_path / 'loyalty.db'}",
        ],
        cwd=PROJECT,
        log_dir=tmp_path,
    )
    orchestrator: ChildProcess | None = None
    try:
        payment.start()
        loyalty.start()
        orchestrator = serve_process(
            tmp_path,
            database_url,
            "loyalty_sagas",
            {"loyalty": loyalty.address, "payment": payment.info["services"]["payment"]},
            PROJECT,
            "orchestrator",
        ).start()
        yield {"orchestrator": orchestrator.address, "loyalty": loyalty.address}
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        loyalty.stop()
        payment.stop()


async def balance_of(address: str, customer: str) -> int:
    """GetBalance on the user's participant, through the user's generated stub."""
    sys.path.insert(0, str(PROJECT))
    try:
        from acme.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
    finally:
        sys.path.remove(str(PROJECT))
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await loyalty_pb2_grpc.LoyaltyServiceStub(channel).GetBalance(
            loyalty_pb2.GetBalanceRequest(customer_id=customer), timeout=5
        )
    return int(reply.points)


# --- the walkthrough -------------------------------------------------------------------------


@pytest.mark.e2e
async def test_the_walkthroughs_own_saga_completes_and_a_declined_fee_revokes_the_points(
    walkthrough,
):
    address = walkthrough["orchestrator"]
    sagas = {}
    for customer, fee_minor in (("ada", 1900), ("bob", 900_000)):
        started = saga_cli(
            "start",
            "loyalty_signup",
            "--address",
            address,
            "--correlation-id",
            f"signup-{customer}",
            "--payload",
            signup(customer, fee_minor),
            "--json",
        )
        assert started.returncode == 0, started.stderr
        sagas[customer] = json.loads(started.stdout)["saga_id"]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        for saga_id in sagas.values():
            await wait_terminal(stub, saga_id)

    shown = {}
    for customer, saga_id in sagas.items():
        result = saga_cli("get", saga_id, "--address", address, "--json")
        assert result.returncode == 0, result.stderr
        shown[customer] = json.loads(result.stdout)

    ada, bob = shown["ada"], shown["bob"]
    assert ada["status"] == "SAGA_STATUS_COMPLETED"
    assert ada["saga_type"] == "loyalty_signup"
    assert [(s["name"], s["status"]) for s in ada["steps"]] == [
        ("award_points", "STEP_STATUS_COMPLETED"),
        ("charge_fee", "STEP_STATUS_COMPLETED"),
    ]
    assert bob["status"] == "SAGA_STATUS_FAILED"
    assert bob["failed_step"] == "charge_fee"
    assert [(s["name"], s["status"]) for s in bob["steps"]] == [
        ("award_points", "STEP_STATUS_COMPENSATED"),
        ("charge_fee", "STEP_STATUS_FAILED"),
    ]
    assert await balance_of(walkthrough["loyalty"], "ada") == 500
    assert await balance_of(walkthrough["loyalty"], "bob") == 0

    for customer, fee_minor, said in (("cy", 1900, "signed up: saga "), ("dan", 900_000, "not")):
        app = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "signup.py", address, customer, str(fee_minor)],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert app.returncode == 0, app.stderr
        assert app.stdout.startswith(said), app.stdout
    assert "step charge_fee failed" in app.stdout
    assert await balance_of(walkthrough["loyalty"], "cy") == 500
    assert await balance_of(walkthrough["loyalty"], "dan") == 0


@pytest.mark.e2e
def test_describe_shows_the_users_saga_from_its_module():
    text = saga_cli("describe", "loyalty_signup", "--definitions", "loyalty_sagas")
    assert text.returncode == 0, text.stderr
    assert "loyalty_signup v1: Award welcome points, then charge the membership fee." in text.stdout
    assert "1. award_points" in text.stdout
    assert "action:             acme.loyalty.v1.LoyaltyService.AwardPoints" in text.stdout
    assert "compensation:       acme.loyalty.v1.LoyaltyService.RevokePoints" in text.stdout
    assert "2. charge_fee" in text.stdout

    mermaid = saga_cli(
        "describe", "loyalty_signup", "--definitions", "loyalty_sagas", "--format", "mermaid"
    )
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert "LoyaltyService.RevokePoints" in mermaid.stdout


@pytest.mark.e2e
def test_serve_names_a_definitions_module_it_cannot_import(tmp_path):
    result = saga_cli(
        "serve",
        "--definitions",
        "no_such_user_sagas",
        "--database",
        f"sqlite:///{tmp_path / 's.db'}",
        "--listen",
        "127.0.0.1:0",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "cannot import definitions module 'no_such_user_sagas'" in result.stderr
    assert "Traceback" not in result.stderr


# --- versions --------------------------------------------------------------------------------

TRAVEL_V2 = '''
"""travel_booking v2, without the car, next to the v1 that unfinished sagas still need."""

import dataclasses

from orchestrator.examples import ORDER_FULFILLMENT, TRAVEL_BOOKING

TRAVEL_BOOKING_V2 = dataclasses.replace(
    TRAVEL_BOOKING,
    version=2,
    description="Book a flight and a hotel, then charge the traveller.",
    steps=tuple(step for step in TRAVEL_BOOKING.all_steps if step.name != "rent_car"),
    output_type=None,  # v1's output names the car rental, which v2 does not make
    output=None,
)
'''
SLOW_MS = 1000
"""Every participant action takes this long, so a saga is still running when we look."""


@pytest.mark.e2e
@pytest.mark.slow
async def test_two_versions_run_side_by_side_and_a_missing_one_stops_the_start(
    tmp_path, database_url
):
    (tmp_path / "travel_both.py").write_text(
        TRAVEL_V2 + "\nDEFINITIONS = (TRAVEL_BOOKING, TRAVEL_BOOKING_V2, ORDER_FULFILLMENT)\n"
    )
    (tmp_path / "travel_v2_only.py").write_text(
        TRAVEL_V2 + "\nDEFINITIONS = (TRAVEL_BOOKING_V2, ORDER_FULFILLMENT)\n"
    )
    slow = participants_process(tmp_path, PARTICIPANT_SERVICES, ["--latency-ms", str(SLOW_MS)])
    v1_only: ChildProcess | None = None
    both: ChildProcess | None = None
    try:
        addresses = slow.start().info["services"]
        v1_only = orchestrator_process(tmp_path, database_url, addresses, name="v1-only").start()
        async with grpc.aio.insecure_channel(v1_only.address) as channel:
            old = await pb_grpc.SagaOrchestratorStub(channel).StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking", correlation_id="v1", payload=struct(travel("a"))
                ),
                timeout=5,
            )
        assert v1_only.stop() == 0, v1_only.log_tail()
        store = open_store(database_url)
        await store.open()
        try:
            assert await store.unfinished_definitions() == {("travel_booking", 1): 1}
        finally:
            await store.close()

        refused = serve_process(
            tmp_path, database_url, "travel_v2_only", addresses, tmp_path, "v2-only"
        )
        with pytest.raises(RuntimeError, match="exited with 2"):
            refused.start()
        assert "travel_booking v1 (1 saga)" in refused.log_tail()
        assert "Traceback" not in refused.log_tail()

        both = serve_process(tmp_path, database_url, "travel_both", addresses, tmp_path, "both")
        both.start()
        async with grpc.aio.insecure_channel(both.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            new = await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking", correlation_id="v2", payload=struct(travel("b"))
                ),
                timeout=5,
            )
            old_meanwhile = await stub.GetSaga(pb.GetSagaRequest(saga_id=old.saga_id), timeout=5)
            old_saga = await wait_terminal(stub, old.saga_id)
            new_saga = await wait_terminal(stub, new.saga_id)
    finally:
        for process in (both, v1_only, slow):
            if process is not None:
                process.stop()

    assert old_meanwhile.status == pb.SAGA_STATUS_RUNNING
    assert old_saga.definition_version == 1
    assert old_saga.status == pb.SAGA_STATUS_COMPLETED
    assert "rent_car" in [step.name for step in old_saga.steps]
    assert new_saga.definition_version == 2
    assert new_saga.status == pb.SAGA_STATUS_COMPLETED
    assert [step.name for step in new_saga.steps] == ["book_flight", "book_hotel", "charge_payment"]
