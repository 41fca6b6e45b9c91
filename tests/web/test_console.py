"""The web console in a real browser, against a real orchestrator and participants.

Each test starts its own sagas (unique correlation ids) through gRPC, then looks at
them through the console as an operator would.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import FAIL_CAR_CLASS, MAX_CHARGE_MINOR
from tests.support.payloads import order, travel
from tests.support.starting import start_saga_blocking
from tests.web.conftest import (
    OPERATOR_TOKEN,
    READER_TOKEN,
    XSS,
    terminal,
    wait_until,
)
from tools.processes import ChildProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def start(
    stub: pb_grpc.SagaOrchestratorStub, saga_type: str, payload: dict[str, Any], tag: str
) -> str:
    return start_saga_blocking(stub, payload, f"{tag}-{uuid.uuid4().hex[:8]}", saga_type=saga_type)


def start_stuck_order(stub: pb_grpc.SagaOrchestratorStub) -> pb.Saga:
    """An order that cannot ship and whose refund always fails: it waits for an operator."""
    saga_id = start(stub, "order_fulfillment", order(address="1 Nowhere Road"), "stuck")
    return wait_until(stub, saga_id, lambda saga: saga.needs_intervention)


def bar_starts(page: Any, kind: str) -> dict[str, float]:
    """The left edge, on screen, of each step's first bar of `kind` in the timeline."""
    starts: dict[str, float] = {}
    for bar in page.locator(f"svg.timeline rect.bar[data-kind='{kind}']").all():
        step = bar.get_attribute("data-step")
        box = bar.bounding_box()
        assert box is not None
        starts.setdefault(step, box["x"])
    return starts


def log_rows(page: Any) -> list[str]:
    return page.locator("#log-rows tr").all_inner_texts()


def test_failed_saga_shows_its_compensations_in_reverse_order_on_the_timeline(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any, documentation_shot
):
    finished = [
        start(stub, "travel_booking", travel(f"customer-{n}"), "trip") for n in range(3)
    ] + [
        start(stub, "travel_booking", travel(car_class=FAIL_CAR_CLASS), "trip"),
        start(stub, "travel_booking", travel(amount_minor=MAX_CHARGE_MINOR + 1), "trip"),
    ]
    over_limit = finished[-1]
    for saga_id in finished:
        wait_until(stub, saga_id, terminal)

    page = open_page(console.info["console_url"])
    page.locator("#saga-rows tr[data-saga-id]").first.wait_for()
    documentation_shot(page, "list")
    page.get_by_label("Status", exact=True).select_option("FAILED")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"status=FAILED"))
    # The unfiltered list stays on screen until the filtered page arrives: wait for
    # the page whose rows are all FAILED (it never comes if the filter is ignored).
    page.wait_for_function(
        """() => {
          const rows = [...document.querySelectorAll("#saga-rows tr[data-saga-id]")];
          return rows.length >= 2 && rows.every((r) => r.querySelector(".badge.status-FAILED"));
        }""",
        timeout=20_000,
    )
    row = page.locator(f"#saga-rows tr[data-saga-id='{over_limit}']")
    row.wait_for()
    assert "FAILED: " in page.locator(".chip[data-status='FAILED']").get_attribute("aria-label")

    row.get_by_role("link").click()
    page.locator("svg.timeline rect.bar[data-kind='compensation']").first.wait_for()
    assert "charge_payment" in page.locator("#outcome").inner_text()
    undone = bar_starts(page, "compensation")
    assert set(undone) == {"book_flight", "book_hotel", "rent_car"}
    # Stored order is flight, hotel, car: compensation runs car, hotel, flight.
    assert undone["rent_car"] < undone["book_hotel"] < undone["book_flight"]
    actions = bar_starts(page, "action")
    assert set(actions) == {"book_flight", "book_hotel", "rent_car", "charge_payment"}
    assert max(actions.values()) < min(undone.values())
    assert page.locator("#diagram g.node[data-step='rent_car']").get_attribute("data-state") == (
        "COMPENSATED"
    )
    documentation_shot(page, "timeline", "#timeline")
    documentation_shot(page, "saga")


def test_full_id_is_copied_from_the_list(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    saga_id = start(stub, "travel_booking", travel("customer-copy"), "copy")
    page = open_page(console.info["console_url"], permissions=["clipboard-read", "clipboard-write"])
    row = page.locator(f"#saga-rows tr[data-saga-id='{saga_id}']")
    assert row.get_by_role("link").inner_text() == saga_id[-8:]
    row.get_by_role("button", name=f"Copy full id {saga_id}").click()
    assert page.evaluate("navigator.clipboard.readText()") == saga_id


def test_a_running_saga_updates_live_without_a_reload(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    saga_id = start(stub, "travel_booking", travel("customer-live"), "live")
    page = open_page(f"{console.info['console_url']}#/saga/{saga_id}")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.locator("#live.on").wait_for()
    assert page.locator("#saga-header .badge.status-RUNNING").count() == 1
    seen_at_load = len(log_rows(page))

    page.locator("#saga-header .badge.status-COMPLETED").wait_for(timeout=30_000)
    page.locator("#live.off").wait_for()
    assert len(log_rows(page)) > seen_at_load
    assert any("SAGA_COMPLETED" in row for row in log_rows(page))
    assert page.locator("#steps tr[data-step='charge_payment'] .step-status").inner_text() == (
        "COMPLETED"
    )
    assert navigations == [], "the page reloaded or navigated"
    history = stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=5)
    assert len(log_rows(page)) == len(history.transitions)


def resolve_from_the_page(page: Any, saga: pb.Saga, name: str | None) -> None:
    row = page.locator(f"tr[data-saga-id='{saga.saga_id}']")
    assert row.locator(".stuck-step").inner_text() == "charge_payment"
    row.get_by_role("button", name=f"Resolve step charge_payment of saga {saga.saga_id}").click()
    dialog = page.get_by_role("dialog")
    if name is None:
        assert not dialog.get_by_label("Your name (recorded as the operator)").is_visible()
    else:
        dialog.get_by_label("Your name (recorded as the operator)").fill(name)
    dialog.get_by_role("button", name="Confirm").click()
    assert dialog.get_by_role("alert").inner_text() == ""  # the reason is required
    assert dialog.is_visible()
    dialog.get_by_label("Reason (goes into the saga's log)").fill("refunded by bank transfer")
    dialog.get_by_role("button", name="Confirm").click()
    dialog.wait_for(state="hidden")


def test_operator_resolves_a_stuck_saga_from_the_page(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any, documentation_shot
):
    stuck = start_stuck_order(stub)
    page = open_page(f"{console.info['console_url']}#/intervention")
    page.locator(f"tr[data-saga-id='{stuck.saga_id}']").wait_for()
    row = page.locator(f"tr[data-saga-id='{stuck.saga_id}']").inner_text()
    assert "COMPENSATION_FAILED" in row and "compensate (every delivery)" in row
    documentation_shot(page, "intervention")
    resolve_from_the_page(page, stuck, "Rita Resolver")

    page.goto(f"{console.info['console_url']}#/saga/{stuck.saga_id}")
    resolved = page.locator("#log-rows tr", has_text="STEP_RESOLVED")
    resolved.wait_for()
    assert "operator:Rita Resolver" in resolved.inner_text()
    assert "refunded by bank transfer" in resolved.inner_text()
    page.locator("#saga-header .badge.status-FAILED").wait_for()
    assert page.locator("#saga-header .badge.stuck").count() == 0
    # The refund's three attempts: two retried, the last failed; then the operator's mark.
    refunds = page.locator(
        "svg.timeline rect.bar[data-kind='compensation'][data-step='charge_payment']"
    )
    assert refunds.evaluate_all(
        "bars => bars.map(b => [b.dataset.attempt, b.dataset.outcome])"
    ) == [
        ["1", "retry"],
        ["2", "retry"],
        ["3", "failed"],
    ]
    marks = page.locator("svg.timeline path.mark title").all_text_contents()
    assert "resolved by operator:Rita Resolver" in marks


def sign_in(page: Any, token: str) -> None:
    page.get_by_label("Console token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#whoami").wait_for()


def test_a_signed_in_operator_acts_under_the_authenticated_name(
    secured_console: ChildProcess, secured_stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    stuck = start_stuck_order(secured_stub)
    page = open_page(secured_console.info["console_url"])
    sign_in(page, OPERATOR_TOKEN)
    assert page.locator("#whoami").inner_text() == "Signed in as olga (operator, reader)"
    page.goto(f"{secured_console.info['console_url']}#/intervention")
    page.locator(f"tr[data-saga-id='{stuck.saga_id}']").wait_for()
    resolve_from_the_page(page, stuck, None)
    history = secured_stub.GetSagaHistory(
        pb.GetSagaHistoryRequest(saga_id=stuck.saga_id), timeout=5
    )
    actors = {row.actor for row in history.transitions if row.actor != "engine"}
    assert actors == {"operator:olga"}


def test_a_reader_sees_no_actions_and_the_server_refuses_them(
    secured_console: ChildProcess, secured_stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    stuck = start_stuck_order(secured_stub)
    url = secured_console.info["console_url"]
    page = open_page(url)
    page.get_by_label("Console token").wait_for()
    assert page.locator("#saga-rows").count() == 0, "nothing is shown before signing in"
    sign_in(page, READER_TOKEN)
    page.goto(f"{url}#/intervention")
    page.locator(f"tr[data-saga-id='{stuck.saga_id}']").wait_for()
    assert page.locator("[data-action]").count() == 0
    page.goto(f"{url}#/saga/{stuck.saga_id}")
    page.locator("#timeline").wait_for()
    assert page.locator("[data-action]").count() == 0

    answer = page.evaluate(
        """async (sagaId) => {
            const response = await fetch(`/api/sagas/${sagaId}/resolve`, {
                method: "POST", headers: {"Content-Type": "application/json"},
                body: JSON.stringify({step: "charge_payment", reason: "I am only a reader"})});
            return [response.status, await response.json()];
        }""",
        stuck.saga_id,
    )
    assert answer[0] == 403 and answer[1]["error"]["code"] == "PERMISSION_DENIED"
    after = secured_stub.GetSaga(pb.GetSagaRequest(saga_id=stuck.saga_id), timeout=5)
    assert after.needs_intervention and after.update_time == stuck.update_time


def test_payload_and_participant_error_render_as_text(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    payload = travel(XSS)
    payload["traveller_name"] = XSS
    saga_id = start(stub, "travel_booking", payload, "xss")
    saga = wait_until(stub, saga_id, terminal)
    assert XSS in saga.failure_reason, "the participant's error should quote the payload"

    for route in (f"#/saga/{saga_id}", f"#/sagas?correlation_id={saga.correlation_id}"):
        page = open_page(f"{console.info['console_url']}{route}")
        page.locator(f"text={XSS}").first.wait_for()
        assert page.evaluate("window.__xss") is None
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 1  # the console's own
    page = open_page(f"{console.info['console_url']}#/saga/{saga_id}")
    page.locator("#input pre").wait_for()
    assert json.dumps(XSS) in page.locator("#input pre").inner_text()  # as JSON, quotes escaped
    assert XSS in page.locator("#failure-reason").inner_text()
    assert XSS in page.locator("#steps tr[data-step='charge_payment']").inner_text()
    assert page.evaluate("window.__xss") is None


UNLABELLED_CONTROLS = """() => [...document.querySelectorAll(
    "input, select, textarea, button, a[href], [role=button]")]
  .filter((el) => el.offsetParent !== null || el.closest("dialog[open]"))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
      && !el.getAttribute("aria-labelledby") && !el.textContent.trim())
  .map((el) => el.outerHTML.slice(0, 120))"""


def test_every_control_is_labelled_and_the_list_works_from_the_keyboard(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    tag = f"keys-{uuid.uuid4().hex[:6]}"
    ids = [start(stub, "travel_booking", travel(f"customer-{n}"), tag) for n in range(3)]
    stuck = start_stuck_order(stub)
    base = console.info["console_url"]
    page = open_page(base)
    for route in ("#/sagas", f"#/saga/{ids[0]}", "#/intervention", "#/definitions"):
        page.goto(f"{base}{route}")
        page.locator("main h1").wait_for()
        page.wait_for_load_state("networkidle")
        assert page.evaluate(UNLABELLED_CONTROLS) == [], route
    page.goto(f"{base}#/intervention")
    page.locator(f"tr[data-saga-id='{stuck.saga_id}'] [data-action='retry']").click()
    assert page.evaluate(UNLABELLED_CONTROLS) == [], "the action dialog"
    page.keyboard.press("Escape")

    page.goto(f"{base}#/sagas")
    links = page.locator("#saga-rows a.saga-link")
    links.first.wait_for()
    page.locator("#filter-status").focus()
    for _ in range(40):  # Tab from the filters reaches the first row's link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('saga-link')"):
            break
    first = page.evaluate("document.activeElement.closest('tr').dataset.sagaId")
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.closest('tr').dataset.sagaId")
    assert first != second
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.closest('tr').dataset.sagaId") == first
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(f"#/saga/{second}$"))
    page.locator("#timeline").wait_for()


def test_no_page_loads_anything_from_another_origin(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    saga_id = start(stub, "travel_booking", travel("customer-origin"), "origin")
    base = console.info["console_url"]
    origin = urlsplit(base)._replace(path="", query="", fragment="").geturl()
    requested: list[str] = []
    page = open_page("about:blank")
    page.on("request", lambda request: requested.append(request.url))
    responses: list[Any] = []
    page.on("response", lambda response: responses.append(response))
    for route in ("#/sagas", f"#/saga/{saga_id}", "#/intervention", "#/definitions"):
        page.goto(f"{base}{route}")
        page.locator("main h1").wait_for()
        page.wait_for_load_state("networkidle")
    assert requested
    foreign = [url for url in requested if not (url.startswith(origin) or url.startswith("data:"))]
    assert foreign == []
    document = next(r for r in responses if r.url == base)
    assert "default-src 'none'" in document.headers["content-security-policy"]


def test_list_keeps_its_page_when_it_refreshes(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    tag = f"paging-{uuid.uuid4().hex[:6]}"
    for n in range(5):
        start(stub, "travel_booking", travel(f"customer-{n}"), tag)
    base = console.info["console_url"]
    page = open_page(f"{base}#/sagas?page_size=2")
    page.locator("#saga-rows tr[data-saga-id]").nth(1).wait_for()
    newest = page.locator("#saga-rows tr[data-saga-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.sagaId)"
    )
    page.get_by_role("button", name="Older").click()
    page.wait_for_url(re.compile("page_token="))
    page.wait_for_function(
        "ids => ![...document.querySelectorAll('#saga-rows tr[data-saga-id]')]"
        ".some(r => ids.includes(r.dataset.sagaId))",
        arg=newest,
    )
    older = page.locator("#saga-rows tr[data-saga-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.sagaId)"
    )
    assert len(older) == 2 and sorted(older, reverse=True) == older
    url = page.url
    stamp = page.locator("#list-updated").inner_text()
    start(stub, "travel_booking", travel("customer-new"), tag)  # a newer saga arrives
    page.wait_for_function(
        "stamp => document.querySelector('#list-updated').textContent !== stamp",
        arg=stamp,
        timeout=12_000,
    )
    assert page.url == url
    assert (
        page.locator("#saga-rows tr[data-saga-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.sagaId)"
        )
        == older
    )
    page.get_by_role("button", name="Newer").click()
    page.wait_for_function("!location.hash.includes('page_token')")


def test_definitions_page_draws_every_registered_type(console: ChildProcess, open_page: Any):
    page = open_page(f"{console.info['console_url']}#/definitions")
    page.locator("article.definition").first.wait_for()
    titles = page.locator("article.definition h2").all_inner_texts()
    assert sorted(titles) == [
        "create_order v1",
        "expensive_trip v1",
        "order_fulfillment v1",
        "order_fulfillment v2",
        "travel_booking v1",
    ]
    travel_nodes = page.locator(
        "article.definition[data-saga-type='travel_booking'] svg.diagram g.node"
    )
    assert sorted(travel_nodes.evaluate_all("nodes => nodes.map(n => n.dataset.step)")) == [
        "book_flight",
        "book_hotel",
        "charge_payment",
        "rent_car",
    ]
    pivot = page.locator(
        "article.definition[data-saga-type='order_fulfillment'] g.node.pivot"
    ).first
    assert pivot.get_attribute("data-step") == "send_confirmation"


def test_a_read_only_step_is_drawn_as_such_and_left_with_nothing_to_undo(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any
):
    declined = {
        "order_id": "o-console",
        "consumer_id": "consumer-1",
        "restaurant_id": "ajanta",
        "items": [{"sku": "dal", "quantity": 1}],
        "amount": {"currency_code": "EUR", "amount_minor": MAX_CHARGE_MINOR + 1},
    }
    saga_id = start(stub, "create_order", declined, "order")
    wait_until(stub, saga_id, terminal)

    page = open_page(f"{console.info['console_url']}#/definitions")
    article = page.locator("article.definition[data-saga-type='create_order']")
    article.wait_for()
    verify = article.locator("g.node[data-step='verify_consumer']")
    assert "read-only" in verify.get_attribute("class").split()
    assert "pivot" not in verify.get_attribute("class").split()
    assert article.locator("g.node.pivot").get_attribute("data-step") == "authorize_card"
    assert "none (read-only: nothing to undo)" in article.locator("table.steps").inner_text()

    page.goto(f"{console.info['console_url']}#/saga/{saga_id}")
    page.locator("#diagram g.node[data-step='verify_consumer']").wait_for()
    node = page.locator("#diagram g.node[data-step='verify_consumer']")
    assert node.get_attribute("data-state") == "NOTHING_TO_UNDO"
    assert "nothing to undo" in node.text_content()
    badge = page.locator("table.steps tr[data-step='verify_consumer'] .badge")
    assert badge.inner_text() == "NOTHING_TO_UNDO"
    mark = page.locator("svg.timeline path.mark[data-step='verify_consumer'] title")
    assert mark.text_content() == "read-only: nothing to undo"
    assert not page.locator(
        "svg.timeline rect.bar[data-kind='compensation'][data-step='verify_consumer']"
    ).count()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_console_fits_a_phone_in_light_and_dark(
    console: ChildProcess, stub: pb_grpc.SagaOrchestratorStub, open_page: Any, scheme: str
):
    saga_id = start(stub, "travel_booking", travel("customer-phone"), "phone")
    base = console.info["console_url"]
    page = open_page(
        base,
        viewport={"width": 390, "height": 844},
        color_scheme=scheme,
        is_mobile=True,
        has_touch=True,
    )
    for route in ("#/sagas", f"#/saga/{saga_id}"):
        page.goto(f"{base}{route}")
        page.locator("main h1").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red = int(re.findall(r"\d+", background)[0])
    assert (red < 60) if scheme == "dark" else (red > 200)
