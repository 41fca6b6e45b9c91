"""The demo's lock scenario: two orders for the last unit of a SKU, started at the same
moment, run one after the other; the second finds the stock gone and compensates."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from saga.participants.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools.processes import ChildProcess, orchestrator_process, participants_process

SKU = "sku-3"
LOCK_EVENTS = {
    pb.TRANSITION_EVENT_LOCKS_WAITING,
    pb.TRANSITION_EVENT_LOCKS_ACQUIRED,
    pb.TRANSITION_EVENT_LOCKS_RELEASED,
}


def _order(number: int) -> struct_pb2.Struct:
    payload = struct_pb2.Struct()
    payload.update(
        {
            "order_id": f"last-unit-{number}",
            "customer_id": f"customer-{number}",
            "items": [{"sku": SKU, "quantity": 1}],
            "shipping_address": "1 Main St, Springfield",
            "amount": {"currency_code": "EUR", "amount_minor": 2_500},
        }
    )
    return payload


Settle = Callable[[str, list[str]], dict[str, pb.Saga]]


def lock_scenario(workdir: Path, database_url: str, settle: Settle) -> list[str]:
    """Run the scenario with its own participants (one unit of each SKU); return problems.
    `settle` follows sagas until they end (the demo's own)."""
    print(f"\nLock scenario: two orders for the last unit of {SKU}, started at the same moment")
    home = workdir / "locks"
    participants = participants_process(
        home, ["inventory", "payment"], ["--capacity", "1", "--latency-ms", "300"], "orders-3"
    )
    orchestrator: ChildProcess | None = None
    try:
        addresses = participants.start().info["services"]
        orchestrator = orchestrator_process(
            home,
            database_url,
            addresses,
            env={"SAGA_DEFINITIONS": "orchestrator.examples.lock_demo"},
            name="orchestrator-3",
        ).start()
        with grpc.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)

            def start(number: int) -> str:
                request = pb.StartSagaRequest(
                    saga_type="last_unit_order",
                    correlation_id=f"last-unit-{number}",
                    payload=_order(number),
                )
                return str(stub.StartSaga(request, timeout=10).saga_id)

            with ThreadPoolExecutor(2) as pool:
                saga_ids = list(pool.map(start, (1, 2)))
            done = settle(orchestrator.address, saga_ids)
            histories = {
                i: stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=i), timeout=10).transitions
                for i in saga_ids
            }
            for saga_id in saga_ids:
                saga = done[saga_id]
                status = pb.SagaStatus.Name(saga.status).removeprefix("SAGA_STATUS_")
                print(f"  {saga.correlation_id} ({saga_id[-8:]}): {status} {saga.failure_reason}")
                for t in histories[saga_id]:
                    if t.event in LOCK_EVENTS or t.step:
                        event = pb.TransitionEvent.Name(t.event).removeprefix("TRANSITION_EVENT_")
                        when = t.time.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
                        print(f"    {when} {event} {t.step} {t.reason}".rstrip())
        with grpc.insecure_channel(addresses["inventory"]) as channel:
            stock = inventory_pb2_grpc.InventoryServiceStub(channel).GetInventoryStock(
                inventory_pb2.GetInventoryStockRequest(), timeout=10
            )
        left = {s.sku: s.available for s in stock.stock}[SKU]
        print(f"  {SKU}: {left} unit(s) left, {len(stock.reservations)} reservation(s) ever made")
        return _problems([done[i] for i in saga_ids], histories, left, len(stock.reservations))
    finally:
        for process in (orchestrator, participants):
            if process is not None:
                process.stop()


def _problems(
    sagas: list[pb.Saga],
    histories: Mapping[str, Sequence[pb.Transition]],
    left: int,
    reservations: int,
) -> list[str]:
    outcomes = sorted(s.status for s in sagas)
    if outcomes != [pb.SAGA_STATUS_COMPLETED, pb.SAGA_STATUS_FAILED]:
        return ["one order should complete and the other fail"]
    winner, loser = sorted(sagas, key=lambda s: s.status)
    problems = []
    if loser.needs_intervention:
        problems.append("the second order should compensate without an operator")
    released = [
        t.time.ToDatetime()
        for t in histories[winner.saga_id]
        if t.event == pb.TRANSITION_EVENT_LOCKS_RELEASED
    ]
    acquired = [
        t.time.ToDatetime()
        for t in histories[loser.saga_id]
        if t.event == pb.TRANSITION_EVENT_LOCKS_ACQUIRED
    ]
    if not released or not acquired or acquired[0] < released[0]:
        problems.append("the second order should take the SKU's lock after the first released it")
    if left != 0 or reservations != 1:
        problems.append("exactly one reservation should hold the last unit")
    return problems
