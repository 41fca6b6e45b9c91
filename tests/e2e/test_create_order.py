"""FTGO's "Create Order" saga end to end: a read-only first step, a compensable ticket,
the card authorization as pivot, two retriable approvals. Real processes (one for the
consumer, kitchen, accounting and order participants, one orchestrator on SQLite or
PostgreSQL); what each participant was sent is read from the commands it recorded."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from orchestrator.failpoints import EXIT_CODE
from saga.examples.v1.outputs_pb2 import CreateOrderOutput
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_crash_recovery import wait_exit
from tests.support.starting import start_saga, start_saga_at
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("consumer", "kitchen", "accounting", "order")
CARD_LIMIT_MINOR = 10_000
ENV = {"SAGA_DEFINITIONS": "orchestrator.examples.create_order", "SAGA_LEASE_SECONDS": "1"}
STEPS = ("verify_consumer", "create_ticket", "authorize_card", "approve_ticket", "approve_order")
OK, DECLINED = "OK", "FAILED_PRECONDITION"
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def order(order_id: str, *, amount_minor: int = 2_500, consumer: str = "consumer-7") -> dict:
    return {
        "order_id": order_id,
        "consumer_id": consumer,
        "restaurant_id": "ajanta",
        "items": [{"sku": "chicken-vindaloo", "quantity": 2}],
        "amount": {"currency_code": "EUR", "amount_minor": amount_minor},
    }


@pytest.fixture(scope="module")
def ftgo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """The four FTGO participants in one process, shared by the module."""
    process = participants_process(
        tmp_path_factory.mktemp("ftgo"),
        SERVICES,
        ["--max-charge-minor", str(CARD_LIMIT_MINOR)],
        name="ftgo",
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
async def stub(
    tmp_path: Path, database_url: str, ftgo: ChildProcess
) -> AsyncIterator[pb_grpc.SagaOrchestratorStub]:
    process = orchestrator_process(tmp_path, database_url, ftgo.info["services"], env=ENV)
    try:
        process.start()
        async with grpc.aio.insecure_channel(process.address) as channel:
            yield pb_grpc.SagaOrchestratorStub(channel)
    finally:
        process.stop()


def recorded_commands(ftgo: ChildProcess, saga_id: str) -> dict[str, list[tuple[str, str]]]:
    """Per participant, every command of the saga it recorded (method, status code), in
    the order it recorded them: what it was sent and applied or refused."""
    state_dir = ftgo.workdir / "participants"  # participants_process's --state-dir
    found: dict[str, list[tuple[str, str]]] = {}
    for name in SERVICES:
        uri = f"file:{state_dir / name}.sqlite3?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute(
                "SELECT method, status_code FROM kit_commands WHERE saga_id = ? "
                "ORDER BY create_time, rowid",
                (saga_id,),
            ).fetchall()
        found[name] = [(method, CODE_NAMES[code]) for method, code in rows]
    return found


def step_statuses(saga: pb.Saga) -> dict[str, str]:
    return {
        step.name: pb.StepStatus.Name(step.status).removeprefix("STEP_STATUS_")
        for step in saga.steps
    }


async def history(stub: pb_grpc.SagaOrchestratorStub, saga_id: str) -> list[pb.Transition]:
    reply = await stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=10)
    assert not reply.next_page_token
    return list(reply.transitions)


async def test_an_order_is_created_when_every_step_succeeds(stub, ftgo):
    saga_id = await start_saga(stub, order("o-happy"), "o-happy", saga_type="create_order")
    saga = await wait_terminal(stub, saga_id)

    assert saga.status == pb.SAGA_STATUS_COMPLETED, saga.failure_reason
    assert step_statuses(saga) == dict.fromkeys(STEPS, "COMPLETED")
    output = CreateOrderOutput()
    assert saga.output.Unpack(output) and output.ticket_id and output.authorization_id
    assert recorded_commands(ftgo, saga_id) == {
        "consumer": [("VerifyConsumer", OK)],
        "kitchen": [("CreateTicket", OK), ("ApproveTicket", OK)],
        "accounting": [("AuthorizeCard", OK)],
        "order": [("ApproveOrder", OK)],
    }


def assert_declined_and_rolled_back(saga: pb.Saga, log: list[pb.Transition], calls) -> None:
    """The card was declined: the ticket is rejected, the consumer check is passed over
    with nothing to undo, and the consumer service was sent nothing but the check."""
    assert saga.status == pb.SAGA_STATUS_FAILED
    assert saga.failed_step == "authorize_card" and not saga.needs_intervention
    assert "CARD_DECLINED" in saga.failure_reason or "declined" in saga.failure_reason
    assert step_statuses(saga) == {
        "verify_consumer": "NOTHING_TO_UNDO",
        "create_ticket": "COMPENSATED",
        "authorize_card": "FAILED",
        "approve_ticket": "PENDING",
        "approve_order": "PENDING",
    }
    assert calls == {
        "consumer": [("VerifyConsumer", OK)],
        "kitchen": [("CreateTicket", OK), ("RejectTicket", OK)],
        "accounting": [("AuthorizeCard", DECLINED)],
        "order": [],
    }
    verify = [
        pb.TransitionEvent.Name(t.event).removeprefix("TRANSITION_EVENT_")
        for t in log
        if t.step == "verify_consumer"
    ]
    assert verify == ["STEP_STARTED", "STEP_COMPLETED", "STEP_NOTHING_TO_UNDO"]
    [passed] = [t for t in log if t.event == pb.TRANSITION_EVENT_STEP_NOTHING_TO_UNDO]
    assert passed.step_status == pb.STEP_STATUS_NOTHING_TO_UNDO
    assert passed.saga_status == pb.SAGA_STATUS_COMPENSATING and passed.attempt == 0


async def test_a_declined_card_rejects_the_ticket_and_sends_the_consumer_check_nothing(stub, ftgo):
    payload = order("o-declined", amount_minor=CARD_LIMIT_MINOR + 1)
    saga_id = await start_saga(stub, payload, "o-declined", saga_type="create_order")
    saga = await wait_terminal(stub, saga_id)
    assert_declined_and_rolled_back(
        saga, await history(stub, saga_id), recorded_commands(ftgo, saga_id)
    )


async def test_a_consumer_who_may_not_order_fails_the_saga_with_nothing_to_undo(stub, ftgo):
    payload = order("o-blocked", consumer="blocked-consumer-3")
    saga_id = await start_saga(stub, payload, "o-blocked", saga_type="create_order")
    saga = await wait_terminal(stub, saga_id)

    assert saga.status == pb.SAGA_STATUS_FAILED and saga.failed_step == "verify_consumer"
    assert step_statuses(saga)["verify_consumer"] == "FAILED"
    assert recorded_commands(ftgo, saga_id) == {
        "consumer": [("VerifyConsumer", DECLINED)],
        "kitchen": [],
        "accounting": [],
        "order": [],
    }


async def test_a_rollback_cut_by_a_crash_resumes_past_the_read_only_step(
    tmp_path, database_url, ftgo
):
    """The orchestrator dies once the ticket's rejection is committed as started and
    before it is sent; another process sends it and passes over the consumer check."""
    addresses = ftgo.info["services"]
    payload = order("o-crash", amount_minor=CARD_LIMIT_MINOR + 1)
    key = "create-order-crash"
    doomed = orchestrator_process(
        tmp_path,
        database_url,
        addresses,
        env={**ENV, "SAGA_FAILPOINT": "compensation_started"},
        name="doomed",
    )
    survivor = orchestrator_process(tmp_path, database_url, addresses, env=ENV, name="survivor")
    try:
        doomed.start()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await start_saga_at(
                doomed.address, payload, key, saga_type="create_order", idempotency_key=key
            )
        assert wait_exit(doomed) == EXIT_CODE, doomed.log_tail()
        survivor.start()
        saga_id = await start_saga_at(
            survivor.address, payload, key, saga_type="create_order", idempotency_key=key
        )
        async with grpc.aio.insecure_channel(survivor.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            saga = await wait_terminal(stub, saga_id)
            log = await history(stub, saga_id)
    finally:
        doomed.kill()
        survivor.stop()

    assert_declined_and_rolled_back(saga, log, recorded_commands(ftgo, saga_id))
    rejection = [
        t
        for t in log
        if t.step == "create_ticket" and "COMPENSATION" in pb.TransitionEvent.Name(t.event)
    ]
    assert [pb.TransitionEvent.Name(t.event) for t in rejection] == [
        "TRANSITION_EVENT_COMPENSATION_STARTED",
        "TRANSITION_EVENT_COMPENSATION_RETRY_SCHEDULED",
        "TRANSITION_EVENT_COMPENSATION_COMPLETED",
    ], "resent after the restart"
