"""The console's Tasks page: steps waiting for a person (expensive_trip's approval),
completed or rejected from the page by an operator or an approver, the decider named
in the saga's log; others see no buttons and the server refuses them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.support.payloads import travel
from tests.support.starting import start_saga_blocking
from tests.web.conftest import APPROVER_TOKEN, READER_TOKEN, XSS, terminal, wait_until
from tests.web.test_console import sign_in
from tests.web.test_console_api import bearer, call
from tools.processes import ChildProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEP = "approve_booking"


def waiting_trip(stub: pb_grpc.SagaOrchestratorStub, tag: str) -> pb.Saga:
    """An expensive trip booked and waiting at its approval (its correlation id carries
    markup, which the page must show as text)."""
    correlation_id = f"{tag}-{uuid.uuid4().hex[:8]}{XSS}"
    saga_id = start_saga_blocking(stub, travel(), correlation_id, saga_type="expensive_trip")

    def waiting(saga: pb.Saga) -> bool:
        return any(s.name == STEP and s.status == pb.STEP_STATUS_WAITING for s in saga.steps)

    return wait_until(stub, saga_id, lambda saga: waiting(saga) or terminal(saga))


def decide(page: Any, saga: pb.Saga, decision: str, name: str | None, reason: str) -> None:
    row = page.locator(f"tr[data-saga-id='{saga.saga_id}']")
    row.wait_for()
    label = f"{decision.title()} step {STEP} of saga {saga.saga_id}"
    row.get_by_role("button", name=label).click()
    dialog = page.get_by_role("dialog")
    if name is not None:
        dialog.get_by_label("Your name (recorded as the operator)").fill(name)
    dialog.get_by_role("button", name="Confirm").click()
    assert dialog.is_visible(), "the reason is required"
    dialog.get_by_label("Reason (goes into the saga's log)").fill(reason)
    dialog.get_by_role("button", name="Confirm").click()
    dialog.wait_for(state="hidden")


def deciders(stub: pb_grpc.SagaOrchestratorStub, saga_id: str) -> set[tuple[str, str]]:
    history = stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=5)
    return {(row.actor, row.reason) for row in history.transitions if row.actor != "engine"}


def test_waiting_tasks_are_listed_and_completed_or_rejected_from_the_page(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any, documentation_shot
):
    approved, rejected = waiting_trip(stub, "approve"), waiting_trip(stub, "reject")
    page = open_page(f"{console.info['console_url']}#/tasks")
    row = page.locator(f"tr[data-saga-id='{approved.saga_id}']")
    row.wait_for()
    assert row.locator(".task-step").inner_text() == STEP
    assert row.locator(".correlation").inner_text() == approved.correlation_id
    assert page.evaluate("window.__xss") is None
    documentation_shot(page, "tasks")

    decide(page, approved, "complete", "Maria Manager", "within the travel budget")
    decide(page, rejected, "reject", "Maria Manager", "over budget")
    page.locator(f"tr[data-saga-id='{approved.saga_id}']").wait_for(state="detached")

    done = wait_until(stub, approved.saga_id, terminal)
    assert done.status == pb.SAGA_STATUS_COMPLETED
    assert deciders(stub, approved.saga_id) == {
        ("approver:Maria Manager", "within the travel budget")
    }
    undone = wait_until(stub, rejected.saga_id, terminal)
    assert undone.status == pb.SAGA_STATUS_FAILED
    assert "rejected by approver:Maria Manager: over budget" in undone.failure_reason
    assert deciders(stub, rejected.saga_id) == {("approver:Maria Manager", "over budget")}
    steps = {s.name: s.status for s in undone.steps}
    assert steps["book_flight"] == pb.STEP_STATUS_COMPENSATED


def test_an_approver_decides_under_the_signed_in_name_and_reads_no_sagas(
    secured_console: ChildProcess, secured_stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    trip = waiting_trip(secured_stub, "april")
    page = open_page(secured_console.info["console_url"])
    sign_in(page, APPROVER_TOKEN)
    page.locator("#tasks-title").wait_for()  # an approver lands on the Tasks page
    decide(page, trip, "complete", None, "approved on the phone")
    assert wait_until(secured_stub, trip.saga_id, terminal).status == pb.SAGA_STATUS_COMPLETED
    assert deciders(secured_stub, trip.saga_id) == {("approver:april", "approved on the phone")}
    status = page.evaluate("async () => (await fetch('/api/sagas')).status")
    assert status == 403


def test_a_reader_cannot_decide_a_task(
    secured_console: ChildProcess, secured_stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    trip = waiting_trip(secured_stub, "rudi")
    page = open_page(secured_console.info["console_url"])
    sign_in(page, READER_TOKEN)
    answer = page.evaluate(
        """async ([sagaId, step]) => {
            const response = await fetch(`/api/tasks/${sagaId}/${step}/complete`, {
                method: "POST", headers: {"Content-Type": "application/json"},
                body: JSON.stringify({reason: "I am only a reader"})});
            return [response.status, await response.json()];
        }""",
        [trip.saga_id, STEP],
    )
    assert answer[0] == 403 and answer[1]["error"]["code"] == "PERMISSION_DENIED"
    after = secured_stub.GetSaga(pb.GetSagaRequest(saga_id=trip.saga_id), timeout=5)
    assert after.update_time == trip.update_time


def test_task_decisions_are_refused_from_another_origin_without_a_reason_and_twice(
    secured_console: ChildProcess, secured_stub: pb_grpc.SagaOrchestratorStub
):
    trip = waiting_trip(secured_stub, "api")
    url = f"{secured_console.info['console_url']}api/tasks/{trip.saga_id}/{STEP}"
    approver = bearer(APPROVER_TOKEN)
    refusals = [
        ("complete", {"reason": "ok"}, {**approver, "Origin": "http://evil.example"}, 403),
        ("complete", {"reason": " "}, approver, 400),
        ("complete", {"reason": "ok", "result_json": '{"nope": 1}'}, approver, 400),
        ("reject", {"reason": "ok"}, bearer(READER_TOKEN), 403),
    ]
    for decision, body, headers, expected in refusals:
        status, answer, _ = call(f"{url}/{decision}", body=body, headers=headers)
        assert status == expected, (decision, body, answer)
    unknown = call(
        f"{secured_console.info['console_url']}api/tasks/{trip.saga_id}/no_such_step/reject",
        body={"reason": "ok"},
        headers=approver,
    )
    assert unknown[0] in (400, 404)
    after = secured_stub.GetSaga(pb.GetSagaRequest(saga_id=trip.saga_id), timeout=5)
    assert after.update_time == trip.update_time, "nothing was written"

    assert call(f"{url}/reject", body={"reason": "no"}, headers=approver)[0] == 200
    status, answer, _ = call(f"{url}/complete", body={"reason": "yes"}, headers=approver)
    assert (status, answer["error"]["code"]) == (409, "FAILED_PRECONDITION")
    listed = call(f"{secured_console.info['console_url']}api/tasks", headers=approver)[1]
    assert trip.saga_id not in {task["saga_id"] for task in listed["tasks"]}
