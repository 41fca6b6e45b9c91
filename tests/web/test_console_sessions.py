"""The console's session table on a clock the test moves: expiry, sign-out, and a token
that left the auth file."""

from __future__ import annotations

import pytest

from orchestrator.web import OPERATOR, READER, Identity
from orchestrator.web.sessions import SessionTable

pytestmark = pytest.mark.unit

OLGA = Identity("olga", frozenset({OPERATOR}))
IDLE, LIFETIME = 100.0, 1000.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(clock: Clock) -> SessionTable:
    return SessionTable(IDLE, LIFETIME, clock=clock)


def test_a_session_id_is_random_and_names_its_identity(table: SessionTable):
    first, second = table.open(OLGA, "digest"), table.open(OLGA, "digest")
    assert first != second and len(first) >= 43
    assert table.identity(first) == OLGA
    assert table.identity("") is None and table.identity("made-up") is None


def test_an_idle_session_ends_and_stays_ended(table: SessionTable, clock: Clock):
    session = table.open(OLGA, None)
    clock.now = IDLE - 1
    assert table.identity(session) == OLGA
    clock.now += IDLE - 1
    assert table.identity(session) == OLGA, "each request restarts the idle clock"
    clock.now += IDLE
    assert table.identity(session) is None
    clock.now = 0.0
    assert table.identity(session) is None, "an ended session is forgotten"


def test_a_session_in_use_still_ends_at_its_lifetime(table: SessionTable, clock: Clock):
    session = table.open(OLGA, None)
    while clock.now + IDLE / 2 < LIFETIME:
        clock.now += IDLE / 2
        assert table.identity(session) == OLGA
    clock.now = LIFETIME
    assert table.identity(session) is None


def test_sign_out_revokes_the_session_on_the_server(table: SessionTable):
    session = table.open(OLGA, None)
    assert table.revoke(session)
    assert table.identity(session) is None
    assert not table.revoke(session) and not table.revoke("")


def test_a_token_gone_from_the_auth_file_ends_its_sessions(table: SessionTable):
    olga, rudi = table.open(OLGA, "olga-digest"), table.open(OLGA, "rudi-digest")
    demoted = Identity("olga", frozenset({READER}))
    current = {"olga-digest": demoted}
    assert table.identity(olga, current.get) == demoted, "roles follow the file"
    assert table.identity(rudi, current.get) is None
    assert table.identity(rudi) is None


def test_the_table_is_bounded_by_dropping_the_least_recently_used(clock: Clock):
    table = SessionTable(IDLE, LIFETIME, clock=clock, max_sessions=3)
    first, second, third = (table.open(OLGA, None) for _ in range(3))
    assert table.identity(first) == OLGA
    fourth = table.open(OLGA, None)
    assert len(table) == 3
    assert table.identity(second) is None
    assert all(table.identity(s) == OLGA for s in (first, third, fourth))
