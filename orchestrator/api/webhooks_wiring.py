"""What `saga serve --webhooks` adds to a server: the `webhooks` event sink with its
fan-out publisher, the delivery worker, and the SagaWebhooks service.

`server.py` calls this in a few lines: `sinks()` before the store opens (the store
writes the sink's outbox rows), `start(store, ...)` once it is open, `stop()` at
shutdown. Without --webhooks (and no completion webhooks allowed) there is no sink and
no worker, and the service answers FAILED_PRECONDITION.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from orchestrator.api.servicer import SagaOrchestratorService
from orchestrator.api.webhooks_admin import SERVICE_NAME, SagaWebhooksService, add_to_server
from orchestrator.core.errors import ConfigurationError
from orchestrator.core.events import EventSet, EventSink
from orchestrator.events.brokers import Publisher
from orchestrator.events.config import ConfiguredSink, EventsConfig
from orchestrator.events.webhook_delivery import (
    DeliveryWorker,
    WebhookFanout,
    WebhookMetrics,
    WebhookSettings,
)
from orchestrator.events.webhooks import DEFAULT_RETRY_DELAYS, RetrySchedule, secret_key
from orchestrator.security.auth import webhook_rules
from orchestrator.store import Store
from orchestrator.store.webhooks import WebhookRows
from orchestrator.telemetry.metrics import SagaMetrics
from saga.v1 import webhooks_pb2

logger = logging.getLogger(__name__)

WEBHOOKS_SINK = "webhooks"
WEBHOOKS_SERVICE = SERVICE_NAME
WEBHOOKS_AUTH = webhook_rules(webhooks_pb2.DESCRIPTOR.services_by_name["SagaWebhooks"])
"""The SagaWebhooks RPCs' roles by full method path, for the server's auth policy."""


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """The webhook flags of `saga serve` (docs/events.md, Webhooks)."""

    enabled: bool = False
    events: EventSet = EventSet.LIFECYCLE
    allow_private: bool = False
    timeout_seconds: float = 10.0
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    completion_allow: tuple[str, ...] = ()
    completion_secret: str | None = None
    max_in_flight: int = 32

    @property
    def active(self) -> bool:
        """Whether the sink runs: for endpoints, or for completion webhooks."""
        return self.enabled or bool(self.completion_allow)

    def check(self) -> None:
        if self.timeout_seconds <= 0:
            raise ConfigurationError("--webhooks-timeout must be positive")
        if not self.retry_delays or any(delay < 0 for delay in self.retry_delays):
            raise ConfigurationError("--webhooks-retry-delays: one or more delays, none negative")
        if self.completion_allow and not self.completion_secret:
            raise ConfigurationError(
                "--completion-webhook-allow needs --completion-webhook-secret "
                "(env SAGA_COMPLETION_WEBHOOK_SECRET) to sign completion webhooks"
            )
        if self.completion_secret:
            try:
                secret_key(self.completion_secret)
            except ValueError as error:
                raise ConfigurationError(f"--completion-webhook-secret: {error}") from None
        for prefix in self.completion_allow:
            # The host must end in the prefix ("https://hooks.example.com/"): without the
            # slash, "https://hooks.example.com.evil.net/" would pass too.
            scheme, _, rest = prefix.partition("://")
            host, slash, _ = rest.partition("/")
            if scheme not in ("http", "https") or not host or not slash:
                raise ConfigurationError(
                    f"--completion-webhook-allow {prefix!r}: give a URL prefix with a host "
                    "and a path, e.g. https://hooks.example.com/"
                )

    def settings(self) -> WebhookSettings:
        return WebhookSettings(
            allow_private=self.allow_private,
            timeout_seconds=self.timeout_seconds,
            schedule=RetrySchedule(delays=self.retry_delays),
            completion_secret=self.completion_secret,
            endpoints=self.enabled,
            max_in_flight=self.max_in_flight,
        )


class Webhooks:
    """The webhook parts of one server process."""

    def __init__(self, config: WebhooksConfig, owner: str) -> None:
        config.check()
        self.config = config
        self.owner = owner
        self.settings = config.settings()
        self.sink = EventSink(WEBHOOKS_SINK, events=config.events) if config.active else None
        self.worker: DeliveryWorker | None = None
        self._fanout: WebhookFanout | None = None
        self.service = SagaWebhooksService(None)

    def sinks(self) -> list[tuple[EventSink, Publisher]]:
        """The `webhooks` sink and its publisher (none when webhooks are off)."""
        if self.sink is None:
            return []
        self._fanout = WebhookFanout(None, self.settings)
        return [(self.sink, self._fanout)]

    def described(self, events: EventsConfig) -> list[ConfiguredSink]:
        """The broker sinks and, when it runs, the webhooks sink, as SagaEvents lists them."""
        described = events.described()
        if self.sink is not None:
            target = "registered endpoints" if self.config.enabled else "completion webhooks"
            described.append(ConfiguredSink(self.sink, WEBHOOKS_SINK, target))
        return described

    def start(
        self,
        store: Store,
        saga_metrics: SagaMetrics | None,
        servicer: SagaOrchestratorService,
    ) -> None:
        """Once the store is open: the worker, the service on the store, and StartSaga
        told which completion webhooks it may take."""
        servicer.completion_allow = self.config.completion_allow
        if self.sink is None:
            return
        assert isinstance(store, WebhookRows) and self._fanout is not None
        # In the relay's registry, with every other metric of the process.
        metrics = None if saga_metrics is None else WebhookMetrics(saga_metrics.registry)
        self.worker = DeliveryWorker(store, self.owner, self.settings, metrics)
        self._fanout.store = store
        self._fanout.wake = self.worker.wake
        self.service.attach(
            store, self.config.allow_private, self.worker.wake, endpoints=self.config.enabled
        )
        self.worker.start()
        logger.info(
            "webhooks: %s events to registered endpoints%s%s",
            self.config.events.value,
            ", private targets allowed" if self.config.allow_private else "",
            "; completion webhooks allowed" if self.config.completion_allow else "",
        )

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()

    def register(self, server: grpc.aio.Server) -> tuple[str, ...]:
        """Adds the SagaWebhooks service to `server`; returns its name (for reflection)."""
        add_to_server(self.service, server)
        return (SERVICE_NAME,)


__all__ = ["WEBHOOKS_AUTH", "WEBHOOKS_SERVICE", "WEBHOOKS_SINK", "Webhooks", "WebhooksConfig"]
