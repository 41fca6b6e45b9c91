"""Domain errors carry transport-neutral codes; one table turns them into gRPC codes."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from orchestrator.api.status import GRPC_CODES, grpc_code_of, rpc_status_of
from orchestrator.core.errors import (
    ConfigurationError,
    DefinitionError,
    ErrorCode,
    IdempotencyKeyReused,
    InvalidArgument,
    InvalidPayload,
    SagaError,
    SagaNotFound,
    StaleSagaVersion,
    StoreUnavailable,
    UnknownSagaType,
)
from orchestrator.core.machine import IllegalTransition

pytestmark = pytest.mark.unit


def test_every_error_code_has_the_grpc_code_of_the_same_name():
    assert set(GRPC_CODES) == set(ErrorCode)
    assert all(grpc_code.name == code.name for code, grpc_code in GRPC_CODES.items())


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (SagaError("x"), grpc.StatusCode.INTERNAL),
        (InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (UnknownSagaType("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (InvalidPayload("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (SagaNotFound("x"), grpc.StatusCode.NOT_FOUND),
        (IdempotencyKeyReused("x"), grpc.StatusCode.ALREADY_EXISTS),
        (StaleSagaVersion("x"), grpc.StatusCode.ABORTED),
        (StoreUnavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (DefinitionError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (ConfigurationError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (IllegalTransition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (ValueError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_leaves_with_its_grpc_code(error, expected):
    assert grpc_code_of(error) == expected


def test_the_status_carries_code_message_and_reason():
    status = rpc_status_of(SagaNotFound("no saga with id 1"))
    assert status.code == grpc.StatusCode.NOT_FOUND
    assert status.details == "no saga with id 1"
    ((key, value),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    rich = status_pb2.Status.FromString(value)
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    assert (rich.code, info.reason, info.domain) == (
        grpc.StatusCode.NOT_FOUND.value[0],
        "SAGA_NOT_FOUND",
        "orchestrator.saga",
    )
