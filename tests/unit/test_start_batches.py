"""How the client cuts many starts into StartSagas calls, and reads one refused request."""

from __future__ import annotations

import grpc
import pytest

from orchestrator.api.status import status_proto_of
from orchestrator.client import Conflict, start_batches
from orchestrator.client.errors import status_error
from orchestrator.core.errors import IdempotencyKeyReused, ResourceExhausted
from saga.v1 import orchestrator_pb2 as pb

pytestmark = pytest.mark.unit


def request(n: int, padding: int = 0) -> pb.StartSagaRequest:
    return pb.StartSagaRequest(saga_type="t", correlation_id=f"c-{n}" + "x" * padding)


def test_batches_hold_at_most_the_count_and_keep_the_order():
    batches = list(start_batches([request(n) for n in range(7)], size=3))

    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert [r.correlation_id for batch in batches for r in batch] == [f"c-{n}" for n in range(7)]


def test_a_batch_closes_before_its_bytes_pass_the_budget_and_a_big_request_goes_alone():
    small, big = request(0, 100), request(1, 5000)

    batches = list(start_batches([small, small, big, small], size=100, max_bytes=1000))

    assert [len(batch) for batch in batches] == [2, 1, 1]


@pytest.mark.parametrize(
    ("error", "code", "kind"),
    [
        (IdempotencyKeyReused("key k started saga s"), grpc.StatusCode.ALREADY_EXISTS, Conflict),
        (
            ResourceExhausted("busy", reason="SAGAS_IN_FLIGHT_EXHAUSTED", retry_after=1.0),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            Exception,
        ),
    ],
)
def test_a_refused_request_reads_as_the_client_error_of_the_same_refusal(error, code, kind):
    mapped = status_error(status_proto_of(error))

    assert isinstance(mapped, kind)
    assert mapped.code == code and mapped.reason == error.reason
    assert str(mapped) == f"{code.name}: {error.message}"
