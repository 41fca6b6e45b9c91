"""SIGKILL-equivalent crashes at every failpoint: a new orchestrator process finishes
the saga, and every participant effect happens exactly once."""

from __future__ import annotations

import contextlib
import time
from collections import Counter

import grpc
import pytest

from orchestrator.core.records import TransitionEvent
from orchestrator.failpoints import EXIT_CODE
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import MAX_CHARGE_MINOR, wait_terminal
from tests.e2e.effects import effects_of
from tests.support.payloads import travel
from tests.support.starting import start_saga_at
from tools.processes import orchestrator_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOOKINGS = ("flight", "hotel", "car_rental")
SHORT_LEASE = {"SAGA_LEASE_SECONDS": "1"}
"""The dead replica's sagas are taken over once its lease runs out."""


def wait_exit(process, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while process.process.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.name} did not reach its failpoint")
        time.sleep(0.05)
    return process.process.returncode


async def start_with_key(address: str, payload: dict, key: str) -> str:
    """StartSaga; the process may die before answering, so the key finds the saga later."""
    return await start_saga_at(address, payload, key, idempotency_key=key, timeout=5)


@pytest.mark.parametrize(
    ("failpoint", "declined"),
    [
        ("step_started:2", False),
        ("reply_received:3", False),
        ("saga_finished", False),
        ("compensation_started:2", True),
        ("reply_received:2", True),
    ],
)
async def test_orchestrator_killed_at_a_failpoint_finishes_after_restart(
    tmp_path, database_url, participants, failpoint, declined
):
    addresses = participants.info["services"]
    payload = travel(amount_minor=MAX_CHARGE_MINOR + 1 if declined else 100_000)
    key = f"crash-{failpoint}-{declined}"
    doomed = orchestrator_process(
        tmp_path,
        database_url,
        addresses,
        env={"SAGA_FAILPOINT": failpoint, **SHORT_LEASE},
        name="doomed",
    )
    survivor = orchestrator_process(
        tmp_path, database_url, addresses, env=SHORT_LEASE, name="survivor"
    )
    try:
        doomed.start()
        # It may die before answering: the saga was committed first.
        with contextlib.suppress(grpc.aio.AioRpcError):
            await start_with_key(doomed.address, payload, key)
        assert wait_exit(doomed) == EXIT_CODE, doomed.log_tail()

        survivor.start()
        saga_id = await start_with_key(survivor.address, payload, key)
        async with grpc.aio.insecure_channel(survivor.address) as channel:
            saga = await wait_terminal(pb_grpc.SagaOrchestratorStub(channel), saga_id)
    finally:
        doomed.kill()
        survivor.stop()

    effects = await effects_of(addresses, saga_id)
    if declined:
        assert saga.status == pb.SAGA_STATUS_FAILED and saga.failed_step == "charge_payment"
        assert all(effects[name] == Counter({"CANCELLED": 1}) for name in BOOKINGS), effects
        assert effects["payment"] == Counter()
    else:
        assert saga.status == pb.SAGA_STATUS_COMPLETED
        assert all(effects[name] == Counter({"ACTIVE": 1}) for name in (*BOOKINGS, "payment"))
    store = open_store(database_url)
    await store.open()
    try:
        log = await store.get_transitions(saga_id)
    finally:
        await store.close()
    assert [t.seq for t in log] == list(range(1, len(log) + 1))
    terminal = [
        t for t in log if t.event in (TransitionEvent.SAGA_COMPLETED, TransitionEvent.SAGA_FAILED)
    ]
    assert len(terminal) == 1
