"""The SagaWebhooks service: operators register webhook endpoints and look after their
deliveries (docs/events.md, Webhooks).

Thin, like the orchestrator's servicer: requests are checked here, rows are the store's
(`orchestrator.store.webhooks`), errors leave through `orchestrator.api.status`. A
secret is answered only by Create and Rotate. A target is checked when it is
registered (and again at every delivery, by the worker): a private or loopback address
is INVALID_ARGUMENT unless the server allows private targets.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from orchestrator.api.handlers import Handler, mapped_errors
from orchestrator.api.request_checks import check_id
from orchestrator.core.clock import utc_now
from orchestrator.core.errors import InvalidArgument
from orchestrator.core.limits import check_enum
from orchestrator.core.payload import check_message_text
from orchestrator.core.webhooks import (
    COMPLETION_ENDPOINT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_OVERLAP_SECONDS,
    ENDPOINT_ID_PREFIX,
    KNOWN_EVENT_NAMES,
    MAX_CONCURRENCY_LIMIT,
    MAX_OVERLAP_SECONDS,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    WebhookDeliveryNotRetryable,
    WebhookEndpoint,
    WebhookEndpointNotFound,
    WebhooksOff,
)
from orchestrator.events.webhooks import TargetRefused, generate_secret, resolve_target
from orchestrator.store.webhooks import WebhookRows
from saga.v1 import webhooks_pb2 as pb
from saga.v1 import webhooks_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

Response = TypeVar("Response")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_URL_LENGTH = 2048
MAX_FILTER_ITEMS = 100
MAX_RETRY_IDS = 1000
UPDATABLE = frozenset(
    {"url", "description", "event_types", "saga_types", "namespaces", "enabled", "max_concurrency"}
)


def _checked_first(self: Any, request: Any) -> None:
    """Off: FAILED_PRECONDITION before any check of the request; then its text."""
    self._rows()
    check_message_text(request)


def _mapped_errors(method: Handler[Response]) -> Handler[Response]:
    return mapped_errors(method, before=_checked_first)


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def endpoint_to_proto(endpoint: WebhookEndpoint, now: datetime | None = None) -> pb.WebhookEndpoint:
    """The endpoint as the API shows it: never its secrets."""
    message = pb.WebhookEndpoint(
        endpoint_id=endpoint.endpoint_id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=endpoint.event_types,
        saga_types=endpoint.saga_types,
        namespaces=endpoint.namespaces,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        max_concurrency=endpoint.max_concurrency,
        create_time=_timestamp(endpoint.create_time),
        update_time=_timestamp(endpoint.update_time),
    )
    expires = endpoint.previous_secret_expires
    if endpoint.previous_secret and expires is not None and expires > (now or utc_now()):
        message.previous_secret_expire_time.FromDatetime(expires)
    return message


_STATUSES = {
    DeliveryStatus.PENDING: pb.WEBHOOK_DELIVERY_STATUS_PENDING,
    DeliveryStatus.DELIVERED: pb.WEBHOOK_DELIVERY_STATUS_DELIVERED,
    DeliveryStatus.FAILED: pb.WEBHOOK_DELIVERY_STATUS_FAILED,
    DeliveryStatus.DEAD: pb.WEBHOOK_DELIVERY_STATUS_DEAD,
}


def delivery_to_proto(delivery: Delivery) -> pb.WebhookDelivery:
    message = pb.WebhookDelivery(
        delivery_id=delivery.delivery_id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        saga_id=delivery.saga_id,
        status=_STATUSES[delivery.status],
        attempts=delivery.attempts,
        last_http_status=delivery.last_http_status,
        last_error=delivery.last_error,
        create_time=_timestamp(delivery.create_time),
        update_time=_timestamp(delivery.update_time),
        url=delivery.url,
    )
    if delivery.status is DeliveryStatus.PENDING and delivery.next_attempt_time is not None:
        message.next_attempt_time.FromDatetime(delivery.next_attempt_time)
    return message


def _page_size(size: int) -> int:
    if size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {size}")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _token(position: object, kind: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, position]).encode()).decode()


def _position(token: str, kind: str, of_type: type) -> Any:
    """The position a page token of `kind` holds; INVALID_ARGUMENT for any other text."""
    if not token:
        return None
    try:
        found_kind, position = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument("page_token is not one this server issued") from None
    if found_kind != kind or not isinstance(position, of_type) or isinstance(position, bool):
        raise InvalidArgument("page_token is not one this server issued")
    return position


def _check_list(name: str, values: Any, check: Callable[[str, str], None]) -> tuple[str, ...]:
    if len(values) > MAX_FILTER_ITEMS:
        raise InvalidArgument(f"{name} holds at most {MAX_FILTER_ITEMS} values")
    for value in values:
        check(name, value)
    return tuple(dict.fromkeys(values))


def _check_event_type(name: str, value: str) -> None:
    if value not in KNOWN_EVENT_NAMES:
        known = ", ".join(sorted(name for name in KNOWN_EVENT_NAMES if "-" not in name))
        raise InvalidArgument(f"{name}: unknown event type {value!r}; known: {known}")


class SagaWebhooksService(pb_grpc.SagaWebhooksServicer):
    """Endpoints and deliveries; every RPC FAILED_PRECONDITION when `store` is None
    (the server runs without --webhooks)."""

    def __init__(
        self, store: WebhookRows | None, *, allow_private: bool = False, wake: Any = None
    ) -> None:
        self._store = store
        self._allow_private = allow_private
        self._wake = wake
        self._endpoints = False

    def attach(
        self,
        store: WebhookRows,
        allow_private: bool,
        wake: Callable[[], None],
        *,
        endpoints: bool = True,
    ) -> None:
        """Webhooks are on: serve from `store`. Without `endpoints` (only completion
        webhooks are on) no endpoint may be created; deliveries are listed and retried."""
        self._store, self._allow_private, self._wake = store, allow_private, wake
        self._endpoints = endpoints

    def _rows(self) -> WebhookRows:
        if self._store is None:
            raise WebhooksOff()
        return self._store

    async def _endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        check_id("endpoint_id", endpoint_id)
        endpoint = await self._rows().get_webhook_endpoint(endpoint_id)
        if endpoint is None:
            raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id!r}")
        return endpoint

    async def _checked_url(self, url: str) -> str:
        if not url:
            raise InvalidArgument("url is required")
        if len(url) > MAX_URL_LENGTH or not url.isprintable():
            raise InvalidArgument(f"url must be printable and at most {MAX_URL_LENGTH} characters")
        try:
            await resolve_target(url, allow_private=self._allow_private)
        except TargetRefused as error:
            hint = " (or start the server with --webhooks-allow-private)"
            raise InvalidArgument(f"url refused: {error}{hint}") from None
        return url

    def _fields(self, message: pb.WebhookEndpoint) -> dict[str, Any]:
        if len(message.description) > 1000:
            raise InvalidArgument("description is longer than 1000 characters")
        concurrency = message.max_concurrency or DEFAULT_MAX_CONCURRENCY
        if not 1 <= concurrency <= MAX_CONCURRENCY_LIMIT:
            raise InvalidArgument(
                f"max_concurrency must be 1 to {MAX_CONCURRENCY_LIMIT}, got {concurrency}"
            )
        return {
            "description": message.description,
            "event_types": _check_list("event_types", message.event_types, _check_event_type),
            "saga_types": _check_list("saga_types", message.saga_types, check_id),
            "namespaces": _check_list("namespaces", message.namespaces, check_id),
            "enabled": message.enabled,
            "max_concurrency": concurrency,
        }

    @_mapped_errors
    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: Any
    ) -> pb.CreateWebhookEndpointResponse:
        store = self._rows()
        if not self._endpoints:
            raise WebhooksOff()
        fields = self._fields(request.endpoint)
        fields["enabled"] = True
        url = await self._checked_url(request.endpoint.url)
        secret = generate_secret()
        endpoint = WebhookEndpoint(
            endpoint_id=ENDPOINT_ID_PREFIX + secrets.token_hex(12), url=url, secret=secret, **fields
        )
        stored = await store.create_webhook_endpoint(endpoint)
        logger.info("webhook endpoint %s created for %s", stored.endpoint_id, stored.url)
        return pb.CreateWebhookEndpointResponse(endpoint=endpoint_to_proto(stored), secret=secret)

    @_mapped_errors
    async def GetWebhookEndpoint(
        self, request: pb.GetWebhookEndpointRequest, context: Any
    ) -> pb.WebhookEndpoint:
        return endpoint_to_proto(await self._endpoint(request.endpoint_id))

    @_mapped_errors
    async def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, context: Any
    ) -> pb.ListWebhookEndpointsResponse:
        store = self._rows()
        size = _page_size(request.page_size)
        after = _position(request.page_token, "endpoints", str) or ""
        found = await store.list_webhook_endpoints(after, size + 1)
        answer = pb.ListWebhookEndpointsResponse(
            endpoints=[endpoint_to_proto(endpoint) for endpoint in found[:size]]
        )
        if len(found) > size:
            answer.next_page_token = _token(found[size - 1].endpoint_id, "endpoints")
        return answer

    @_mapped_errors
    async def UpdateWebhookEndpoint(
        self, request: pb.UpdateWebhookEndpointRequest, context: Any
    ) -> pb.WebhookEndpoint:
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                f"update_mask is required: some of {', '.join(sorted(UPDATABLE))}"
            )
        unknown = sorted(set(paths) - UPDATABLE)
        if unknown:
            raise InvalidArgument(
                f"update_mask names {', '.join(unknown)}; updatable: {', '.join(sorted(UPDATABLE))}"
            )
        current = await self._endpoint(request.endpoint.endpoint_id)
        fields = self._fields(request.endpoint)
        changes = {path: fields[path] for path in paths if path != "url"}
        if "max_concurrency" in paths and request.endpoint.max_concurrency == 0:
            raise InvalidArgument("max_concurrency must be 1 to 100, got 0")
        if "url" in paths:
            changes["url"] = await self._checked_url(request.endpoint.url)
        if "enabled" in paths:
            changes["disabled_reason"] = "" if fields["enabled"] else "disabled by an operator"
        updated = await self._rows().update_webhook_endpoint(_replace(current, changes))
        if updated is None:
            raise WebhookEndpointNotFound(f"no webhook endpoint {current.endpoint_id!r}")
        if updated.enabled and self._wake is not None:
            self._wake()
        return endpoint_to_proto(updated)

    @_mapped_errors
    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: Any
    ) -> pb.RotateWebhookSecretResponse:
        overlap = request.overlap_seconds or DEFAULT_OVERLAP_SECONDS
        if not 0 < overlap <= MAX_OVERLAP_SECONDS:
            raise InvalidArgument(
                f"overlap_seconds must be 1 to {MAX_OVERLAP_SECONDS} (0: a day), "
                f"got {request.overlap_seconds}"
            )
        current = await self._endpoint(request.endpoint_id)
        secret = generate_secret()
        rotated = _replace(
            current,
            {
                "secret": secret,
                "previous_secret": current.secret,
                "previous_secret_expires": utc_now() + timedelta(seconds=overlap),
            },
        )
        updated = await self._rows().update_webhook_endpoint(rotated)
        if updated is None:
            raise WebhookEndpointNotFound(f"no webhook endpoint {current.endpoint_id!r}")
        logger.info("webhook endpoint %s: secret rotated", updated.endpoint_id)
        return pb.RotateWebhookSecretResponse(endpoint=endpoint_to_proto(updated), secret=secret)

    @_mapped_errors
    async def DeleteWebhookEndpoint(
        self, request: pb.DeleteWebhookEndpointRequest, context: Any
    ) -> pb.DeleteWebhookEndpointResponse:
        check_id("endpoint_id", request.endpoint_id)
        if not await self._rows().delete_webhook_endpoint(request.endpoint_id):
            raise WebhookEndpointNotFound(f"no webhook endpoint {request.endpoint_id!r}")
        logger.info("webhook endpoint %s deleted", request.endpoint_id)
        return pb.DeleteWebhookEndpointResponse()

    @_mapped_errors
    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: Any
    ) -> pb.ListWebhookDeliveriesResponse:
        store = self._rows()
        check_id("endpoint_id", request.endpoint_id, required=False)
        check_id("saga_id", request.saga_id, required=False)
        name = check_enum("status", pb.WebhookDeliveryStatus, request.status)
        status = None
        if request.status != pb.WEBHOOK_DELIVERY_STATUS_UNSPECIFIED:
            status = DeliveryStatus(name.removeprefix("WEBHOOK_DELIVERY_STATUS_").lower())
        where = DeliveryFilter(
            endpoint_id=request.endpoint_id or None, status=status, saga_id=request.saga_id or None
        )
        size = _page_size(request.page_size)
        before = _position(request.page_token, "deliveries", int)
        found = await store.list_webhook_deliveries(where, before, size + 1)
        answer = pb.ListWebhookDeliveriesResponse(
            deliveries=[delivery_to_proto(delivery) for delivery in found[:size]]
        )
        if len(found) > size:
            answer.next_page_token = _token(found[size - 1].delivery_id, "deliveries")
        return answer

    @_mapped_errors
    async def RetryWebhookDeliveries(
        self, request: pb.RetryWebhookDeliveriesRequest, context: Any
    ) -> pb.RetryWebhookDeliveriesResponse:
        store = self._rows()
        ids = list(dict.fromkeys(request.delivery_ids))
        if bool(ids) == bool(request.endpoint_id):
            raise InvalidArgument("name either delivery_ids or an endpoint_id, not both or neither")
        if len(ids) > MAX_RETRY_IDS:
            raise InvalidArgument(f"delivery_ids holds at most {MAX_RETRY_IDS} ids")
        if request.endpoint_id:
            endpoint = await self._endpoint(request.endpoint_id)
            _check_enabled(endpoint)
            retried = await store.retry_webhook_deliveries(endpoint_id=endpoint.endpoint_id)
        else:
            await self._check_retryable(store, ids)
            retried = await store.retry_webhook_deliveries(ids)
        if retried and self._wake is not None:
            self._wake()
        return pb.RetryWebhookDeliveriesResponse(retried=retried)

    async def _check_retryable(self, store: WebhookRows, ids: list[int]) -> None:
        found = {
            delivery.delivery_id: delivery for delivery in await store.get_webhook_deliveries(ids)
        }
        missing = [str(delivery_id) for delivery_id in ids if delivery_id not in found]
        if missing:
            raise InvalidArgument(f"no webhook deliveries {', '.join(missing[:10])}")
        for delivery in found.values():
            if delivery.status not in (DeliveryStatus.DEAD, DeliveryStatus.FAILED):
                raise WebhookDeliveryNotRetryable(
                    f"delivery {delivery.delivery_id} is {delivery.status.value}; "
                    "only dead or failed deliveries are retried"
                )
        for endpoint_id in {delivery.endpoint_id for delivery in found.values()}:
            if endpoint_id != COMPLETION_ENDPOINT:
                _check_enabled(await self._endpoint(endpoint_id))


def _check_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise WebhookDeliveryNotRetryable(
            f"webhook endpoint {endpoint.endpoint_id} is disabled ({endpoint.disabled_reason}); "
            "enable it first (saga webhooks update --enable), then retry"
        )


def _replace(endpoint: WebhookEndpoint, changes: dict[str, Any]) -> WebhookEndpoint:
    return dataclasses.replace(endpoint, **changes)


def add_to_server(service: SagaWebhooksService, server: grpc.aio.Server) -> None:
    pb_grpc.add_SagaWebhooksServicer_to_server(service, server)


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SagaWebhooks"].full_name
