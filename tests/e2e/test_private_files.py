"""Files that hold sagas, participants' records or logs are private to their user:
0600 files in 0700 directories, whatever the umask lets through.

Each test runs under umask 022, the common default that left them world-readable.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.store.sqlite import SqliteStore
from participants.kit.database import open_database
from tools.processes import participants_process

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def common_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private_database(path: Path) -> None:
    assert mode(path.parent) == 0o700, path.parent
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        file = path.parent / name
        assert file.exists() and mode(file) == 0o600, f"{file}: {oct(mode(file))}"


async def test_the_orchestrators_sqlite_store_and_its_wal_are_private(tmp_path: Path):
    path = tmp_path / "new-directory" / "saga.sqlite3"
    store = SqliteStore(str(path))
    await store.open()
    try:
        assert_private_database(path)
    finally:
        await store.close()


def test_a_participants_state_file_is_private(tmp_path: Path):
    path = tmp_path / "state" / "ledger.sqlite3"
    database = open_database(f"sqlite:///{path}")
    try:
        with database.transaction() as tx:
            tx.execute("CREATE TABLE t (x INTEGER)")
        assert_private_database(path)
    finally:
        database.close()


def test_a_participants_process_keeps_its_state_and_log_private(tmp_path: Path):
    workdir = tmp_path / "run"
    process = participants_process(workdir, ["payment"]).start()
    try:
        assert_private_database(workdir / "participants" / "payment.sqlite3")
        assert mode(workdir) == 0o700
        assert mode(process.log_file) == 0o600
    finally:
        process.stop()
