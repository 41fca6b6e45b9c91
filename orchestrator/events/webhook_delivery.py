"""Webhooks as an event sink: the fan-out publisher and the delivery worker.

The `webhooks` sink's outbox rows reach `WebhookFanout` through the relay, like a
broker's. Publishing one is writing a delivery per endpoint that takes it (and, for a
saga's terminal event, one to its completion webhook), all in one transaction and
unique on (endpoint, event): the relay's at-least-once republish never makes a second
delivery. The relay then deletes the outbox rows.

Every replica runs a `DeliveryWorker`: it claims due deliveries (a lease by the database
clock, each endpoint within its `max_concurrency`, see `orchestrator.store.webhooks`),
POSTs each with the Standard Webhooks headers (`orchestrator.events.webhooks`), and
settles it: delivered on 2xx; on 410 Gone the delivery is failed and its endpoint
disabled; otherwise (3xx, as redirects are not followed, 4xx, 5xx, a timeout, a refused
address) the next attempt is scheduled by the `RetrySchedule`, at least as late as the
receiver's `Retry-After` (capped), and once the schedule is spent the delivery is dead.

Each attempt checks its target afresh: `resolve_target` refuses a private or loopback
address (unless allowed) for a literal IP or a name, and the session's resolver checks
again the very addresses it connects to, so a name re-pointed at a private address
between the two (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.core.clock import utc_now
from orchestrator.core.events import CONTENT_TYPE
from orchestrator.core.records import Lease
from orchestrator.core.webhooks import (
    COMPLETION_ENDPOINT,
    TERMINAL_EVENT_TYPES,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    NewDelivery,
    WebhookEndpoint,
)
from orchestrator.events.brokers import OutgoingEvent, PublishFailed
from orchestrator.events.webhooks import (
    Outcome,
    RetrySchedule,
    TargetRefused,
    check_addresses,
    outcome_of,
    parse_retry_after,
    resolve_target,
    signature_headers,
)
from orchestrator.store.webhooks import WebhookRows

logger = logging.getLogger(__name__)

USER_AGENT = "saga-orchestrator-webhooks/1"
FORGET_BATCH = 1000
"""Delivered deliveries deleted per round (every `gauge_seconds`), at most."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """How deliveries are made; the defaults suit production."""

    allow_private: bool = False
    """Deliver to private, loopback and link-local addresses (tests, a local demo)."""
    timeout_seconds: float = 10.0
    """The bound on one attempt, connecting included; a slower receiver is retried."""
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    completion_secret: str | None = None
    """Signs completion webhooks; None when the operator allows none."""
    endpoints: bool = True
    """Deliver to registered endpoints (--webhooks); False when the sink runs only for
    completion webhooks, so endpoints registered in an earlier run get nothing."""
    max_in_flight: int = 32
    """Attempts one replica makes at once, every endpoint together."""
    poll_seconds: float = 1.0
    """The longest a worker waits without a wake-up (others' new deliveries, retries)."""
    gauge_seconds: float = 5.0
    keep_delivered: timedelta = timedelta(days=7)
    """How long a delivered delivery stays listed before it is deleted."""

    @property
    def lease_seconds(self) -> float:
        """A claimed attempt's lease: longer than the attempt can take, so a delivery is
        not claimed twice while one is in flight."""
        return self.timeout_seconds + 30.0


class WebhookMetrics:
    """The webhook deliveries' Prometheus metrics, in the relay's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "saga_webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, failed (retried later), "
            "dead (the schedule spent), disabled (410 Gone disabled the endpoint).",
            ("outcome",),
            registry=registry,
        )
        self.latency = Histogram(
            "saga_webhook_delivery_seconds",
            "Time of one webhook delivery attempt, from sending to the answer.",
            registry=registry,
        )
        self.pending = Gauge(
            "saga_webhook_deliveries_pending",
            "Webhook deliveries waiting for an attempt (or in flight).",
            registry=registry,
        )


class WebhookFanout:
    """The `webhooks` sink's `Publisher`: writes a delivery per (matching endpoint, event).

    `publish` returns once the deliveries are committed, so the relay deletes the outbox
    rows only then; a store error is a `PublishFailed` (the relay backs off, retries)."""

    def __init__(
        self,
        store: WebhookRows | None,
        settings: WebhookSettings,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.wake = wake

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        if self.store is None:
            raise PublishFailed("the webhook store is not open yet")
        try:
            deliveries = await self._deliveries(self.store, batch)
            await self.store.add_webhook_deliveries(deliveries)
        except Exception as error:
            raise PublishFailed(f"cannot write webhook deliveries: {error}") from error
        if deliveries and self.wake is not None:
            self.wake()

    async def _deliveries(
        self, store: WebhookRows, batch: Sequence[OutgoingEvent]
    ) -> list[NewDelivery]:
        endpoints = await store.enabled_webhook_endpoints() if self.settings.endpoints else []
        completions: dict[str, str] = {}
        if self.settings.completion_secret:
            ended = [event.subject for event in batch if event.event_type in TERMINAL_EVENT_TYPES]
            completions = await store.completion_webhooks(ended)
        deliveries: list[NewDelivery] = []
        for event in batch:
            namespace = _namespace(event.body)
            for endpoint in endpoints:
                if endpoint.takes(event.event_type, event.saga_type, namespace):
                    deliveries.append(_delivery(endpoint.endpoint_id, event))
            url = completions.get(event.subject)
            if url and event.event_type in TERMINAL_EVENT_TYPES:
                deliveries.append(_delivery(COMPLETION_ENDPOINT, event, url))
        return deliveries


def _delivery(endpoint_id: str, event: OutgoingEvent, url: str = "") -> NewDelivery:
    return NewDelivery(
        endpoint_id=endpoint_id,
        event_id=event.event_id,
        saga_id=event.subject,
        event_type=event.event_type,
        body=event.body,
        url=url,
    )


def _namespace(body: bytes) -> str:
    try:
        value = json.loads(body).get("namespace", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


class CheckedResolver(AbstractResolver):
    """Resolves as aiohttp does, then refuses the answer unless every address may be a
    target: the addresses checked are the ones connected to."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        check_addresses([item["host"] for item in found], allow_private=self._allow_private)
        return found

    async def close(self) -> None:
        await self._inner.close()


class DeliveryWorker:
    """Claims this replica's share of due deliveries and attempts them (see the module)."""

    def __init__(
        self,
        store: WebhookRows,
        owner: str,
        settings: WebhookSettings,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.settings = settings
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()

    def wake(self) -> None:
        self._wake.set()

    async def _forget_delivered(self) -> None:
        try:
            await self.store.forget_delivered_webhooks(
                utc_now() - self.settings.keep_delivered, FORGET_BATCH
            )
        except Exception as error:
            logger.warning("cannot delete old webhook deliveries: %s", error)

    def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=CheckedResolver(self.settings.allow_private), use_dns_cache=False
        )
        self._session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": USER_AGENT}
        )
        self._tasks.append(asyncio.create_task(self._run(), name="webhook-deliveries"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="webhook-housekeeping"))

    async def stop(self) -> None:
        for task in [*self._tasks, *self._attempts]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._attempts, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        lease = Lease(self.owner, self.settings.lease_seconds)
        while True:
            free = self.settings.max_in_flight - len(self._attempts)
            claimed: list[Delivery] = []
            if free > 0:
                try:
                    claimed = await self.store.claim_webhook_deliveries(lease, free)
                except Exception as error:
                    logger.warning("cannot claim webhook deliveries: %s", error)
            for delivery in claimed:
                task = asyncio.create_task(self._attempt(delivery))
                self._attempts.add(task)
                task.add_done_callback(self._attempt_done)
            if claimed and len(claimed) == free:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_seconds):
                    await self._wake.wait()

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        self._wake.set()  # a slot is free; the endpoint's cap may allow another

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            result = await self._deliver(delivery)
            settled = await self.store.settle_webhook_delivery(
                delivery.delivery_id, self.owner, result
            )
            due_soon = result.delay < self.settings.poll_seconds
            if settled and result.status is DeliveryStatus.PENDING and due_soon:
                # Due before the next poll: be awake for it.
                asyncio.get_running_loop().call_later(result.delay, self.wake)
            if not settled:
                logger.info(
                    "webhook delivery %d was taken over or deleted; its result is void",
                    delivery.delivery_id,
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "webhook delivery %d of saga %s failed unexpectedly",
                delivery.delivery_id,
                delivery.saga_id,
            )

    async def _deliver(self, delivery: Delivery) -> AttemptResult:
        endpoint: WebhookEndpoint | None = None
        if delivery.endpoint_id == COMPLETION_ENDPOINT:
            url, secrets = delivery.url, [self.settings.completion_secret or ""]
            if not secrets[0]:
                return self._failed(delivery, 0, "no --completion-webhook-secret configured")
        else:
            endpoint = await self.store.get_webhook_endpoint(delivery.endpoint_id)
            if endpoint is None or not endpoint.enabled:
                # Deleted or disabled since the claim: nothing to do until it is enabled.
                return AttemptResult(DeliveryStatus.PENDING, delay=0.0, error="endpoint disabled")
            url, secrets = endpoint.url, endpoint.signing_secrets(utc_now())
        started = time.monotonic()
        try:
            status, retry_after = await self._post(url, secrets, delivery)
        except (TargetRefused, aiohttp.ClientError, TimeoutError, ValueError, OSError) as error:
            self._observe(started)
            text = str(error) or type(error).__name__
            if isinstance(error, TimeoutError):
                text = f"no answer within {self.settings.timeout_seconds:g} s"
            return self._failed(delivery, 0, text)
        self._observe(started)
        outcome = outcome_of(status)
        if outcome is Outcome.DELIVERED:
            self._count("delivered")
            return AttemptResult(DeliveryStatus.DELIVERED, http_status=status)
        if outcome is Outcome.DISABLE:
            reason = f"the endpoint answered 410 Gone (delivery {delivery.delivery_id})"
            if endpoint is not None:
                await self.store.disable_webhook_endpoint(endpoint.endpoint_id, reason)
                logger.warning("webhook endpoint %s disabled: %s", endpoint.endpoint_id, reason)
            self._count("disabled")
            return AttemptResult(DeliveryStatus.FAILED, http_status=status, error=reason)
        what = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        return self._failed(delivery, status, what, retry_after)

    async def _post(
        self, url: str, secrets: list[str], delivery: Delivery
    ) -> tuple[int, float | None]:
        assert self._session is not None
        await resolve_target(url, allow_private=self.settings.allow_private)
        headers = signature_headers(
            secrets, delivery.event_id, delivery.body, timestamp=int(time.time())
        )
        headers["Content-Type"] = CONTENT_TYPE
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        async with self._session.post(
            url, data=delivery.body, headers=headers, allow_redirects=False, timeout=timeout
        ) as response:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=utc_now())
            return response.status, retry_after

    def _failed(
        self, delivery: Delivery, status: int, error: str, retry_after: float | None = None
    ) -> AttemptResult:
        delay = self.settings.schedule.delay_after(
            max(delivery.attempts, 1), rng=self._rng, retry_after=retry_after
        )
        if delay is None:
            self._count("dead")
            logger.warning(
                "webhook delivery %d of saga %s is dead after %d attempts: %s",
                delivery.delivery_id,
                delivery.saga_id,
                delivery.attempts,
                error,
            )
            return AttemptResult(DeliveryStatus.DEAD, http_status=status, error=error)
        self._count("failed")
        logger.info(
            "webhook delivery %d of saga %s failed (attempt %d): %s; next in %.1f s",
            delivery.delivery_id,
            delivery.saga_id,
            delivery.attempts,
            error,
            delay,
        )
        return AttemptResult(DeliveryStatus.PENDING, delay=delay, http_status=status, error=error)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.attempts.labels(outcome).inc()

    def _observe(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.latency.observe(time.monotonic() - started)

    async def _housekeeping(self) -> None:
        """The pending gauge, and old delivered deliveries deleted, every `gauge_seconds`."""
        while True:
            if self.metrics is not None:
                try:
                    pending = await self.store.pending_webhook_deliveries()
                    self.metrics.pending.set(sum(pending.values()))
                except Exception as error:
                    logger.warning("webhook backlog unreadable: %s", error)
            await self._forget_delivered()
            await asyncio.sleep(self.settings.gauge_seconds)


__all__ = [
    "CheckedResolver",
    "DeliveryWorker",
    "WebhookFanout",
    "WebhookMetrics",
    "WebhookSettings",
]
