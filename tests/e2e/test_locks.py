"""Semantic locks end to end: orchestrator replicas and participants as processes.

Whether two sagas interleaved is read from the participants' own records: each
flight booking and hotel reservation row carries the participant's create_time, and
a locked trip's interval runs from its flight booking to its hotel reservation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import grpc
import pytest

from orchestrator.core.records import SagaFilter, TransitionEvent
from orchestrator.store import Store, open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_cli import saga_cli
from tests.support.payloads import travel
from tests.support.starting import start_saga_at
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCK_ENV = {"SAGA_DEFINITIONS": "tests.support.lock_sagas", "SAGA_LEASE_SECONDS": "1"}


@pytest.fixture
def trip_participants(tmp_path: Path, request: pytest.FixtureRequest):
    latency = getattr(request, "param", 40)
    process = participants_process(
        tmp_path,
        ["flight", "hotel"],
        ["--latency-ms", str(latency), "--capacity", "1000"],
        name="trip-participants",
    )
    try:
        yield process.start()
    finally:
        process.stop()


def replica(tmp_path: Path, url: str, participants: ChildProcess, name: str) -> ChildProcess:
    addresses = participants.info["services"]
    return orchestrator_process(tmp_path, url, addresses, env=LOCK_ENV, name=name)


async def start(address: str, saga_type: str, customer: str, n: int) -> str:
    return await start_saga_at(
        address,
        travel(customer),
        f"{customer}-{n}",
        saga_type=saga_type,
        idempotency_key=f"{saga_type}-{customer}-{n}",
    )


async def finish_all(address: str, saga_ids: list[str], timeout: float) -> list[pb.Saga]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        return await asyncio.gather(*(wait_terminal(stub, i, timeout) for i in saga_ids))


async def stopped_driving(process: ChildProcess, saga_ids: set[str], timeout: float) -> None:
    """Until `process` has logged, for each of `saga_ids`, that it stopped driving the
    saga (it was taken over); bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        stopped = set()
        for line in process.log_file.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if str(entry.get("message", "")).endswith("stop driving"):
                stopped.add(entry.get("saga_id"))
        if saga_ids <= stopped:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{process.name} did not stop driving {sorted(saga_ids - stopped)} "
                f"in {timeout:.0f}s:\n{process.log_tail()}"
            )
        await asyncio.sleep(0.1)


def intervals(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Per saga: (its flight booking's create_time, its hotel reservation's create_time),
    as the participants recorded them."""
    state = tmp_path / "participants"
    found: dict[str, list[str]] = defaultdict(list)
    for service, table in (("flight", "bookings"), ("hotel", "reservations")):
        with sqlite3.connect(state / f"{service}.sqlite3") as db:
            for saga_id, created in db.execute(f"SELECT saga_id, create_time FROM {table}"):
                found[saga_id].append(created)
    return {saga: (min(times), max(times)) for saga, times in found.items() if len(times) == 2}


def assert_one_at_a_time(spans: list[tuple[str, str]]) -> None:
    ordered = sorted(spans)
    for before, after in itertools.pairwise(ordered):
        assert before[1] < after[0], f"two holders of one key overlapped: {before} {after}"


async def opened(url: str) -> Store:
    store = open_store(url)
    await store.open()
    return store


async def tickets(store: Store, saga_ids: list[str]) -> dict[str, int]:
    """The queue ticket each saga drew when it first queued (from its log)."""
    found = {}
    for saga_id in saga_ids:
        for t in await store.get_transitions(saga_id):
            if t.event is TransitionEvent.LOCKS_WAITING:
                found[saga_id] = int(t.reason.split(":")[0].removeprefix("ticket "))
    return found


async def wait_for_event(store: Store, saga_id: str, event: TransitionEvent) -> None:
    for _ in range(200):
        if any(t.event is event for t in await store.get_transitions(saga_id)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"saga {saga_id} never logged {event}")


@pytest.mark.postgres
async def test_fifty_sagas_on_one_key_over_two_replicas_run_one_at_a_time_first_come_first_served(
    tmp_path, postgres_url, trip_participants
):
    replicas = [replica(tmp_path, postgres_url, trip_participants, f"r{i}") for i in range(2)]
    store = await opened(postgres_url)
    try:
        for r in replicas:
            r.start()
        addresses = [r.address for r in replicas]
        saga_ids = await asyncio.gather(
            *(start(addresses[n % 2], "locked_trip", "hot", n) for n in range(50))
        )
        sagas = await finish_all(addresses[0], list(saga_ids), timeout=120)
        assert all(s.status == pb.SAGA_STATUS_COMPLETED for s in sagas)
        spans = intervals(tmp_path)
        assert set(spans) == set(saga_ids)
        assert_one_at_a_time(list(spans.values()))
        queued = await tickets(store, list(saga_ids))
        assert len(queued) >= 40, "most of the sagas started at once had to queue"
        by_ticket = sorted(queued, key=queued.__getitem__)
        by_run = sorted(queued, key=lambda saga_id: spans[saga_id][0])
        assert by_run == by_ticket, "the queue was not served in ticket order"
        assert await store.list_sagas(SagaFilter(lock_key="cust:hot"), limit=100) == []
    finally:
        await store.close()
        for r in replicas:
            r.stop()


@pytest.mark.postgres
async def test_overlapping_keys_named_in_different_orders_never_deadlock(
    tmp_path, postgres_url, trip_participants
):
    customers = ["a+b", "b+a", "b+c", "c+b", "c+a", "a+c", "a+b+c", "c+b+a", "a", "b", "c"]
    replicas = [replica(tmp_path, postgres_url, trip_participants, f"r{i}") for i in range(2)]
    try:
        for r in replicas:
            r.start()
        addresses = [r.address for r in replicas]
        started = [(customers[n % len(customers)], n) for n in range(33)]
        saga_ids = await asyncio.gather(
            *(start(addresses[n % 2], "locked_trip", c, n) for c, n in started)
        )
        sagas = await finish_all(addresses[1], list(saga_ids), timeout=120)
        assert all(s.status == pb.SAGA_STATUS_COMPLETED for s in sagas)
        spans = intervals(tmp_path)
        for key in "abc":
            holders = [
                spans[saga_id]
                for saga_id, (customer, _) in zip(saga_ids, started, strict=True)
                if key in customer.split("+")
            ]
            assert_one_at_a_time(holders)
    finally:
        for r in replicas:
            r.stop()


@pytest.mark.parametrize("trip_participants", [400], indirect=True)
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_under_the_reject_policy_a_second_saga_is_aborted_naming_key_and_holder(
    tmp_path, trip_participants, backend, request
):
    url = (
        f"sqlite:///{tmp_path / 'sagas.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    process = replica(tmp_path, url, trip_participants, "orchestrator").start()
    try:
        holder = await start(process.address, "exclusive_trip", "zed", 1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await start(process.address, "exclusive_trip", "zed", 2)
        assert refused.value.code() == grpc.StatusCode.ABORTED
        assert "cust:zed" in refused.value.details() and holder in refused.value.details()
        # The same request again is its own holder's repeat, not a conflict.
        assert await start(process.address, "exclusive_trip", "zed", 1) == holder
        (done,) = await finish_all(process.address, [holder], timeout=30)
        assert done.status == pb.SAGA_STATUS_COMPLETED
        async with grpc.aio.insecure_channel(process.address) as channel:
            listed = await pb_grpc.SagaOrchestratorStub(channel).ListSagas(
                pb.ListSagasRequest(correlation_id="zed-2"), timeout=5
            )
        assert list(listed.sagas) == [], "a refused saga is not stored"
    finally:
        process.stop()


@pytest.mark.parametrize("trip_participants", [700], indirect=True)
async def test_past_its_maximum_wait_a_waiter_fails_having_run_no_step_and_holding_nothing(
    tmp_path, trip_participants
):
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    process = replica(tmp_path, url, trip_participants, "orchestrator").start()
    store = None
    try:
        holder = await start(process.address, "locked_trip", "slow", 1)
        waiter = await start(process.address, "hasty_trip", "slow", 2)
        holder_done, waiter_done = await finish_all(process.address, [holder, waiter], 30)
        assert waiter_done.status == pb.SAGA_STATUS_FAILED
        assert "gave up waiting for lock key(s) cust:slow" in waiter_done.failure_reason
        assert holder_done.status == pb.SAGA_STATUS_COMPLETED
        assert waiter not in intervals(tmp_path) and holder in intervals(tmp_path)
        store = await opened(url)
        log = [t.event for t in await store.get_transitions(waiter)]
        assert TransitionEvent.STEP_STARTED not in log
        assert log[-1] is TransitionEvent.LOCKS_RELEASED
        assert await store.lock_holdings(waiter) == []
        assert await store.lock_holdings(holder) == []
    finally:
        if store is not None:
            await store.close()
        process.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("trip_participants", [1500], indirect=True)
async def test_when_the_holders_replica_is_killed_the_holder_finishes_elsewhere_then_the_next(
    tmp_path, postgres_url, trip_participants
):
    doomed = replica(tmp_path, postgres_url, trip_participants, "doomed")
    survivor = replica(tmp_path, postgres_url, trip_participants, "survivor")
    store = await opened(postgres_url)
    try:
        doomed.start()
        survivor.start()
        holder = await start(doomed.address, "locked_trip", "k", 1)
        await wait_for_event(store, holder, TransitionEvent.LOCKS_ACQUIRED)
        waiter = await start(survivor.address, "locked_trip", "k", 2)
        await wait_for_event(store, waiter, TransitionEvent.LOCKS_WAITING)
        doomed.kill()
        sagas = await finish_all(survivor.address, [holder, waiter], timeout=60)
        assert [s.status for s in sagas] == [pb.SAGA_STATUS_COMPLETED] * 2
        spans = intervals(tmp_path)
        assert_one_at_a_time([spans[holder], spans[waiter]])
        assert spans[holder] < spans[waiter]
    finally:
        await store.close()
        doomed.kill()
        survivor.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("trip_participants", [1500], indirect=True)
async def test_a_frozen_holder_replica_cannot_release_or_take_after_a_takeover(
    tmp_path, postgres_url, trip_participants
):
    sleeper = replica(tmp_path, postgres_url, trip_participants, "sleeper")
    survivor = replica(tmp_path, postgres_url, trip_participants, "survivor")
    store = await opened(postgres_url)
    try:
        sleeper.start()
        survivor.start()
        holder = await start(sleeper.address, "locked_trip", "f", 1)
        waiting_there = await start(sleeper.address, "locked_trip", "f", 2)
        await wait_for_event(store, waiting_there, TransitionEvent.LOCKS_WAITING)
        os.kill(sleeper.pid, signal.SIGSTOP)
        late = await start(survivor.address, "locked_trip", "f", 3)
        sagas = await finish_all(survivor.address, [holder, waiting_there, late], timeout=60)
        assert [s.status for s in sagas] == [pb.SAGA_STATUS_COMPLETED] * 3
        os.kill(sleeper.pid, signal.SIGCONT)
        # The thawed replica finds both sagas taken over (a stale commit or take, or
        # a lease it cannot renew) and stops driving them, still serving.
        await stopped_driving(sleeper, {holder, waiting_there}, timeout=30)
        assert sleeper.process is not None and sleeper.process.poll() is None
        spans = intervals(tmp_path)
        assert_one_at_a_time([spans[holder], spans[waiting_there], spans[late]])
        for saga_id in (holder, waiting_there, late):
            log = [t.event for t in await store.get_transitions(saga_id)]
            assert log.count(TransitionEvent.LOCKS_ACQUIRED) == 1
            assert log.count(TransitionEvent.LOCKS_RELEASED) == 1
            assert await store.lock_holdings(saga_id) == []
    finally:
        await store.close()
        if sleeper.process is not None and sleeper.process.poll() is None:
            os.kill(sleeper.pid, signal.SIGCONT)
        sleeper.stop()
        survivor.stop()


# Each step takes 8 s, so the holder still runs when the lock is broken even on a loaded
# machine (two CLI processes start before the break).
@pytest.mark.parametrize("trip_participants", [8000], indirect=True)
async def test_operators_see_holders_and_queues_and_can_break_a_lock_with_a_reason(
    tmp_path, trip_participants
):
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    process = replica(tmp_path, url, trip_participants, "orchestrator").start()
    try:
        holder = await start(process.address, "locked_trip", "ops", 1)
        waiter = await start(process.address, "locked_trip", "ops", 2)
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            for _ in range(100):
                seen = await stub.GetSaga(pb.GetSagaRequest(saga_id=waiter), timeout=5)
                if seen.locks:
                    break
                await asyncio.sleep(0.05)
            assert [(x.key, x.held, x.queue_position) for x in seen.locks] == [
                ("cust:ops", False, 1)
            ]
            assert seen.HasField("lock_wait_time")
            held = await stub.GetSaga(pb.GetSagaRequest(saga_id=holder), timeout=5)
            assert [(x.key, x.held, x.queue_position) for x in held.locks] == [
                ("cust:ops", True, 0)
            ]
            listed = await stub.ListSagas(pb.ListSagasRequest(lock_key="cust:ops"), timeout=5)
            assert {s.saga_id for s in listed.sagas} == {holder, waiter}

            shown = saga_cli("get", waiter, "--address", process.address)
            assert "cust:ops queued #1" in shown.stdout, shown.stdout + shown.stderr

            with pytest.raises(grpc.aio.AioRpcError) as no_reason:
                await stub.BreakLock(
                    pb.BreakLockRequest(saga_id=holder, requested_by="ops"), timeout=5
                )
            assert no_reason.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            broken = saga_cli(
                "break-lock",
                holder,
                "--reason",
                "holder wedged",
                "--by",
                "ops",
                "--address",
                process.address,
            )
            assert broken.returncode == 0, broken.stderr
            listing = saga_cli(
                "list", "--lock-key", "cust:ops", "--wide", "--address", process.address
            )
            assert waiter in listing.stdout and holder not in listing.stdout
            sagas = await finish_all(process.address, [holder, waiter], 90)
            assert [s.status for s in sagas] == [pb.SAGA_STATUS_COMPLETED] * 2
            history = await stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=holder), timeout=5)
            (row,) = [t for t in history.transitions if t.event == pb.TRANSITION_EVENT_LOCK_BROKEN]
            assert (row.actor, row.reason) == ("operator:ops", "holder wedged")
        spans = intervals(tmp_path)
        # Without its lock the waiter no longer waited for the holder to finish.
        assert spans[waiter][0] < spans[holder][1]
    finally:
        process.stop()
