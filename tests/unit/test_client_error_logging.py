"""Client mistakes are logged at INFO through a token bucket: a burst, then about `rate`
a second, and the first record after a pause says how many were dropped."""

from __future__ import annotations

import logging

import pytest

from orchestrator.api import status
from orchestrator.core.errors import InvalidArgument, SagaError, StoreUnavailable
from orchestrator.telemetry.throttle import ThrottledLog, TokenBucket

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_lets_a_burst_through_then_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.5  # one token back at two a second
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now = 100.0  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_a_flood_of_records_is_cut_to_the_burst_and_the_next_says_how_many_were_dropped(
    caplog,
):
    clock = Clock()
    log = ThrottledLog(logging.getLogger("test.throttle"), rate=1.0, burst=5, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.throttle"):
        for number in range(1000):
            log.log(logging.INFO, "refused %d", number)
        assert len(caplog.records) == 5
        assert log.dropped == 995
        clock.now = 1.0
        log.log(logging.INFO, "refused again")
    assert len(caplog.records) == 6
    assert "995 similar record(s) dropped" in caplog.records[-1].getMessage()
    assert log.dropped == 0


def test_refusals_are_info_without_traceback_and_server_faults_are_not_logged_here(caplog):
    with caplog.at_level(logging.DEBUG, logger="orchestrator.api.status"):
        status.log_refusal(InvalidArgument("status is 99, not one of ..."))
        status.log_refusal(StoreUnavailable("PostgreSQL is unavailable"))
        status.log_refusal(SagaError("internal error"))
    refused = [r for r in caplog.records if r.name == "orchestrator.api.status"]
    assert [(r.levelno, r.exc_info) for r in refused] == [(logging.INFO, None)]
    assert "INVALID_ARGUMENT: status is 99" in refused[0].getMessage()
