"""The console's bulk actions over HTTP: who may send them, what they refuse, and that
the recorded operator is the signed-in one."""

from __future__ import annotations

import uuid

import pytest

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.support.payloads import order
from tests.support.starting import start_saga_blocking
from tests.web.conftest import OPERATOR_TOKEN, READER_TOKEN, wait_until
from tests.web.test_console_api import bearer, call
from tools.processes import ChildProcess

pytestmark = [pytest.mark.e2e]

STUCK_ORDERS = {"saga_type": "order_fulfillment", "needs_intervention": "true"}


def retried_rows(stub: pb_grpc.SagaOrchestratorStub, saga_id: str) -> list[tuple[str, str]]:
    rows = stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=5).transitions
    return [
        (row.actor, row.reason) for row in rows if row.event == pb.TRANSITION_EVENT_SAGA_RETRIED
    ]


def test_bulk_retry_is_for_operators_from_this_origin_and_records_the_signed_in_name(
    secured_console: ChildProcess, secured_stub: pb_grpc.SagaOrchestratorStub
):
    saga_id = start_saga_blocking(
        secured_stub,
        order(address="1 Nowhere Road"),
        f"bulk-api-{uuid.uuid4().hex[:8]}",
        saga_type="order_fulfillment",
    )
    wait_until(secured_stub, saga_id, lambda saga: saga.needs_intervention)
    url = f"{secured_console.info['console_url']}api/bulk/retry"
    operator = bearer(OPERATOR_TOKEN)
    body = {"filter": STUCK_ORDERS, "reason": "refund service fixed", "requested_by": "mallory"}

    status, answer, _ = call(url, body=body, headers=bearer(READER_TOKEN))
    assert status == 403 and answer["error"]["code"] == "PERMISSION_DENIED"
    status, answer, _ = call(url, body=body, headers={**operator, "Origin": "https://evil.test"})
    assert status == 403 and "cross-origin" in answer["error"]["message"]
    status, answer, _ = call(
        url, body={**body, "filter": {**STUCK_ORDERS, "correlation_id": "x"}}, headers=operator
    )
    assert status == 400 and "correlation_id" in answer["error"]["message"]
    status, answer, _ = call(url, body={**body, "reason": ""}, headers=operator)
    assert status == 400 and answer["error"]["code"] == "INVALID_ARGUMENT"
    assert retried_rows(secured_stub, saga_id) == []

    status, answer, _ = call(url, body={"filter": STUCK_ORDERS, "dry_run": True}, headers=operator)
    assert status == 200 and int(answer["matched_count"]) >= 1
    assert saga_id in answer["saga_ids"] and answer["results"] == []
    assert retried_rows(secured_stub, saga_id) == []

    token = ""
    changed: list[str] = []
    while True:
        status, answer, _ = call(url, body={**body, "page_token": token}, headers=operator)
        assert status == 200, answer
        changed += [result["saga_id"] for result in answer["results"]]
        token = answer["next_page_token"]
        if not token:
            break
    assert saga_id in changed
    assert retried_rows(secured_stub, saga_id) == [("operator:olga", "refund service fixed")]
