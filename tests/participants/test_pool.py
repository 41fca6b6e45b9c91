"""The kit's Pool and Participant on SQLite and PostgreSQL, in process: units taken and
given back, refusals with the pool's reasons, several takes all or nothing, a restart
that keeps the counts; and a participant whose handlers do not fit its service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from participants.kit import (
    Database,
    Participant,
    Pool,
    Rejected,
    Tx,
    action,
    compensation,
    open_database,
)
from saga.participants.flight.v1 import flight_pb2

pytestmark = pytest.mark.integration

SEATS = Pool(
    "seats", ("flight", "cabin"), "total", "free",
    item="{cabin} on {flight}", unit="seat",
    unknown_reason="UNKNOWN_CABIN", exhausted_reason="NO_SEATS",
)  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pool.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    opened = open_database(database_url)
    opened.create(SEATS.create_statement())
    with opened.transaction() as tx:
        SEATS.seed(tx, [("LH400", "economy"), ("LH400", "business")], capacity=3)
    try:
        yield opened
    finally:
        opened.close()


def free(database: Database) -> dict[tuple[str, str], int]:
    with database.snapshot() as tx:
        return {(row[0], row[1]): row[3] for row in SEATS.levels(tx)}


def test_units_are_taken_given_back_and_reported(database: Database) -> None:
    with database.transaction() as tx:
        SEATS.take(tx, ("LH400", "economy"), 2)
    with database.transaction() as tx:
        SEATS.give_back(tx, ("LH400", "economy"), 1)

    assert free(database) == {("LH400", "business"): 3, ("LH400", "economy"): 2}


@pytest.mark.parametrize(
    ("cabin", "units", "reason", "message"),
    [
        ("first", 1, "UNKNOWN_CABIN", "first on LH400 does not exist"),
        ("economy", 4, "NO_SEATS", "economy on LH400 has 3 seat(s) left, 4 requested"),
    ],
)
def test_a_shortage_is_refused_with_the_pools_reason_and_the_item(
    database: Database, cabin: str, units: int, reason: str, message: str
) -> None:
    with pytest.raises(Rejected) as refused, database.transaction() as tx:
        SEATS.take(tx, ("LH400", cabin), units)

    assert (refused.value.reason, refused.value.message) == (reason, message)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.metadata == {"flight": "LH400", "cabin": cabin}


def test_several_takes_in_one_savepoint_are_all_or_nothing(database: Database) -> None:
    with database.transaction() as tx, pytest.raises(Rejected), database.savepoint(tx):
        SEATS.take(tx, ("LH400", "business"), 1)
        SEATS.take(tx, ("LH400", "economy"), 9)

    assert free(database) == {("LH400", "business"): 3, ("LH400", "economy"): 3}


def test_seeding_again_keeps_the_counts_there_are(database: Database) -> None:
    with database.transaction() as tx:
        SEATS.take(tx, ("LH400", "economy"), 1)
    with database.transaction() as tx:
        SEATS.seed(tx, [("LH400", "economy"), ("AF100", "economy")], capacity=50)

    assert free(database) == {
        ("AF100", "economy"): 50,
        ("LH400", "business"): 3,
        ("LH400", "economy"): 2,
    }


class HalfAFlightService(Participant):
    """BookFlight only: CancelFlight and GetFlightInventory have no handler."""

    service = "saga.participants.flight.v1.FlightService"

    @action
    def BookFlight(
        self, tx: Tx, request: flight_pb2.BookFlightRequest
    ) -> flight_pb2.BookFlightResponse:
        return flight_pb2.BookFlightResponse()


class MistypedFlightService(HalfAFlightService):
    """CancelFlight undoes an RPC the service does not have; a read taken for a command."""

    @compensation(of="BookFlights")
    def CancelFlight(
        self, tx: Tx, request: flight_pb2.CancelFlightRequest, done: object
    ) -> flight_pb2.CancelFlightResponse:
        return flight_pb2.CancelFlightResponse()


class ReadAsCommandFlightService(MistypedFlightService):
    CancelFlight = HalfAFlightService.BookFlight

    @action
    def GetFlightInventory(
        self, tx: Tx, request: flight_pb2.GetFlightInventoryRequest
    ) -> flight_pb2.GetFlightInventoryResponse:
        return flight_pb2.GetFlightInventoryResponse()


@pytest.mark.parametrize(
    ("participant", "error"),
    [
        (HalfAFlightService, r"no .* handler for .*FlightService\.CancelFlight"),
        (MistypedFlightService, r"CancelFlight compensates 'BookFlights': no such RPC"),
        (ReadAsCommandFlightService, r"GetFlightInventory: a command's request needs"),
    ],
)
async def test_a_participant_whose_handlers_do_not_fit_its_service_does_not_start(
    tmp_path: Path, participant: type[Participant], error: str
) -> None:
    served = participant(open_database(f"sqlite:///{tmp_path / 'flight.db'}"))
    try:
        with pytest.raises(TypeError, match=error):
            served.add_to_server(grpc.aio.server())
    finally:
        served.database.close()
