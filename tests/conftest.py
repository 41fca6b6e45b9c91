"""PostgreSQL for tests: a fresh schema per test, and the rule for a missing server.

The database named by SAGA_TEST_POSTGRES_URL is shared, so every test gets its own
schema and drops it afterwards. Without the variable a PostgreSQL test is skipped,
except under CI=true, where a missing PostgreSQL is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

POSTGRES_URL_ENV = "SAGA_TEST_POSTGRES_URL"

LONGEST_FILES_FIRST = (
    "tests/e2e/test_cli.py",
    "tests/e2e/test_failure_policy.py",
    "tests/e2e/test_bad_input.py",
    "tests/e2e/test_webhooks.py",
    "tests/e2e/test_async_steps.py",
    "tests/e2e/test_limits.py",
    "tests/e2e/test_locks.py",
    "tests/bench/test_bench_smoke.py",
    "tests/e2e/test_fuzz.py",
    "tests/e2e/test_visibility.py",
    "tests/e2e/test_client.py",
    "tests/e2e/test_bulk_actions.py",
    "tests/e2e/test_tenancy.py",
    "tests/web/test_console.py",
    "tests/e2e/test_escalation.py",
    "tests/e2e/test_async_crashes.py",
    "tests/e2e/test_tooling.py",
    "tests/e2e/test_events_guarantees.py",
    "tests/e2e/test_batch_start.py",
    "tests/e2e/test_frozen_replica.py",
    "tests/e2e/test_crash_recovery.py",
    "tests/e2e/test_sagas.py",
    "tests/e2e/test_events_outages.py",
    "tests/e2e/test_results.py",
    "tests/e2e/test_tracked_rescue.py",
    "tests/e2e/test_events_relay.py",
    "tests/e2e/test_own_saga.py",
    "tests/bench/test_events_bench_smoke.py",
    "tests/e2e/test_chaos.py",
    "tests/e2e/test_http_api_fuzz.py",
)
"""The files that take longest (in `make test` order: xdist gives each worker a file at a
time, in this order, with `--no-loadscope-reorder`). A long file started last would run on
one core while the other idles; started first, the short files fill in around it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, every other file after them in its collected order."""
    rank = {path: position for position, path in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def require_postgres_url() -> str:
    """SAGA_TEST_POSTGRES_URL; skips the test without it, or fails it under CI=true."""
    url = os.environ.get(POSTGRES_URL_ENV, "")
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{POSTGRES_URL_ENV} is not set; PostgreSQL is required under CI=true")
    pytest.skip(f"{POSTGRES_URL_ENV} is not set")


def url_with_search_path(url: str, schema: str) -> str:
    """`url` with `schema` first on the search_path, kept in the URL's own options."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def postgres_server_url() -> str:
    """SAGA_TEST_POSTGRES_URL as given, for a test that manages its own schema."""
    return require_postgres_url()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema created for this test alone."""
    base_url = postgres_server_url
    schema = f"saga_test_{secrets.token_hex(6)}"
    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield url_with_search_path(base_url, schema)
    finally:
        with psycopg.connect(base_url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
