"""The console's event-sinks page: each sink's backlog, oldest pending event, dead letters
and partition owners, through the SagaEvents servicer, for readers and operators only,
with every name shown as text (a sink the database knows by a hostile name included)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from typing import Any

import pytest

from orchestrator.core.events import OutboxEvent
from orchestrator.store import open_store
from tests.web.conftest import CLIENT_TOKEN, OPERATOR_TOKEN, READER_TOKEN, XSS
from tests.web.test_console_api import bearer, call
from tools.processes import ChildProcess

pytestmark = [pytest.mark.e2e]


def database_url(process: ChildProcess) -> str:
    return process.argv[process.argv.index("--database") + 1]


def leave_event_of_a_retired_sink(process: ChildProcess, sink: str) -> None:
    """An outbox row of a sink the orchestrator is not configured with, written to its
    database as an older deployment would have left it."""

    async def write() -> None:
        store = open_store(database_url(process))
        await store.open()
        try:
            event = OutboxEvent(sink, 0, str(uuid.uuid4()), 1, "x.saga.started.v1", b"{}")
            await store.enqueue_events([event])
        finally:
            await store.close()

    # In a thread of its own: the browser's driver runs an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, write()).result(timeout=30)


def test_the_sinks_api_shows_database_only_sinks_to_readers_and_operators_only(
    secured_console: ChildProcess,
):
    base = secured_console.info["console_url"]
    leave_event_of_a_retired_sink(secured_console, "retired-api")

    assert call(f"{base}api/event-sinks")[0] == 401
    status, answer, _ = call(f"{base}api/event-sinks", headers=bearer(CLIENT_TOKEN))
    assert (status, answer["error"]["code"]) == (403, "PERMISSION_DENIED")
    for token in (READER_TOKEN, OPERATOR_TOKEN):
        status, answer, _ = call(f"{base}api/event-sinks", headers=bearer(token))
        assert status == 200
        [retired] = [sink for sink in answer["sinks"] if sink["name"] == "retired-api"]
        assert (retired["configured"], retired["pending"], retired["dead"]) == (False, "1", "0")
        assert retired["oldest_pending_time"] and retired["partition_owners"] == []


def test_the_sinks_page_shows_health_and_hostile_names_as_text(
    console: ChildProcess, open_page: Any
):
    leave_event_of_a_retired_sink(console, XSS)

    page = open_page(f"{console.info['console_url']}#/sinks")
    row = page.locator("table.sinks tbody tr[data-sink]").first
    row.wait_for()

    assert row.get_attribute("data-sink") == XSS
    assert row.locator("td").first.inner_text() == XSS
    assert row.locator("td.pending").inner_text() == "1"
    assert row.locator("td.dead").inner_text() == "0"
    assert "not configured here" in row.inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("h1").inner_text() == "Event sinks"
