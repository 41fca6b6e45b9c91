"""The relay: publishes each broker sink's outbox rows and deletes them once confirmed.

Every replica runs one `SinkRelay` per broker sink. A sink's rows are split into
partitions (a saga's events all in one); a replica publishes only the partitions whose
lease it holds, claimed and renewed with the database's clock like a saga's lease
(`Store.claim_event_partitions`), up to its fair share of them (the partitions over the
number of replicas running a relay, itself included, each announced in the database
like a lease); expired and released partitions are taken over, and a replica holding
more than its share when another joins hands on the excess.

Each round reads the oldest pending rows (a batch per partition) of every partition it
holds and is not backing off, in one query and in outbox order, hands them to the sink's
`Publisher` as one batch (a saga's events are all in one partition, so they keep their
order) and, when the publisher returns (every item confirmed), deletes them through
`Store.settle_partitions`, one transaction that first checks, partition by partition,
that the partition is still this replica's at the version it claimed: a replica frozen
past its lease that wakes up deletes nothing there, and the new owner republishes what
it had sent (duplicates with the same event id, never a loss).

On `PublishFailed` the confirmed prefix is deleted and the partitions cut short wait (a
growing backoff) before publishing again from their first unconfirmed row, so a saga's
events are never reordered; an unreachable broker (`BrokerUnavailable`) holds the whole
sink instead, tried again within `reconnect_seconds`, and the broker's return (a confirm,
or a connection opened) ends every backoff. On `EventRefused` the refused event's
attempts are counted; after `max_refusals` it moves to the dead-letter table in the
transaction that deletes it from the outbox, and the partition goes on.

The relay is not on the commit path: sagas commit their outbox rows whatever the
brokers do, and a broker outage only grows the backlog. It wakes when this process
commits rows for its sink (`wake`), when another replica's commit is heard
(PostgreSQL's existing commit notifications, through `Store.follow_commits`), and at
least every `poll_seconds`. A wake-up starts a round at once; those heard during a
round make one more round after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from orchestrator import failpoints
from orchestrator.core.clock import utc_now
from orchestrator.core.events import (
    DeadEvent,
    EventSink,
    PartitionClaim,
    PendingEvent,
    Settlement,
)
from orchestrator.core.records import Lease
from orchestrator.events.brokers import (
    BrokerUnavailable,
    EventRefused,
    OutgoingEvent,
    Publisher,
    PublishError,
    PublishFailed,
)
from orchestrator.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """How the relay paces itself; the defaults suit a production replica."""

    batch_size: int = 100
    lease_seconds: float = 15.0
    """A partition's lease; renewed every third of it."""
    poll_seconds: float = 1.0
    """The longest the relay sleeps without a wake-up (the backstop)."""
    max_refusals: int = 5
    """Attempts a broker may refuse one event before it is dead-lettered."""
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    backlog_seconds: float = 5.0
    """How often the backlog gauges are read from the store."""
    reconnect_seconds: float = 1.0
    """The longest wait between attempts to reach an unreachable broker."""


class RelayMetrics:
    """The relay's Prometheus metrics, by sink."""

    def __init__(self, registry: CollectorRegistry) -> None:
        by_sink = ("sink",)
        self.pending = Gauge(
            "saga_events_pending", "Undelivered outbox events.", by_sink, registry=registry
        )
        self.oldest_pending = Gauge(
            "saga_events_oldest_pending_seconds",
            "Age of the oldest undelivered outbox event (0 when none).",
            by_sink,
            registry=registry,
        )
        self.published = Counter(
            "saga_events_published",
            "Events the sink's broker confirmed (a republished event counts again).",
            by_sink,
            registry=registry,
        )
        self.republished = Counter(
            "saga_events_republished",
            "Events published again after a failed or unconfirmed attempt.",
            by_sink,
            registry=registry,
        )
        self.dead = Counter(
            "saga_events_dead",
            "Events moved to the dead-letter table after repeated refusals.",
            by_sink,
            registry=registry,
        )
        self.dead_letters = Gauge(
            "saga_events_dead_letters",
            "Events in the dead-letter table now (requeued ones leave it), from the store.",
            by_sink,
            registry=registry,
        )


def outgoing(row: PendingEvent) -> OutgoingEvent:
    """The publisher's view of an outbox row; the saga type and time come from its body."""
    body = json.loads(row.body)
    time: datetime | None = None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        time = datetime.fromisoformat(str(body["time"]))
    return OutgoingEvent(
        event_id=row.event_id,
        saga_type=str(body.get("sagatype", "")),
        event_type=row.event_type,
        subject=row.saga_id,
        body=row.body,
        time=time,
    )


@dataclass
class _Partition:
    claim: PartitionClaim
    retry_at: float = 0.0
    failures: int = 0
    sent: set[int] = field(default_factory=set)
    """Rows published without a confirm: publishing them again is a republish."""
    refusals: dict[int, int] = field(default_factory=dict)


class SinkRelay:
    """Publishes the partitions of one broker sink this replica holds (see the module)."""

    def __init__(
        self,
        store: Store,
        sink: EventSink,
        publisher: Publisher,
        owner: str,
        settings: RelaySettings = RelaySettings(),
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.store = store
        self.sink = sink
        self.publisher = publisher
        self.lease = Lease(owner, settings.lease_seconds)
        self.settings = settings
        self.metrics = metrics
        self.wakeup = asyncio.Event()
        self._owned: dict[int, _Partition] = {}
        self._connected = False
        self._connect = _Partition(PartitionClaim(sink.name, -1, 0))
        """The connection's own backoff, kept like a partition's."""

    def wake(self) -> None:
        self.wakeup.set()

    @property
    def partitions(self) -> list[int]:
        """The partitions this replica holds now, in order."""
        return sorted(self._owned)

    async def run(self) -> None:
        """Until cancelled: keep the leases, publish, wait. Errors of the store or the
        broker are logged and retried; they never end the loop."""
        loop = asyncio.get_running_loop()
        next_claims = 0.0
        try:
            while True:
                self.wakeup.clear()
                try:
                    if loop.time() >= next_claims:
                        await self._keep_partitions()
                        next_claims = loop.time() + self.settings.lease_seconds / 3
                    busy = await self._publish_owned(loop.time())
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("event relay of sink %s: round failed", self.sink.name)
                    busy = False
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        # No delay after a wake-up: commits heard during a round are
                        # served together by the next one.
                        await asyncio.wait_for(self.wakeup.wait(), self._sleep(loop.time()))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.store.release_event_partitions(self.sink.name, self.lease.owner)
                )
            await self.publisher.close()

    def _sleep(self, now: float) -> float:
        pending = [*self._owned.values(), self._connect]
        waits = [p.retry_at - now for p in pending if p.retry_at > now]
        return max(0.01, min([self.settings.poll_seconds, *waits]))

    async def _keep_partitions(self) -> None:
        """Renew what is held, forget what was lost, claim free ones up to a fair share."""
        store, name = self.store, self.sink.name
        held = {c.partition: c for c in await store.renew_event_partitions(name, self.lease)}
        for partition in list(self._owned):
            if held.get(partition) != self._owned[partition].claim:
                logger.info("event relay of sink %s: lost partition %d", name, partition)
                del self._owned[partition]
        share = math.ceil(self.sink.partitions / await store.event_relays(self.lease))
        if len(self._owned) > share:
            # Another replica joined: hand it the excess (between batches, none in flight).
            excess = sorted(self._owned)[share:]
            await store.release_event_partitions(name, self.lease.owner, excess)
            for partition in excess:
                del self._owned[partition]
            logger.info(
                "event relay of sink %s: handed on partitions %s",
                name,
                ",".join(map(str, excess)),
            )
            return
        claims = await store.claim_event_partitions(
            name, self.sink.partitions, self.lease, share - len(self._owned)
        )
        for claim in claims:
            self._owned[claim.partition] = _Partition(claim)
        if claims:
            logger.info(
                "event relay of sink %s: claimed partitions %s",
                name,
                ",".join(str(c.partition) for c in claims),
            )

    async def _publish_owned(self, now: float) -> bool:
        """One round: the first rows of every partition due, read in one query and handed
        to the broker as one batch, then settled partition by partition; True when some
        partition may have more."""
        if not self._owned or now < self._connect.retry_at:
            return False
        if not self._connected:
            try:
                await self.publisher.connect()
            except PublishError as unreachable:
                self._wait_for_broker(unreachable, now)
                return False
            self._connected = True
            self._broker_back()
        due = {n: p for n, p in self._owned.items() if p.retry_at <= now}
        if not due:
            return False
        rows = await self.store.pending_events_of(
            self.sink.name, sorted(due), self.settings.batch_size
        )
        if not rows:
            return False
        failpoints.hit("relay_read")
        error = await self._publish(rows)
        confirmed = len(rows) if error is None else error.confirmed
        if confirmed:
            self._broker_back()
        if isinstance(error, BrokerUnavailable):
            self._wait_for_broker(error, now)
        elif isinstance(error, PublishFailed):
            logger.warning("event relay of sink %s: %s", self.sink.name, error)
        batches: dict[int, list[tuple[int, PendingEvent]]] = {}
        for index, row in enumerate(rows):
            batches.setdefault(row.partition, []).append((index, row))
        settlements = {
            number: self._settlement(
                due[number],
                [row for _, row in batch],
                error,
                confirmed=[row.id for index, row in batch if index < confirmed],
            )
            for number, batch in batches.items()
        }
        lost = await self.store.settle_partitions(
            self.lease, [s for s in settlements.values() if s.delivered or s.dead is not None]
        )
        for claim in lost:
            logger.info(
                "event relay of sink %s: partition %d taken over; its deletes are void",
                self.sink.name,
                claim.partition,
            )
            self._owned.pop(claim.partition, None)
        busy = False
        for number, batch in batches.items():
            if number in self._owned and self._settled(
                due[number], [row for _, row in batch], settlements[number], error, now
            ):
                busy = True
        return busy

    async def _publish(self, rows: Sequence[PendingEvent]) -> PublishError | None:
        """Hand the round to the broker; the failure, if any (it says what was confirmed)."""
        try:
            await self.publisher.publish([outgoing(row) for row in rows])
        except (EventRefused, PublishFailed) as error:
            return error
        failpoints.hit("relay_confirmed")
        return None

    def _settlement(
        self,
        partition: _Partition,
        rows: Sequence[PendingEvent],
        error: PublishError | None,
        confirmed: list[int],
    ) -> Settlement:
        """What to settle of a partition's rows of the round: the confirmed ones, and its
        refused event if that is out of attempts."""
        dead = self._refused(partition, rows, error) if isinstance(error, EventRefused) else None
        return Settlement(partition.claim, confirmed, dead)

    def _settled(
        self,
        partition: _Partition,
        rows: Sequence[PendingEvent],
        settled: Settlement,
        error: PublishError | None,
        now: float,
    ) -> bool:
        """The partition's bookkeeping once its rows of the round are settled; True when
        it may have more."""
        delivered, dead = settled.delivered, settled.dead
        republished = sum(1 for row in rows if row.id in partition.sent)
        partition.sent.update(row.id for row in rows)
        partition.sent.difference_update(delivered)
        if dead is not None:
            partition.sent.discard(dead.id)
            partition.refusals.pop(dead.id, None)
        self._count(len(delivered), republished, dead)
        if dead is not None:
            return True
        if len(delivered) < len(rows):
            refused_here = isinstance(error, EventRefused) and any(
                row.event_id == error.event_id for row in rows
            )
            if isinstance(error, EventRefused) and not refused_here:
                return True  # cut short by another partition's refused event: go on
            if not isinstance(error, BrokerUnavailable):  # that waits for the whole sink
                self._back_off(partition, now)
            return False
        partition.failures = 0
        return len(rows) == self.settings.batch_size

    def _refused(
        self, partition: _Partition, rows: Sequence[PendingEvent], error: EventRefused
    ) -> DeadEvent | None:
        row = next((r for r in rows if r.event_id == error.event_id), None)
        if row is None:
            return None
        attempts = partition.refusals.get(row.id, 0) + 1
        partition.refusals[row.id] = attempts
        logger.warning(
            "event relay of sink %s: event %s refused (attempt %d of %d): %s",
            self.sink.name,
            row.event_id,
            attempts,
            self.settings.max_refusals,
            error,
        )
        if attempts < self.settings.max_refusals:
            return None
        return DeadEvent(row.id, attempts, str(error)[:1000])

    def _wait_for_broker(self, error: PublishError, now: float) -> None:
        """The broker cannot be reached: the whole sink waits, at most
        `reconnect_seconds` between attempts (each one cheap), so a backlog starts
        draining soon after the broker is back."""
        if self._connect.failures == 0:
            logger.warning("event relay of sink %s: %s", self.sink.name, error)
        else:
            logger.debug("event relay of sink %s: %s", self.sink.name, error)
        self._back_off(self._connect, now, self.settings.reconnect_seconds)

    def _broker_back(self) -> None:
        """A confirm or a new connection: if the broker had been unreachable, every
        partition backing off tries again in the next round, rather than after its
        backoff. (A partition nacked while others are confirmed keeps its backoff, so
        it does not republish every round.)"""
        if not self._connect.failures:
            return
        logger.info("event relay of sink %s: the broker is back", self.sink.name)
        for partition in (*self._owned.values(), self._connect):
            partition.failures = 0
            partition.retry_at = 0.0

    def _back_off(self, partition: _Partition, now: float, longest: float | None = None) -> None:
        partition.failures += 1
        delay = self.settings.backoff_seconds * 2 ** min(partition.failures - 1, 10)
        cap = self.settings.max_backoff_seconds if longest is None else longest
        partition.retry_at = now + min(delay, cap)

    def _count(self, confirmed: int, republished: int, dead: DeadEvent | None) -> None:
        if self.metrics is None:
            return
        self.metrics.published.labels(self.sink.name).inc(confirmed)
        self.metrics.republished.labels(self.sink.name).inc(republished)
        if dead is not None:
            self.metrics.dead.labels(self.sink.name).inc()


class Relay:
    """Every broker sink's `SinkRelay` in this process, with their wake-ups and gauges."""

    def __init__(
        self,
        store: Store,
        sinks: Sequence[tuple[EventSink, Publisher]],
        owner: str,
        settings: RelaySettings = RelaySettings(),
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.sinks = [
            SinkRelay(store, sink, publisher, owner, settings, metrics) for sink, publisher in sinks
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self, sinks: Collection[str] | None = None) -> None:
        """Something was committed for these sinks (None: any): publish soon. Cheap;
        callable from any write."""
        for relay in self.sinks:
            if sinks is None or relay.sink.name in sinks:
                relay.wake()

    def start(self) -> None:
        for sink in self.sinks:
            self._tasks.append(asyncio.create_task(sink.run(), name=f"relay-{sink.sink.name}"))
        self._tasks.append(asyncio.create_task(self._follow(), name="relay-commits"))
        if self.metrics is not None:
            self._tasks.append(asyncio.create_task(self._gauge(), name="relay-backlog"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _follow(self) -> None:
        """Other replicas' commits, as the store hears them (PostgreSQL's commit
        notifications; nothing more on SQLite, where only this process writes)."""
        await self.store.follow_commits(lambda _saga_id: self.wake(), lambda _live: None)

    async def _gauge(self) -> None:
        metrics = self.metrics
        assert metrics is not None
        while True:
            try:
                backlog = await self.store.event_backlog()
                dead = await self.store.dead_event_counts()
                now = utc_now()
                for relay in self.sinks:
                    name = relay.sink.name
                    found = backlog.get(name)
                    metrics.pending.labels(name).set(0 if found is None else found.pending)
                    age = 0.0 if found is None else (now - found.oldest).total_seconds()
                    metrics.oldest_pending.labels(name).set(max(0.0, age))
                    metrics.dead_letters.labels(name).set(dead.get(name, 0))
            except Exception as error:
                logger.warning("event backlog unreadable: %s", error)
            await asyncio.sleep(self.settings.backlog_seconds)


__all__ = ["Relay", "RelayMetrics", "RelaySettings", "SinkRelay", "outgoing"]
