"""A failed command's status code decides which way the saga goes, by the code's name."""

from __future__ import annotations

import grpc
import pytest

from orchestrator.core.command_failures import REJECTION_CODES, TRANSIENT_CODES, classify_failure
from orchestrator.core.machine import ErrorKind
from orchestrator.engine.commands import classify

pytestmark = pytest.mark.unit


def test_every_listed_code_is_a_real_status_code_name():
    """The core spells codes as names: a typo would silently mean "outcome unknown"."""
    names = {code.name for code in grpc.StatusCode}
    assert names >= TRANSIENT_CODES
    assert names >= REJECTION_CODES
    assert not TRANSIENT_CODES & REJECTION_CODES


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("UNAVAILABLE", ErrorKind.TRANSIENT),
        ("DEADLINE_EXCEEDED", ErrorKind.TRANSIENT),
        ("CANCELLED", ErrorKind.TRANSIENT),
        ("FAILED_PRECONDITION", ErrorKind.REJECTED),
        ("INVALID_ARGUMENT", ErrorKind.REJECTED),
        ("INTERNAL", ErrorKind.OUTCOME_UNKNOWN),
        ("UNKNOWN", ErrorKind.OUTCOME_UNKNOWN),
    ],
)
def test_a_code_sorts_into_its_kind(code, kind):
    assert classify_failure(code) is kind


def test_a_retry_policy_makes_a_further_code_transient():
    assert classify_failure("INTERNAL", frozenset({"INTERNAL"})) is ErrorKind.TRANSIENT


FAILURE_CODES = [code for code in grpc.StatusCode if code is not grpc.StatusCode.OK]


@pytest.mark.parametrize("code", FAILURE_CODES)
def test_the_engine_hands_every_grpc_code_to_the_core_by_name(code):
    assert classify(code) is classify_failure(code.name)
    assert classify(code, frozenset({code.name})) is ErrorKind.TRANSIENT
