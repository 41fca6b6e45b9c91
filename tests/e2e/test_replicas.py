"""Several orchestrator replicas on one PostgreSQL: leases, takeover, fencing.

A replica killed with SIGKILL, or frozen with SIGSTOP past its lease and thawed
later, never makes a step happen twice: the participants' records (one per
idempotency key) and each saga's log prove it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import grpc
import pytest

from orchestrator.core.records import TransitionEvent
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.effects import effects_of
from tests.support.payloads import travel
from tests.support.starting import start_saga_at
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

LEASE = {"SAGA_LEASE_SECONDS": "1"}
SAGAS = 24


async def start_sagas(addresses: list[str], count: int, prefix: str) -> list[str]:
    """Start `count` travel sagas, spread over the replicas round-robin."""
    saga_ids = []
    for n in range(count):
        saga_ids.append(
            await start_saga_at(
                addresses[n % len(addresses)],
                travel(f"customer-{n}"),
                f"{prefix}-{n}",
                idempotency_key=f"{prefix}-{n}",
                timeout=5,
            )
        )
    return saga_ids


async def check_each_effect_once(database_url, participant_addresses, saga_ids, survivor):
    async with grpc.aio.insecure_channel(survivor) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        sagas = await asyncio.gather(*(wait_terminal(stub, i, timeout=60) for i in saga_ids))
    assert all(s.status == pb.SAGA_STATUS_COMPLETED for s in sagas)
    store = open_store(database_url)
    await store.open()
    try:
        for saga_id in saga_ids:
            effects = await effects_of(participant_addresses, saga_id)
            for name in ("flight", "hotel", "car_rental", "payment"):
                assert effects[name] == Counter({"ACTIVE": 1}), (saga_id, name, effects)
            log = await store.get_transitions(saga_id)
            assert [t.seq for t in log] == list(range(1, len(log) + 1))
            finals = [t for t in log if t.event is TransitionEvent.SAGA_COMPLETED]
            assert len(finals) == 1
    finally:
        await store.close()


@pytest.fixture
def slow_participants(tmp_path):
    process = participants_process(
        tmp_path,
        ["flight", "hotel", "car_rental", "payment", "inventory", "shipping", "notification"],
        ["--latency-ms", "150"],
        name="slow-participants",
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def test_sagas_of_a_killed_replica_finish_on_the_survivor(
    tmp_path, postgres_url, slow_participants
):
    addresses = slow_participants.info["services"]
    doomed = orchestrator_process(tmp_path, postgres_url, addresses, env=LEASE, name="doomed")
    survivor = orchestrator_process(tmp_path, postgres_url, addresses, env=LEASE, name="survivor")
    try:
        doomed.start()
        survivor.start()
        saga_ids = await start_sagas([doomed.address, survivor.address], SAGAS, "kill")
        doomed.kill()
        await check_each_effect_once(postgres_url, addresses, saga_ids, survivor.address)
    finally:
        doomed.kill()
        survivor.stop()


async def wait_for_log_after(
    process: ChildProcess, position: int, phrases: tuple[str, ...], timeout: float = 30.0
) -> str:
    """The log written after byte `position` once it holds one of `phrases` (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        written = process.log_file.read_bytes()[position:].decode(errors="replace")
        if any(phrase in written for phrase in phrases):
            return written
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"none of {phrases} in {process.name}'s log after the thaw")
        await asyncio.sleep(0.1)


async def test_a_frozen_replica_that_wakes_late_cannot_overwrite_the_new_owner(
    tmp_path, postgres_url, slow_participants
):
    addresses = slow_participants.info["services"]
    sleeper = orchestrator_process(tmp_path, postgres_url, addresses, env=LEASE, name="sleeper")
    survivor = orchestrator_process(tmp_path, postgres_url, addresses, env=LEASE, name="survivor")
    try:
        sleeper.start()
        survivor.start()
        saga_ids = await start_sagas([sleeper.address], SAGAS // 2, "freeze")
        os.kill(sleeper.pid, signal.SIGSTOP)
        async with grpc.aio.insecure_channel(survivor.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            # Every saga is taken over while the sleeper stays frozen, those whose rows a
            # write it froze in the middle of still locks included: once its leases have
            # all expired, the survivor ends its database sessions (docs/limits.md).
            await asyncio.gather(*(wait_terminal(stub, i, timeout=60) for i in saga_ids))
            thawed_at = sleeper.log_file.stat().st_size
            os.kill(sleeper.pid, signal.SIGCONT)
        # The thawed replica tries to commit its stale progress and is fenced off: wait
        # for it to say so in its log, written after the thaw.
        await wait_for_log_after(sleeper, thawed_at, ("moved on elsewhere", "lease lost"))
        assert sleeper.process.poll() is None, "a fenced replica keeps serving"
        await check_each_effect_once(postgres_url, addresses, saga_ids, survivor.address)
    finally:
        if sleeper.process is not None and sleeper.process.poll() is None:
            os.kill(sleeper.pid, signal.SIGCONT)
        sleeper.stop()
        survivor.stop()
