"""Publishers that hand a batch of events to a broker and return only once it holds them.

The relay reads a batch from the outbox, calls `await publisher.publish(batch)` and
deletes the rows only when that returns: every item of the batch is then *confirmed*
(RabbitMQ publisher confirms, a NATS JetStream PubAck). When `publish` raises, the
error says how many leading items are known confirmed (`confirmed`); the relay deletes
those and goes back to the first unconfirmed one. Republishing means duplicates with
the same event id, never reordering: items are written to the connection in batch
order, and the errors never claim an item confirmed unless every item before it is.

Two kinds of failure, told apart by class:

- `PublishFailed` (nack, timeout, lost or refused connection): transient; retry the
  unconfirmed items later, unchanged.
- `EventRefused`: the broker refuses *this* event whatever the retry (too large,
  a routing key it cannot take); `event_id` names it, so the relay can count its
  attempts and dead-letter it.

Routing. Both brokers address an event by `<saga type>.<event name>`, where the event
name is the CloudEvents type without its reverse-DNS prefix and version
(`…saga.completed.v1` -> `saga.completed`, `…step.failed.v1` -> `step.failed`; see
`event_name`). The saga type is one token: characters other than ASCII letters, digits,
`-` and `_` (dots above all, but also `*`, `#`, `>` and spaces, which are wildcards or
separators in AMQP topics and NATS subjects) are percent-encoded, so `shop.checkout`
becomes `shop%2Echeckout` and a binding `shop%2Echeckout.#` sees exactly that saga
type (`escape_token`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

logger = logging.getLogger(__name__)

CLOUDEVENTS_JSON = "application/cloudevents+json"
"""The content type of a structured-mode CloudEvents JSON body."""

AMQP_MAX_ROUTING_KEY = 255
"""AMQP 0-9-1 routing keys are a short string: at most 255 bytes."""


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One event on its way to a broker: its id, where it goes, and its encoded body.

    `body` is the structured CloudEvents JSON as it will be delivered, byte for byte;
    `event_type` its CloudEvents `type`, `subject` its `subject` (the saga id) and `time`
    its `time` (the transition's), used for the AMQP timestamp (now when None).
    """

    event_id: str
    saga_type: str
    event_type: str
    subject: str
    body: bytes
    time: datetime | None = None
    content_type: str = CLOUDEVENTS_JSON


class PublishError(Exception):
    """Base of the publishers' errors.

    `confirmed` is how many leading items of the batch are known confirmed by the broker
    (items 0 .. confirmed-1); the others may or may not have reached it and must be
    published again, starting with item `confirmed`.
    """

    def __init__(self, message: str, *, confirmed: int = 0) -> None:
        super().__init__(message)
        self.confirmed = confirmed


class PublishFailed(PublishError):
    """A transient failure: the unconfirmed items may succeed if published again later."""


class PublishNacked(PublishFailed):
    """The broker answered an item with a negative acknowledgement (RabbitMQ basic.nack)."""


class PublishTimeout(PublishFailed):
    """Not every confirm arrived within the publisher's confirm timeout."""


class BrokerUnavailable(PublishFailed):
    """No connection to the broker (refused, lost, closed) or the broker's stream is missing."""


class EventRefused(PublishError):
    """The broker refuses this event itself and will again: dead-letter it, don't loop.

    `event_id` names the refused item; `confirmed` still counts the leading items known
    confirmed (at most the refused item's index).
    """

    def __init__(self, message: str, *, event_id: str, confirmed: int = 0) -> None:
        super().__init__(message, confirmed=confirmed)
        self.event_id = event_id


@runtime_checkable
class Publisher(Protocol):
    """What the relay needs from a broker sink."""

    async def connect(self) -> None:
        """Connect and declare what the sink needs (exchanges, queues, stream);
        raises `BrokerUnavailable` when the broker cannot be reached."""

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        """Return when every item of `batch` is confirmed; raise a `PublishError` otherwise."""

    async def close(self) -> None:
        """Close the connection; idempotent."""


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_VERSION = re.compile(r"v[0-9]+")


def escape_token(value: str) -> str:
    """`value` as one routing-key word or subject token: every character outside
    `[A-Za-z0-9_-]` percent-encoded as its UTF-8 bytes (`.` -> `%2E`, `%` -> `%25`)."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)


def event_name(event_type: str) -> str:
    """The routing name of a CloudEvents type: its last two words before the version.

    `dev.saga-orchestrator.saga.completed.v1` -> `saga.completed`; a type of one or two
    words is kept whole (without a trailing `vN`).
    """
    words = event_type.split(".")
    if len(words) > 1 and _VERSION.fullmatch(words[-1]):
        words = words[:-1]
    return ".".join(escape_token(word) for word in words[-2:])


def routing_key(event: OutgoingEvent) -> str:
    """`<escaped saga type>.<event name>`, the RabbitMQ routing key and NATS subject tail."""
    return f"{escape_token(event.saga_type)}.{event_name(event.event_type)}"


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", url)


def confirmed_prefix(results: Sequence[BaseException | object | None]) -> int:
    """How many leading results are successes (neither an exception nor missing)."""
    count = 0
    for result in results:
        if result is None or isinstance(result, BaseException):
            break
        count += 1
    return count


__all__ = [
    "CLOUDEVENTS_JSON",
    "BrokerUnavailable",
    "EventRefused",
    "OutgoingEvent",
    "PublishError",
    "PublishFailed",
    "PublishNacked",
    "PublishTimeout",
    "Publisher",
    "confirmed_prefix",
    "escape_token",
    "event_name",
    "routing_key",
    "safe_url",
]
