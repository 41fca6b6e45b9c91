"""What every broker consumer does with a batch of messages: parse, ingest, settle.

A message that is not a CloudEvent is refused for good (RabbitMQ reject without requeue,
JetStream term), logged once with its reason and counted: redelivering it could never
help. The others go to the ingestor in one call; only once it has returned (what they did
is committed) is each acknowledged. When it raises (the store is unreachable) every one of
them is handed back for redelivery (nack with requeue, JetStream nak), and a redelivered
event the store already holds is answered DUPLICATE: nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter

from orchestrator import failpoints
from orchestrator.core.incoming import EventIngestor, IncomingEvent, IngestVerdict
from orchestrator.events.ingest.cloudevents import MalformedEvent

logger = logging.getLogger(__name__)

M = TypeVar("M")
Settle = Callable[[M], Awaitable[None]]


class IngestMetrics:
    """Counters of the ways in, by way (`rabbitmq`, `nats`, `grpc`, `http`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.ingested = Counter(
            "saga_events_ingested",
            "Incoming events the tracker applied, by way in and verdict.",
            ("via", "verdict"),
            registry=self.registry,
        )
        self.malformed = Counter(
            "saga_events_malformed",
            "Incoming messages refused as no readable CloudEvent (not redelivered).",
            ("via",),
            registry=self.registry,
        )
        self.failed_batches = Counter(
            "saga_events_ingest_failures",
            "Batches the tracker could not apply (handed back for redelivery).",
            ("via",),
            registry=self.registry,
        )

    def count(self, via: str, verdicts: Sequence[IngestVerdict]) -> None:
        for verdict in verdicts:
            self.ingested.labels(via, str(verdict)).inc()


@dataclass(frozen=True, slots=True)
class Received(Generic[M]):
    """One broker message and what it holds: its events, or why it holds none."""

    message: M
    events: Sequence[IncomingEvent] = ()
    problem: MalformedEvent | None = None
    label: str = ""
    """How a log line names the message (its id or delivery tag), never its body."""


@dataclass(frozen=True, slots=True)
class Settlement(Generic[M]):
    """How a consumer acknowledges, refuses for good, and hands back one message."""

    ack: Settle[M]
    refuse: Settle[M]
    retry: Settle[M]


async def ingest_received(
    received: Sequence[Received[M]],
    ingestor: EventIngestor,
    settle: Settlement[M],
    *,
    via: str,
    metrics: IngestMetrics,
) -> bool:
    """Settle one batch of messages; False when the ingestor failed (all handed back)."""
    readable = []
    for item in received:
        if item.problem is None:
            readable.append(item)
            continue
        logger.warning("%s: refused message %s: %s", via, item.label, item.problem.message)
        metrics.malformed.labels(via).inc()
        await _quietly(settle.refuse, item)
    events = [event for item in readable for event in item.events]
    if not events:
        return True
    failpoints.hit("ingest_received")
    try:
        verdicts = await ingestor.ingest(events)
    except Exception as error:
        logger.warning(
            "%s: %d events not applied, handed back for redelivery: %s", via, len(events), error
        )
        metrics.failed_batches.labels(via).inc()
        for item in readable:
            await _quietly(settle.retry, item)
        return False
    metrics.count(via, verdicts)
    failpoints.hit("ingest_committed")
    for item in readable:
        await _quietly(settle.ack, item)
    return True


async def _quietly(action: Settle[M], item: Received[M]) -> None:
    """Settle one message; a failure (the channel or connection went away) means the broker
    redelivers it, which the store's dedup makes harmless."""
    try:
        await action(item.message)
    except Exception as error:
        logger.info("could not settle message %s (it will be redelivered): %r", item.label, error)


async def finish_worker(task: asyncio.Task[None] | None, idle: asyncio.Event, grace: float) -> None:
    """Stop a consumer's worker, letting a batch in hand be settled first (up to `grace`
    seconds): cut between commit and ack, its messages would come again as duplicates."""
    if task is None:
        return
    if not idle.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(idle.wait()), grace)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


__all__ = ["IngestMetrics", "Received", "Settlement", "finish_worker", "ingest_received"]
