"""The saga types this project ships as examples, served by `saga serve` by default.

Saga definitions written as an application would: they import the DSL
(`orchestrator`, the core) and the participants' generated messages, nothing else.
"""

from orchestrator.core.definition import SagaDefinition
from orchestrator.examples.order_fulfillment import ORDER_FULFILLMENT
from orchestrator.examples.travel_booking import TRAVEL_BOOKING

DEFINITIONS: tuple[SagaDefinition, ...] = (TRAVEL_BOOKING, ORDER_FULFILLMENT)

__all__ = ["DEFINITIONS", "ORDER_FULFILLMENT", "TRAVEL_BOOKING"]
