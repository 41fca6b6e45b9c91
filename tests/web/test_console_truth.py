"""The console says what a saga's state means, shows each step's reply, and dates
every time with its zone, in a real browser against a real orchestrator."""

from __future__ import annotations

import re
from typing import Any

import pytest

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import FAIL_CAR_CLASS
from tests.support.payloads import order, travel
from tests.web.conftest import XSS, terminal, wait_until
from tests.web.test_console import start
from tools.processes import ChildProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UTC_MILLIS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC$")


def test_a_stuck_saga_says_needs_intervention_and_a_clean_compensation_does_not(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any, documentation_shot
):
    compensated = wait_until(
        stub, start(stub, "travel_booking", travel(car_class=FAIL_CAR_CLASS), "clean"), terminal
    )
    assert not compensated.needs_intervention
    stuck_id = start(stub, "order_fulfillment", order(address="1 Nowhere Road"), "stuck")
    stuck = wait_until(stub, stuck_id, lambda saga: saga.needs_intervention)

    page = open_page(f"{console.info['console_url']}#/saga/{stuck.saga_id}")
    page.locator("#live.attention").wait_for()
    assert page.locator("#live").inner_text() == "needs intervention"
    assert page.locator("#saga-header .badge.stuck").inner_text() == "needs intervention"
    assert page.locator("#saga-header .badge.compensated").count() == 0

    page.goto(f"{console.info['console_url']}#/saga/{compensated.saga_id}")
    page.locator("#saga-header .badge.compensated", has_text="compensated").wait_for()
    assert page.locator("#live").inner_text() == "finished: compensated, nothing to do"
    assert page.locator("#saga-header .badge.stuck").count() == 0
    colours = page.evaluate(
        """() => [...document.querySelectorAll('#saga-header .badge')]
              .map((b) => getComputedStyle(b).borderStyle)"""
    )
    assert colours == ["dashed", "dashed"], "a clean compensation must not look like an alarm"

    page.goto(f"{console.info['console_url']}#/sagas?status=FAILED")
    stuck_row = page.locator(f"#saga-rows tr[data-saga-id='{stuck.saga_id}']")
    clean_row = page.locator(f"#saga-rows tr[data-saga-id='{compensated.saga_id}']")
    stuck_row.wait_for()
    clean_row.wait_for()
    assert "needs intervention" in stuck_row.locator(".outcome").inner_text()
    assert "compensated" in clean_row.locator(".outcome").inner_text()
    assert clean_row.locator(".failed-step").inner_text() == "rent_car"
    assert re.fullmatch(r"[\d.]+ (ms|s)|\d+ min \d+ s", clean_row.locator(".duration").inner_text())
    documentation_shot(page, "outcomes")


def test_each_step_shows_its_reply_collapsed_and_the_request_note(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any, documentation_shot
):
    saga = wait_until(
        stub, start(stub, "travel_booking", travel("customer-reply"), "reply"), terminal
    )
    flight = next(step for step in saga.steps if step.name == "book_flight")
    assert flight.HasField("reply")
    page = open_page(f"{console.info['console_url']}#/saga/{saga.saga_id}")
    details = page.locator("#exchanges details[data-step='book_flight']")
    details.wait_for()
    assert details.get_attribute("open") is None, "collapsed by default"
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    reply = details.locator("pre").inner_text()
    assert flight.reply.type_url in reply
    assert "not stored" in page.locator("#request-note").inner_text()
    documentation_shot(page, "replies", "#exchanges")


def test_a_large_input_is_cut_with_a_note(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    payload = travel("customer-large")
    payload["traveller_name"] = "x" * 6000
    saga_id = start(stub, "travel_booking", payload, "large")
    page = open_page(f"{console.info['console_url']}#/saga/{saga_id}")
    page.locator("#input .cut-note").wait_for()
    assert len(page.locator("#input-json").inner_text()) == 4096
    assert "of " in page.locator("#input .cut-note").inner_text()


def test_times_carry_their_zone_and_the_log_its_milliseconds(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    saga_id = start(stub, "travel_booking", travel("customer-zone"), "zone")
    page = open_page(f"{console.info['console_url']}#/saga/{saga_id}", timezone_id="Asia/Kolkata")
    first = page.locator("#log-rows tr td.time").first
    first.wait_for()
    assert UTC_MILLIS.match(first.inner_text()), first.inner_text()
    page.get_by_role("button", name="Times: UTC").click()
    page.get_by_role("button", name="Times: local").wait_for()
    page.wait_for_function(
        "() => document.querySelector('#log-rows tr td.time').textContent.endsWith('UTC+05:30')"
    )


def test_intervention_page_shows_correlation_id_and_failed_step_as_text(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    saga_id = start(stub, "order_fulfillment", order(address="1 Nowhere Road"), XSS)
    stuck = wait_until(stub, saga_id, lambda saga: saga.needs_intervention)
    page = open_page(f"{console.info['console_url']}#/intervention")
    row = page.locator(f"tr[data-saga-id='{stuck.saga_id}']")
    row.wait_for()
    assert row.locator(".correlation").inner_text() == stuck.correlation_id
    assert row.locator(".failed-step").inner_text() == stuck.failed_step
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0


def test_search_by_id_prefix_narrows_the_list_and_a_full_id_opens_the_saga(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    older = start(stub, "travel_booking", travel("customer-prefix"), "prefix")
    for n in range(10):
        start(stub, "travel_booking", travel(f"customer-newer-{n}"), "newer")
    saga_id = start(stub, "travel_booking", travel("customer-prefix"), "prefix")
    page = open_page(console.info["console_url"])
    page.locator(f"#saga-rows tr[data-saga-id='{saga_id}']").wait_for()
    page.get_by_label("Saga id").fill(saga_id[:6])
    page.get_by_role("button", name="Apply filters").click()
    page.locator("#prefix-note", has_text=saga_id[:6]).wait_for()
    ids = page.locator("#saga-rows tr[data-saga-id]").evaluate_all(
        "rows => rows.map((r) => r.dataset.sagaId)"
    )
    assert saga_id in ids and all(other.startswith(saga_id[:6]) for other in ids)
    # The server filters, not the page: a prefix finds a saga beyond the first page.
    page.get_by_label("Per page").select_option("10")
    page.get_by_label("Saga id").fill(older[:-2])
    page.get_by_role("button", name="Apply filters").click()
    page.locator(f"#saga-rows tr[data-saga-id='{older}']").wait_for()
    page.get_by_label("Saga id").fill(saga_id)
    page.get_by_role("button", name="Apply filters").click()
    page.locator("#full-id", has_text=saga_id).wait_for()


def test_operator_retries_every_matching_saga_after_a_dry_run_count(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any, documentation_shot
):
    stuck = [
        wait_until(
            stub,
            start(stub, "order_fulfillment", order(address="1 Nowhere Road"), "bulk"),
            lambda saga: saga.needs_intervention,
        )
        for _ in range(2)
    ]
    base = console.info["console_url"]
    page = open_page(f"{base}#/sagas?correlation_id={stuck[0].correlation_id}")
    page.get_by_role("button", name="Retry matching…").click()
    page.locator("#bulk-panel .error", has_text="correlation_id").wait_for()

    page = open_page(f"{base}#/sagas?saga_type=order_fulfillment&needs_intervention=true")
    page.get_by_role("button", name="Retry matching…").click()
    count_text = page.locator("#bulk-count").inner_text()
    count = int(count_text.split()[0])
    assert count >= 2
    confirm = page.get_by_role("button", name=f"Retry {count} sagas")
    panel = page.locator("#bulk-panel")
    panel.get_by_label("Your name (recorded as the operator)").fill("Bulk Betty")
    documentation_shot(page, "bulk", "#bulk-panel")
    confirm.click()
    reason = page.get_by_label("Reason (goes into each saga's log)")
    assert reason.evaluate("input => input.validity.valueMissing")  # the form is not sent
    assert page.locator("#bulk-progress").inner_text() == ""
    reason.fill("refund service fixed")
    confirm.click()
    page.locator("#bulk-progress", has_text=f"{count} done").wait_for()
    for saga in stuck:
        rows = stub.GetSagaHistory(
            pb.GetSagaHistoryRequest(saga_id=saga.saga_id), timeout=5
        ).transitions
        retried = [row for row in rows if row.event == pb.TRANSITION_EVENT_SAGA_RETRIED]
        assert [(row.actor, row.reason) for row in retried] == [
            ("operator:Bulk Betty", "refund service fixed")
        ]
