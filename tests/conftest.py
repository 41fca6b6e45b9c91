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
