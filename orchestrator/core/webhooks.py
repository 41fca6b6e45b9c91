"""Webhook endpoints and deliveries as records, and which events an endpoint takes (pure).

An endpoint is registered by an operator at runtime; the `webhooks` event sink's relay
writes one `NewDelivery` per (endpoint that `takes` the event, event), and delivery
workers attempt each until it is delivered, dead (the retry schedule spent) or failed
(the endpoint answered 410 Gone and was disabled). A saga's completion webhook is a
delivery of its terminal event to the URL its start named, under the pseudo endpoint
`COMPLETION_ENDPOINT`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from orchestrator.core.errors import ErrorCode, SagaError
from orchestrator.core.events import EVENT_TYPES, TYPE_PREFIX
from orchestrator.core.records import TransitionEvent

COMPLETION_ENDPOINT = "completion"
"""The endpoint id of completion webhooks (a real endpoint's id starts with `ep_`)."""
ENDPOINT_ID_PREFIX = "ep_"
DEFAULT_MAX_CONCURRENCY = 4
MAX_CONCURRENCY_LIMIT = 100
COMPLETION_CONCURRENCY = 16
"""Completion deliveries in flight at once, all sagas together, across replicas."""
DEFAULT_OVERLAP_SECONDS = 24 * 3600
MAX_OVERLAP_SECONDS = 30 * 24 * 3600

TERMINAL_EVENT_TYPES = frozenset(
    EVENT_TYPES[event]
    for event in (
        TransitionEvent.SAGA_COMPLETED,
        TransitionEvent.SAGA_FAILED,
        TransitionEvent.SAGA_ABORTED,
    )
)
"""The events a completion webhook delivers: the saga ended."""


class DeliveryStatus(enum.StrEnum):
    """Where a delivery stands (the `status` column)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """The receiver answered 410 Gone; its endpoint was disabled."""
    DEAD = "dead"
    """Every attempt of the retry schedule failed."""


def short_type(event_type: str) -> str:
    """`org.saga-orchestrator.saga.completed.v1` -> `saga.completed`."""
    name = event_type.removeprefix(TYPE_PREFIX)
    head, dot, version = name.rpartition(".")
    return head if dot and version.startswith("v") and version[1:].isdigit() else name


KNOWN_EVENT_NAMES = frozenset(
    {*EVENT_TYPES.values(), *(short_type(value) for value in EVENT_TYPES.values())}
)


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A registered receiver. Empty filters take everything the sink carries."""

    endpoint_id: str
    url: str
    secret: str
    description: str = ""
    event_types: tuple[str, ...] = ()
    saga_types: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    enabled: bool = True
    disabled_reason: str = ""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    previous_secret: str | None = None
    previous_secret_expires: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None

    def takes(self, event_type: str, saga_type: str, namespace: str) -> bool:
        """Whether an event passes the endpoint's filters."""
        if self.event_types and not (
            event_type in self.event_types or short_type(event_type) in self.event_types
        ):
            return False
        if self.saga_types and saga_type not in self.saga_types:
            return False
        return not self.namespaces or namespace in self.namespaces

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery now: the current one, and the previous one
        while its overlap lasts (a receiver holding either verifies)."""
        signing = [self.secret]
        expires = self.previous_secret_expires
        if self.previous_secret and expires is not None and now < expires:
            signing.append(self.previous_secret)
        return signing


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to write: one event for one endpoint (or a completion URL)."""

    endpoint_id: str
    event_id: str
    saga_id: str
    event_type: str
    body: bytes
    url: str = ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery as stored."""

    delivery_id: int
    endpoint_id: str
    event_id: str
    saga_id: str
    event_type: str
    body: bytes
    status: DeliveryStatus
    attempts: int
    url: str = ""
    last_http_status: int = 0
    last_error: str = ""
    next_attempt_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which deliveries a listing returns; None means any."""

    endpoint_id: str | None = None
    status: DeliveryStatus | None = None
    saga_id: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt ended with, as the worker settles it."""

    status: DeliveryStatus
    delay: float = 0.0
    """Seconds until the next attempt (a pending delivery)."""
    http_status: int = 0
    error: str = ""


class WebhooksOff(SagaError):
    """A webhook RPC reached a server running without webhooks."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "WEBHOOKS_OFF"

    def __init__(self) -> None:
        super().__init__("webhooks are off on this server: start it with --webhooks")


class WebhookEndpointNotFound(SagaError):
    """No webhook endpoint has the requested id."""

    code = ErrorCode.NOT_FOUND
    reason = "WEBHOOK_ENDPOINT_NOT_FOUND"


class WebhookDeliveryNotRetryable(SagaError):
    """A delivery asked to be retried is not dead or failed, or its endpoint is disabled."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "WEBHOOK_DELIVERY_NOT_RETRYABLE"


class CompletionWebhookRefused(SagaError):
    """A StartSaga names a completion webhook the server does not allow."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "COMPLETION_WEBHOOK_NOT_ALLOWED"


def allowed_completion_url(url: str, allow: tuple[str, ...]) -> str | None:
    """A StartSaga's completion webhook URL (None when it names none), refused unless it
    starts with a prefix of the operator's allow-list."""
    if not url:
        return None
    if not allow:
        raise CompletionWebhookRefused(
            "completion webhooks are off on this server: the operator allows them with "
            "--completion-webhook-allow PREFIX"
        )
    if len(url) > 2048 or not url.isprintable() or not any(url.startswith(p) for p in allow):
        raise CompletionWebhookRefused(
            f"completion_webhook_url {url[:200]!r} starts with none of the prefixes the "
            "server allows (--completion-webhook-allow)"
        )
    return url
