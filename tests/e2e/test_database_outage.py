"""PostgreSQL stopped and started again under a running orchestrator.

The outage is real (`pg_ctl stop -m fast`, then `pg_ctl start` on the same port) on a
private server, since the shared one serves other tests. While the database is away
the orchestrator answers UNAVAILABLE at once rather than accepting work it cannot
persist, stays up, and once the database is back it serves again and finishes every
saga it had in flight, each participant effect exactly once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from psycopg import sql

from orchestrator.core.errors import StoreUnavailable
from orchestrator.core.records import Lease, SagaStatus
from orchestrator.core.registry import Registry
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.examples import DEFINITIONS, TRAVEL_BOOKING
from orchestrator.store import PostgresStore
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.conftest import url_with_search_path
from tests.e2e.conftest import MAX_CHARGE_MINOR, TERMINAL
from tests.e2e.effects import effects_of
from tests.e2e.pgserver import PrivatePostgres, private_postgres
from tests.support.payloads import order, struct, travel
from tools.processes import (
    PARTICIPANT_SERVICES,
    ChildProcess,
    orchestrator_process,
    participants_process,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

OUTAGE_SECONDS = 3.0
CALL_DEADLINE_SECONDS = 5.0
RECOVERY_TIMEOUT_SECONDS = 30.0
LATENCY_MS = 200
"""Each participant action takes this long, so sagas are mid-flight when the database goes."""

EXPECTED_EFFECTS = {
    "travel": {name: Counter({"ACTIVE": 1}) for name in ("flight", "hotel", "car_rental")}
    | {"payment": Counter({"ACTIVE": 1})},
    "declined travel": {
        name: Counter({"CANCELLED": 1}) for name in ("flight", "hotel", "car_rental")
    }
    | {"payment": Counter()},
    "order": {name: Counter({"ACTIVE": 1}) for name in ("inventory", "payment", "shipping")}
    | {"notification": Counter({"SENT": 1})},
}


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture
def database_url(postgres_server: PrivatePostgres) -> Iterator[str]:
    """A schema of this test's own on the private server, which runs again afterwards."""
    schema = f"outage_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield url_with_search_path(postgres_server.url, schema)
    finally:
        if not postgres_server.running():
            postgres_server.start()


@pytest.fixture(scope="module")
def slow_participants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    process = participants_process(
        tmp_path_factory.mktemp("participants"),
        PARTICIPANT_SERVICES,
        ["--latency-ms", str(LATENCY_MS), "--max-charge-minor", str(MAX_CHARGE_MINOR)],
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def orchestrator(tmp_path, database_url, slow_participants) -> Iterator[ChildProcess]:
    process = orchestrator_process(tmp_path, database_url, slow_participants.info["services"])
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
async def stub(orchestrator: ChildProcess):
    async with grpc.aio.insecure_channel(orchestrator.address) as channel:
        yield pb_grpc.SagaOrchestratorStub(channel)


def start_request(kind: str, number: int) -> pb.StartSagaRequest:
    key = f"outage-{kind.replace(' ', '-')}-{number}"
    if kind == "order":
        saga_type, payload = "order_fulfillment", order(key)
    else:
        amount = MAX_CHARGE_MINOR + 1 if kind == "declined travel" else 100_000
        saga_type, payload = "travel_booking", travel(f"customer-{number}", amount_minor=amount)
    return pb.StartSagaRequest(
        saga_type=saga_type, correlation_id=key, payload=struct(payload), idempotency_key=key
    )


async def until_served(call, timeout: float = RECOVERY_TIMEOUT_SECONDS):
    """Repeat `call()` while it fails UNAVAILABLE (bounded); its first answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def wait_all_terminal(stub, saga_ids, timeout: float = RECOVERY_TIMEOUT_SECONDS):
    deadline = time.monotonic() + timeout
    while True:
        sagas = [
            await until_served(
                lambda i=saga_id: stub.GetSaga(pb.GetSagaRequest(saga_id=i), timeout=5)
            )
            for saga_id in saga_ids
        ]
        if all(saga.status in TERMINAL for saga in sagas):
            return sagas
        if time.monotonic() > deadline:
            stuck = [s.saga_id for s in sagas if s.status not in TERMINAL]
            raise TimeoutError(f"{len(stuck)} saga(s) still unfinished: {stuck}")
        await asyncio.sleep(0.2)


def error_reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    if status is None or not status.details:
        return ""
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return str(info.reason)


async def test_sagas_in_flight_when_postgres_stops_finish_once_it_is_back(
    postgres_server, orchestrator, stub, slow_participants
):
    kinds = ["travel", "declined travel", "order"] * 4
    started = {}
    for number, kind in enumerate(kinds):
        reply = await stub.StartSaga(start_request(kind, number), timeout=CALL_DEADLINE_SECONDS)
        started[reply.saga_id] = kind
    before = [await stub.GetSaga(pb.GetSagaRequest(saga_id=i), timeout=5) for i in started]
    assert any(saga.status not in TERMINAL for saga in before), "no saga was in flight"

    postgres_server.stop("fast")
    await asyncio.sleep(OUTAGE_SECONDS)
    postgres_server.start()

    sagas = await wait_all_terminal(stub, list(started))
    assert orchestrator.process.poll() is None, orchestrator.log_tail()
    # An outage is expected weather: a line per saga at WARNING, no traceback at ERROR.
    log = orchestrator.log_file.read_text()
    assert "the store is unavailable" in log
    assert "Traceback" not in log, orchestrator.log_tail()
    addresses = slow_participants.info["services"]
    for saga in sagas:
        kind = started[saga.saga_id]
        expected = pb.SAGA_STATUS_FAILED if kind == "declined travel" else pb.SAGA_STATUS_COMPLETED
        assert (saga.status, saga.needs_intervention) == (expected, False), saga
        effects = await effects_of(addresses, saga.saga_id)
        for participant, counts in EXPECTED_EFFECTS[kind].items():
            assert effects[participant] == counts, (kind, participant, effects)


@pytest.mark.parametrize("rpc", ["StartSaga", "GetSaga"])
async def test_call_during_postgres_outage_is_unavailable_and_served_once_it_is_back(
    postgres_server, orchestrator, stub, rpc
):
    first = await stub.StartSaga(start_request("travel", 0), timeout=CALL_DEADLINE_SECONDS)
    during_outage = start_request("travel", 1)

    def call():
        if rpc == "StartSaga":
            return stub.StartSaga(during_outage, timeout=CALL_DEADLINE_SECONDS)
        return stub.GetSaga(pb.GetSagaRequest(saga_id=first.saga_id), timeout=5)

    postgres_server.stop("fast")
    try:
        # The first call meets a pooled connection the server closed; later ones a
        # store that knows the server is gone.
        for _ in range(3):
            began = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call()
            elapsed = time.monotonic() - began
            code, details = raised.value.code(), raised.value.details()
            assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
            assert error_reason(raised.value) == "STORE_UNAVAILABLE"
            assert elapsed < CALL_DEADLINE_SECONDS - 1, elapsed
        assert orchestrator.process.poll() is None, orchestrator.log_tail()
    finally:
        postgres_server.start()

    answer = await until_served(call)
    if rpc == "StartSaga":
        assert answer.created, "a StartSaga refused during the outage stored something"
        saga_id = answer.saga_id
    else:
        saga_id = first.saga_id
    sagas = await wait_all_terminal(stub, [saga_id])
    assert sagas[0].status == pb.SAGA_STATUS_COMPLETED


class CreateAcknowledgementLost(PostgresStore):
    """The first `create_saga` commits, then fails as if the connection dropped before
    COMMIT's answer arrived: what a client of a database that goes away sees."""

    lost = False

    async def create_saga(self, *args, **kwargs):
        result = await super().create_saga(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise StoreUnavailable("PostgreSQL is unavailable: connection lost during COMMIT")
        return result


async def test_start_whose_commit_answer_was_lost_is_driven_when_the_client_retries(
    database_url, slow_participants
):
    store = CreateAcknowledgementLost(database_url)
    await store.open()
    participants = ParticipantClient(slow_participants.info["services"])
    executor = Executor(
        store, Registry(DEFINITIONS), participants, lease=Lease("lost-ack-replica", 1.0)
    )
    payload = travel("customer-lost-ack")
    try:
        executor.resume_unfinished()
        with pytest.raises(StoreUnavailable):
            await executor.start_saga(TRAVEL_BOOKING, "lost-ack", payload, "lost-ack")
        # The client retries with the same key, as UNAVAILABLE invites it to.
        retried = await executor.start_saga(TRAVEL_BOOKING, "lost-ack", payload, "lost-ack")
        assert not retried.created
        deadline = time.monotonic() + 5.0
        saga = retried.saga
        while saga.status not in (SagaStatus.COMPLETED, SagaStatus.FAILED):
            assert time.monotonic() < deadline, f"saga {saga.saga_id} still {saga.status}"
            await asyncio.sleep(0.2)
            saga = await store.get_saga(retried.saga.saga_id)
        assert saga.status is SagaStatus.COMPLETED
    finally:
        await executor.stop()
        await participants.close()
        await store.close()
