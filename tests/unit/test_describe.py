"""`saga describe`: text, Mermaid and Graphviz drawn from the definition the engine runs."""

from __future__ import annotations

import shutil

import pytest

from orchestrator.api import catalogue
from orchestrator.cli import main
from orchestrator.cli.diagrams import describe, describe_dot, describe_mermaid, describe_text
from orchestrator.core.definition import Parallel, RetryPolicy, SagaDefinition
from orchestrator.examples import DEFINITIONS, ORDER_FULFILLMENT
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from tests.unit.test_definition_checks import car_step, charge_step, flight_step, hotel_step

pytestmark = pytest.mark.unit

TRIP = SagaDefinition(
    name="trip",
    version=2,
    input_type=TravelBookingInput,
    description="Book both, then charge.",
    steps=(
        Parallel(
            "bookings",
            (
                flight_step(
                    timeout=2.5,
                    retry=RetryPolicy(
                        max_attempts=5, initial_backoff=0.2, max_backoff=1, multiplier=3, jitter=0.1
                    ),
                ),
                hotel_step(),
            ),
        ),
        charge_step(compensation=None),
        car_step(
            retriable=True,
            retry=RetryPolicy(max_attempts=8, retry_codes=frozenset({"INTERNAL", "UNKNOWN"})),
        ),
    ),
    deadline=600,
)
"""A parallel group with a step's own policies, an irreversible pivot, then a retriable
step whose compensation never runs."""


EXPECTED_TEXT = """\
trip v2: Book both, then charge.
input: saga.examples.v1.TravelBookingInput
deadline: 600s; a saga still running then, before its pivot, is compensated

1. parallel group bookings: book_flight, book_hotel run at the same time
   - book_flight
       participant:        flight
       action:             saga.participants.flight.v1.FlightService.BookFlight
       compensation:       saga.participants.flight.v1.FlightService.CancelFlight
       timeout:            2.5s per attempt
       retry:              5 attempts, backoff 0.2s x3 up to 1s, jitter 10%
       compensation retry: 10 attempts, backoff 0.1s x2 up to 5s, jitter 20% (saga default)
       gives up:           within 66.1s of its first attempt (action 15.6s + compensation 50.6s), then needs_intervention
   - book_hotel
       participant:        hotel
       action:             saga.participants.hotel.v1.HotelService.BookHotel
       compensation:       saga.participants.hotel.v1.HotelService.CancelHotel
       timeout:            5s per attempt
       retry:              3 attempts, backoff 0.1s x2 up to 2s, jitter 20% (saga default)
       compensation retry: 10 attempts, backoff 0.1s x2 up to 5s, jitter 20% (saga default)
       gives up:           within 90.9s of its first attempt (action 15.4s + compensation 75.6s), then needs_intervention
2. charge_payment
     participant:        payment
     action:             saga.participants.payment.v1.PaymentService.ChargePayment
     compensation:       none (irreversible)
     timeout:            5s per attempt
     retry:              3 attempts, backoff 0.1s x2 up to 2s, jitter 20% (saga default)
     gives up:           within 15.4s of its first attempt, then needs_intervention
3. rent_car
     participant:        car_rental
     action:             saga.participants.car_rental.v1.CarRentalService.RentCar
     compensation:       saga.participants.car_rental.v1.CarRentalService.CancelCarRental (never run: the step follows the pivot)
     timeout:            5s per attempt
     retry:              8 attempts, backoff 0.1s x2 up to 2s, jitter 20%, also retrying INTERNAL, UNKNOWN
     retriable:          every error is retried; when attempts run out an operator decides
     gives up:           within 48.5s of its first attempt, then needs_intervention

gives up within: the worst case, where every attempt runs out its timeout and every backoff its full jitter; a participant that refuses connections fails each attempt at once, so sooner (about the backoffs alone)
pivot: stage 2 (charge_payment)
  completed: the saga only goes forward; later steps are retried, and an operator decides if one still fails
  refused by its participant: nothing happened there; the steps before it are compensated
  outcome unknown (attempts ran out without an answer): the saga stops for an operator, who retries or resolves it; it is never compensated
  once it has started, neither an abort nor the saga's deadline stops the saga
on failure, completed steps are compensated: group bookings (book_flight, book_hotel)
"""  # noqa: E501 (the output as printed)


EXPECTED_MERMAID = """\
flowchart LR
    start(["start"])
    subgraph g0["parallel: bookings"]
        s0["book_flight<br/>flight: FlightService.BookFlight"]
        s1["book_hotel<br/>hotel: HotelService.BookHotel"]
    end
    s2["charge_payment<br/>payment: PaymentService.ChargePayment<br/>irreversible"]
    s3["rent_car<br/>car_rental: CarRentalService.RentCar<br/>retriable"]
    completed(["completed"])
    start --> s0
    start --> s1
    s0 --> s2
    s1 --> s2
    s2 --> s3
    s3 --> completed
    failed(["failed"])
    c0["undo book_flight<br/>FlightService.CancelFlight"]
    s0 -. undo .-> c0
    c1["undo book_hotel<br/>HotelService.CancelHotel"]
    s1 -. undo .-> c1
    c0 -.-> failed
    c1 -.-> failed
"""


EXPECTED_DOT = """\
digraph "trip v2" {
    rankdir=LR;
    label="trip v2";
    labelloc=t;
    fontname="Helvetica";
    node [shape=box, style=rounded, fontname="Helvetica"];
    edge [fontname="Helvetica"];
    start [label="start", shape=oval];
    completed [label="completed", shape=oval];
    subgraph cluster_g0 {
        label="parallel: bookings";
        style=dashed;
        s0 [label="book_flight\\nflight: FlightService.BookFlight"];
        s1 [label="book_hotel\\nhotel: HotelService.BookHotel"];
    }
    s2 [label="charge_payment\\npayment: PaymentService.ChargePayment\\nirreversible"];
    s3 [label="rent_car\\ncar_rental: CarRentalService.RentCar\\nretriable"];
    start -> s0;
    start -> s1;
    s0 -> s2;
    s1 -> s2;
    s2 -> s3;
    s3 -> completed;
    failed [label="failed", shape=oval];
    c0 [label="undo book_flight\\nFlightService.CancelFlight", style=dashed];
    s0 -> c0 [style=dashed, label="undo"];
    c1 [label="undo book_hotel\\nHotelService.CancelHotel", style=dashed];
    s1 -> c1 [style=dashed, label="undo"];
    c0 -> failed [style=dashed];
    c1 -> failed [style=dashed];
}
"""


def test_text_lists_stages_groups_rpcs_timeouts_and_policies():
    assert describe_text(TRIP) == EXPECTED_TEXT


def test_mermaid_draws_groups_as_subgraphs_and_compensations_dashed():
    assert describe_mermaid(TRIP) == EXPECTED_MERMAID


def test_dot_draws_groups_as_clusters_and_compensations_dashed():
    assert describe_dot(TRIP) == EXPECTED_DOT


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
@pytest.mark.parametrize("output_format", ["text", "mermaid", "dot"])
def test_every_example_step_and_rpc_appears_in_every_format(definition, output_format):
    shown = describe(definition, output_format)
    for step in definition.all_steps:
        assert step.name in shown
        assert step.action.method in shown
        if step.compensation is not None:
            assert step.compensation.method in shown


def test_text_of_the_sequential_example_numbers_its_stages_in_order():
    shown = describe_text(ORDER_FULFILLMENT)
    stages = [line for line in shown.splitlines() if line[:1].isdigit()]
    assert stages == [
        "1. reserve_inventory",
        "2. charge_payment",
        "3. schedule_shipping",
        "4. send_confirmation",
    ]
    assert "compensation:       none (irreversible)" in shown
    assert shown.rstrip().endswith(
        "compensated: schedule_shipping, then charge_payment, then reserve_inventory"
    )


def test_the_sequential_example_chains_its_undos_in_reverse():
    shown = describe_mermaid(ORDER_FULFILLMENT)
    assert "    c2 -.-> c1\n    c1 -.-> c0\n    c0 -.-> failed\n" in shown


def test_quotes_in_a_description_do_not_break_the_diagrams():
    quoted = Parallel('say "hi"', (flight_step(), hotel_step()))
    definition = SagaDefinition(
        name="trip", version=1, input_type=TravelBookingInput, steps=(quoted,)
    )
    assert 'subgraph g0["parallel: say #quot;hi#quot;"]' in describe_mermaid(definition)
    assert 'label="parallel: say \\"hi\\"";' in describe_dot(definition)


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="one of: text, mermaid, dot"):
        describe(TRIP, "svg")


# --- the CLI wiring ------------------------------------------------------------------------


def test_cli_prints_the_latest_version_as_text(capsys):
    assert main(["describe", "order_fulfillment"]) == 0
    assert capsys.readouterr().out == describe_text(ORDER_FULFILLMENT)


def test_cli_writes_mermaid_to_a_file(tmp_path):
    output = tmp_path / "order.mmd"
    assert (
        main(["describe", "order_fulfillment", "--format", "mermaid", "--output", str(output)]) == 0
    )
    assert output.read_text() == describe_mermaid(ORDER_FULFILLMENT)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["describe", "nope"], "unknown saga type 'nope'"),
        (["describe", "order_fulfillment", "--version", "7"], "v7 is not registered"),
        (["describe", "order_fulfillment", "--definitions", "no_such_sagas"], "no_such_sagas"),
        (
            ["describe", "order_fulfillment", "--format", "mermaid", "--output", "x.png"],
            "use --format dot",
        ),
    ],
)
def test_cli_reports_what_it_cannot_describe(capsys, args, words):
    assert main(args) == 2
    assert words in capsys.readouterr().err


def test_cli_says_graphviz_is_missing_when_asked_for_an_image(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["describe", "order_fulfillment", "--output", str(tmp_path / "o.png")]) == 2
    assert "needs Graphviz" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_cli_draws_an_image_with_graphviz(tmp_path, suffix, magic):
    output = tmp_path / f"order{suffix}"
    assert main(["describe", "order_fulfillment", "--output", str(output)]) == 0
    assert output.read_bytes().startswith(magic)


CHECKED_TRIP = SagaDefinition(
    name="trip",
    version=3,
    input_type=TravelBookingInput,
    steps=(
        flight_step("check_flight", compensation=None, read_only=True),
        hotel_step(),
        charge_step(compensation=None),
        car_step(retriable=True),
    ),
)
"""A read-only check first, a compensable booking, the pivot, then a retriable step."""


def test_a_read_only_step_is_shown_as_such_with_nothing_to_undo():
    shown = describe_text(CHECKED_TRIP)
    assert "compensation:       none (read-only: nothing to undo, a rollback passes over it)" in (
        shown
    )
    assert "pivot: stage 3 (charge_payment)\n" in shown
    assert "on failure, completed steps are compensated: book_hotel\n" in shown
    assert shown.endswith("read-only, nothing to undo (no command on failure): check_flight\n")
    mermaid = describe_mermaid(CHECKED_TRIP)
    assert 's0["check_flight<br/>flight: FlightService.BookFlight<br/>read-only"]' in mermaid
    assert "undo check_flight" not in mermaid
    assert "read-only" in describe_dot(CHECKED_TRIP)


def test_the_catalogue_marks_a_read_only_step_and_says_what_each_pivot_outcome_does():
    message = catalogue.definition_to_proto(CHECKED_TRIP)
    assert [step.read_only for step in message.steps] == [True, False, False, False]
    assert message.pivot_stage == 3
    document = catalogue.definition_document(message)
    assert document["steps"][0]["read_only"] is True
    assert document["steps"][0]["compensation"] is None
    text = catalogue.describe_text(message)
    assert "compensation: none (read-only: nothing to undo)" in text
    assert "pivot: stage 3\n  completed: the saga only goes forward" in text
    assert "refused by its participant: nothing happened there; the steps before it are" in text
    assert "outcome unknown" in text
