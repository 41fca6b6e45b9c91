"""The HTTP/JSON API fuzzed from its own OpenAPI document, against a live orchestrator.

schemathesis reads /v1/openapi.json from a real `saga serve --http-listen` process and
sends each operation a bounded number of generated requests (valid ones, and ones the
document rules out), on
SQLite and on PostgreSQL. Every answer must be below 500 and conform to the document
(status code, content type, body schema); a refused request must leave the database as
it was (no saga, step, log row, outbox row or webhook endpoint half-written).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import participants  # noqa: F401
from tests.e2e.test_bad_input import row_counter
from tools.processes import ChildProcess, orchestrator_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES_PER_OPERATION = int(os.environ.get("SAGA_FUZZ_EXAMPLES", "25"))
"""Per operation; the suite's bound. SAGA_FUZZ_EXAMPLES=500 for a deeper run by hand."""
TABLES = ("sagas", "saga_steps", "saga_transitions", "saga_outbox", "webhook_endpoints")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'saga.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def server(
    tmp_path: Path,
    database_url: str,
    participants: ChildProcess,  # noqa: F811
) -> Iterator[ChildProcess]:
    process = orchestrator_process(
        tmp_path,
        database_url,
        participants.info["services"],
        extra_args=["--http-listen", "127.0.0.1:0"],
    )
    try:
        yield process.start()
    finally:
        process.stop()


def test_every_operation_answers_within_its_document_and_refusals_write_nothing(
    server: ChildProcess, database_url: str
):
    base_url = server.info["console_url"].rstrip("/")
    schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
    schema.config.base_url = base_url  # type: ignore[attr-defined]
    checks = (status_code_conformance, content_type_conformance, response_schema_conformance)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    with row_counter(database_url) as count_rows:
        for operation in operations:
            exercise_operation(
                operation, base_url, lambda: {t: count_rows(t) for t in TABLES}, checks
            )


def exercise_operation(
    operation: Any,
    base_url: str,
    row_counts: Callable[[], dict[str, int]],
    checks: tuple[Any, ...],
) -> None:
    """EXAMPLES_PER_OPERATION valid and invalid requests to one operation."""

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(
        case=st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
    )
    def exercise(case: schemathesis.Case) -> None:
        before = row_counts()
        response = case.call(base_url=base_url, timeout=30)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
        )
        case.validate_response(response, checks=checks)
        if response.status_code >= 400:
            assert row_counts() == before, (
                f"{case.method} {case.formatted_path} was refused "
                f"({response.status_code}) but changed the database"
            )

    exercise()
