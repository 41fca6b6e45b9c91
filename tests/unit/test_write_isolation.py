"""A failed batch write is split until what failed it fails alone (`write_isolated`), and
how a failure is classified: the write's own (one saga fails) or the database's (all)."""

from __future__ import annotations

import asyncio
import math
import sqlite3

import psycopg
import pytest

from orchestrator.core.errors import DataRefused, StaleSagaVersion, StoreUnavailable
from orchestrator.core.records import CreateSagaResult
from orchestrator.store._rows import data_refused, fails_alone
from orchestrator.store.group_commit import GroupCommit
from tests.unit.test_group_commit import commit_of, new_saga

pytestmark = pytest.mark.unit


class RefusingWrite:
    """A write that refuses, as PostgreSQL would, any batch holding a saga named in `bad`."""

    def __init__(self, bad: set[str], error: Exception) -> None:
        self.bad, self.error = bad, error
        self.calls: list[list[str]] = []

    async def __call__(self, new_sagas, commits):
        await asyncio.sleep(0)
        names = [n.saga.saga_id for n in new_sagas] + [c.saga.saga_id for c in commits]
        self.calls.append(names)
        if self.bad & set(names):
            raise self.error
        return [CreateSagaResult(n.saga, created=True) for n in new_sagas]


def refused() -> Exception:
    return psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence")


async def test_one_refused_write_among_many_fails_alone_in_a_few_writes():
    write = RefusingWrite({"c37"}, refused())
    group = GroupCommit(write)

    outcomes = await asyncio.gather(
        *(group.commit([commit_of(f"c{n}")]) for n in range(100)),
        group.create(new_saga("new")),
        return_exceptions=True,
    )

    assert isinstance(outcomes[37], DataRefused)
    assert "22P05" in outcomes[37].message
    assert all(o is None for n, o in enumerate(outcomes[:100]) if n != 37)
    assert outcomes[100].saga.saga_id == "new"
    committed = {name for names in write.calls if "c37" not in names for name in names}
    assert committed == {f"c{n}" for n in range(100) if n != 37} | {"new"}
    # c0 alone, then the batch of 100 halved down to the one: two writes per halving.
    assert len(write.calls) <= 2 + 2 * math.ceil(math.log2(100))


@pytest.mark.parametrize(
    "error",
    [
        StoreUnavailable("PostgreSQL is unavailable"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.OperationalError("consuming input failed"),
        sqlite3.OperationalError("disk I/O error"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_an_error_of_the_database_fails_the_whole_batch_at_once(error: Exception):
    write = RefusingWrite({"c1"}, error)
    group = GroupCommit(write)
    first = asyncio.create_task(group.commit([commit_of("c0")]))
    await asyncio.sleep(0)
    outcomes = await asyncio.gather(
        *(group.commit([commit_of(f"c{n}")]) for n in range(1, 9)), return_exceptions=True
    )
    await first
    assert all(o is error for o in outcomes)
    assert len(write.calls) == 2  # c0 alone, then one attempt of the other eight


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        (psycopg.errors.UntranslatableCharacter("x"), True),
        (psycopg.errors.InvalidTextRepresentation("x"), True),
        (psycopg.errors.CheckViolation("x"), True),
        (psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"), True),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), True),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
        (sqlite3.IntegrityError("CHECK constraint failed"), True),
        (StaleSagaVersion("stale"), False),
        (psycopg.errors.UndefinedTable("x"), False),
        (RuntimeError("a bug"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_a_refused_value_is_told_from_other_failures_that_fail_alone(error, refusal):
    assert fails_alone(error)
    assert (data_refused(error) is not None) is refusal


def test_the_refusal_names_the_class_and_code_never_the_value():
    error = psycopg.errors.UntranslatableCharacter("\\u0000 cannot be converted: secret-value")
    answer = data_refused(error)
    assert answer is not None
    assert "UntranslatableCharacter" in answer.message and "22P05" in answer.message
    assert "secret-value" not in answer.message
