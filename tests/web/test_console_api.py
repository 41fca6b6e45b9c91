"""The console's HTTP API without a browser: what it answers, refuses, and streams."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.support.payloads import travel
from tests.support.starting import start_saga_blocking
from tests.web.conftest import OPERATOR_TOKEN, READER_TOKEN, terminal, wait_until
from tools.processes import ChildProcess

pytestmark = [pytest.mark.e2e]


def call(
    url: str, *, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON answer, headers) of one request; errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def finished_saga(stub: pb_grpc.SagaOrchestratorStub) -> str:
    saga_id = start_saga_blocking(stub, travel("customer-api"), f"api-{uuid.uuid4().hex[:8]}")
    wait_until(stub, saga_id, terminal)
    return saga_id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_reads_answer_as_the_grpc_api_does(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub
):
    base = console.info["console_url"]
    saga_id = finished_saga(stub)
    status, answer, headers = call(f"{base}api/sagas/{saga_id}")
    assert status == 200 and answer["saga"]["status"] == "SAGA_STATUS_COMPLETED"
    assert [step["name"] for step in answer["definition"]["steps"]][-1] == "charge_payment"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    history = stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=5)
    status, answer, _ = call(f"{base}api/sagas/{saga_id}/history")
    assert [row["seq"] for row in answer["transitions"]] == [t.seq for t in history.transitions]

    missing = str(uuid.uuid4())
    assert call(f"{base}api/sagas/{missing}")[:2] == (
        404,
        {
            "error": {
                "code": "NOT_FOUND",
                "message": f"no saga with id {missing}",
                "reason": "SAGA_NOT_FOUND",
            }
        },
    )
    status, answer, _ = call(f"{base}api/sagas/not-a-uuid")
    assert status == 400 and answer["error"]["code"] == "INVALID_ARGUMENT"
    status, answer, _ = call(f"{base}api/sagas?status=SLEEPING")
    assert status == 400 and "SLEEPING" in answer["error"]["message"]
    saga = stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=5)
    moment = saga.create_time.ToDatetime(tzinfo=UTC)
    window = {
        "created_after": moment.isoformat(),
        "created_before": (moment + timedelta(milliseconds=1)).isoformat(),
        "correlation_id": saga.correlation_id,
    }
    status, answer, _ = call(f"{base}api/sagas?{urlencode(window)}")
    assert [s["saga_id"] for s in answer["sagas"]] == [saga_id]
    window["created_after"] = (moment + timedelta(milliseconds=1)).isoformat()
    window["created_before"] = (moment + timedelta(days=1)).isoformat()
    assert call(f"{base}api/sagas?{urlencode(window)}")[1] == {"sagas": [], "next_page_token": ""}
    status, answer, _ = call(
        f"{base}api/counts?{urlencode({'correlation_id': saga.correlation_id})}"
    )
    assert answer["counts"] == {"RUNNING": 0, "COMPENSATING": 0, "COMPLETED": 1, "FAILED": 0}
    # The lock-key filter reaches ListSagas: this saga takes no locks, so it is gone.
    by_key = {"correlation_id": saga.correlation_id, "lock_key": "customer:nobody"}
    assert call(f"{base}api/sagas?{urlencode(by_key)}")[1] == {"sagas": [], "next_page_token": ""}
    status, answer, _ = call(f"{base}api/counts?{urlencode(by_key)}")
    assert answer["counts"] == {"RUNNING": 0, "COMPENSATING": 0, "COMPLETED": 0, "FAILED": 0}
    status, answer, _ = call(f"{base}api/sagas?created_after=yesterday")
    assert status == 400 and "created_after" in answer["error"]["message"]


def test_event_stream_replays_the_log_then_ends(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub
):
    base = console.info["console_url"]
    saga_id = finished_saga(stub)
    history = stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=5)
    request = urllib.request.Request(
        f"{base}api/sagas/{saga_id}/events?after_seq=1", headers={"Last-Event-Id": "2"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [block for block in text.split("\r\n\r\n") if block.strip()]
    ids = [int(line[4:]) for block in events for line in block.splitlines() if line[:4] == "id: "]
    assert ids == [t.seq for t in history.transitions][2:], "resumes after Last-Event-Id"
    assert events[-1].splitlines()[0] == "event: end"


def test_secured_console_refuses_without_credentials_and_readers_cannot_act(
    secured_console: ChildProcess, secured_stub: pb_grpc.SagaOrchestratorStub
):
    base = secured_console.info["console_url"]
    saga_id = finished_saga(secured_stub)
    assert call(f"{base}api/sagas")[0] == 401
    assert call(f"{base}api/sagas", headers=bearer("guessed"))[0] == 401
    assert call(f"{base}api/sagas", headers=bearer(READER_TOKEN))[0] == 200
    status, answer, _ = call(
        f"{base}api/sagas/{saga_id}/retry",
        body={"reason": "try again"},
        headers=bearer(READER_TOKEN),
    )
    assert (status, answer["error"]["code"]) == (403, "PERMISSION_DENIED")
    # An operator reaches the servicer, which refuses a retry of a COMPLETED saga itself.
    status, answer, _ = call(
        f"{base}api/sagas/{saga_id}/retry",
        body={"reason": "try again"},
        headers=bearer(OPERATOR_TOKEN),
    )
    assert (status, answer["error"]["code"]) == (409, "FAILED_PRECONDITION")
    status, answer, _ = call(
        f"{base}api/sagas/{saga_id}/retry",
        body={"reason": "from another site"},
        headers={**bearer(OPERATOR_TOKEN), "Origin": "http://evil.example"},
    )
    assert (status, answer["error"]["code"]) == (403, "PERMISSION_DENIED")
    history = secured_stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=5)
    assert {t.actor for t in history.transitions} == {"engine"}
