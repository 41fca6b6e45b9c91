"""Real processes for end-to-end tests: participants and orchestrators on 127.0.0.1:0.

Every process is tracked by PID and stopped in the fixture's finaliser, also when
the test fails. The orchestrator runs on SQLite and on PostgreSQL (a schema of
its own per test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from orchestrator.client import TERMINAL_SAGA_STATUSES, SagaClient
from orchestrator.store import Store, open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools.processes import (
    PARTICIPANT_SERVICES,
    ChildProcess,
    orchestrator_process,
    participants_process,
)

FAIL_CAR_CLASS = "fail-this-car"
"""A car class the participants are told to reject: a business failure at the third step."""
MAX_CHARGE_MINOR = 150_000
TERMINAL = TERMINAL_SAGA_STATUSES


@pytest.fixture(scope="module")
def participants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """One process serving every example participant, shared by a test module."""
    process = participants_process(
        tmp_path_factory.mktemp("participants"),
        PARTICIPANT_SERVICES,
        ["--max-charge-minor", str(MAX_CHARGE_MINOR), "--fail-ids", FAIL_CAR_CLASS],
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'saga.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


def start_orchestrator(
    workdir: Path, database_url: str, addresses: dict[str, str], name: str = "orchestrator"
) -> ChildProcess:
    return orchestrator_process(workdir, database_url, addresses, name=name).start()


@pytest.fixture
def orchestrator(
    tmp_path: Path, database_url: str, participants: ChildProcess
) -> Iterator[ChildProcess]:
    process = orchestrator_process(tmp_path, database_url, participants.info["services"])
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
async def stub(orchestrator: ChildProcess) -> AsyncIterator[pb_grpc.SagaOrchestratorStub]:
    async with grpc.aio.insecure_channel(orchestrator.address) as channel:
        yield pb_grpc.SagaOrchestratorStub(channel)


@pytest.fixture
async def store(database_url: str, orchestrator: ChildProcess) -> AsyncIterator[Store]:
    """The orchestrator's own database, opened read-side by the test."""
    opened = open_store(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def wait_terminal(
    stub: pb_grpc.SagaOrchestratorStub, saga_id: str, timeout: float = 30.0
) -> pb.Saga:
    """The saga once it is COMPLETED or FAILED, followed on its WatchSaga stream (bounded)."""
    return await SagaClient.over(stub, timeout=5).wait(saga_id, timeout)
