"""order_fulfillment v2, for the demo's operator scenario: a compensation that keeps
failing gives up after three quick attempts, so an operator is called in at once
instead of after the default minute of retries."""

from __future__ import annotations

import dataclasses

from orchestrator.core.definition import RetryPolicy
from orchestrator.examples.order_fulfillment import ORDER_FULFILLMENT

ORDER_FULFILLMENT_V2 = dataclasses.replace(
    ORDER_FULFILLMENT,
    version=2,
    description=ORDER_FULFILLMENT.description + " Compensations give up after 3 attempts.",
    compensation_retry=RetryPolicy(max_attempts=3, initial_backoff=0.2, jitter=0.0),
)

DEFINITIONS = (ORDER_FULFILLMENT, ORDER_FULFILLMENT_V2)
