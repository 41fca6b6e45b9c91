"""Store errors reach the logs by class and code, never with the values they quote.

PostgreSQL's message for a refused value carries the statement's data in its DETAIL and
CONTEXT (`JSON data, line 1: {"card": "4111...`), and a traceback quotes each chained
exception's message: both formatters must write the driver's errors as class and
SQLSTATE (or sqlite3's error name) alone, in tracebacks and in a message's arguments.
"""

from __future__ import annotations

import dataclasses
import io
import logging

import pytest

from orchestrator.core.errors import DataRefused
from orchestrator.store import PostgresStore, Store
from orchestrator.telemetry.logs import ContextFilter, make_formatter
from tests.integration.test_store import new_saga

pytestmark = pytest.mark.integration

SECRET = "4111-1111-1111-1111"


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_a_refused_write_is_logged_by_class_and_code_never_with_its_values(
    store: Store, log_format: str
):
    fault = "\x00" if isinstance(store, PostgresStore) else "\ud800"
    new = new_saga("carded")
    payload = {"card": SECRET, "note": f"late{fault}"}
    poisoned = dataclasses.replace(new, saga=dataclasses.replace(new.saga, payload=payload))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("orchestrator.engine.executor")
    logger.addHandler(handler)
    try:
        try:
            await store.write([poisoned], ())
        except Exception as error:
            refused: Exception = error
            try:
                raise RuntimeError("driving the saga failed") from error
            except RuntimeError:
                logger.exception("driving the saga failed; reloading", extra={"saga_id": "x"})
            logger.warning("the write failed: %s", error)
        else:
            pytest.fail("the store stored a value it cannot hold")
        with pytest.raises(DataRefused) as answer:  # through group commit: the answer
            await store.create_saga(poisoned.saga, poisoned.steps, poisoned.transitions)
        logger.warning("refused: %s", answer.value.message)
    finally:
        logger.removeHandler(handler)

    written = stream.getvalue()
    assert SECRET not in written and "4111" not in written, written
    assert "driving the saga failed" in written and type(refused).__name__ in written
    if isinstance(store, PostgresStore):
        assert "SQLSTATE 22P05" in written
    assert "refused: the database refused a value of this write" in written
