"""A client of the SagaWebhooks service (operators' endpoints and deliveries): one
channel, the client's deadline on every call, failures as `ClientError`s."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import grpc
from google.protobuf import field_mask_pb2

from orchestrator.client.connection import CHANNEL_OPTIONS, CLIENT_TIMEOUT_SECONDS
from orchestrator.client.errors import client_error
from orchestrator.security.tls import ClientTls, open_channel
from saga.v1 import webhooks_pb2 as pb
from saga.v1 import webhooks_pb2_grpc as pb_grpc


class WebhooksClient:
    """Calls SagaWebhooks at `address`, with TLS and a bearer token as `SagaClient` does."""

    def __init__(
        self,
        address: str,
        timeout: float = CLIENT_TIMEOUT_SECONDS,
        *,
        tls: ClientTls | None = None,
        token: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = open_channel(address, tls, token, CHANNEL_OPTIONS)
        self._stub = pb_grpc.SagaWebhooksStub(self._channel)

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise client_error(error, self.address, self.timeout) from None

    async def create(self, endpoint: pb.WebhookEndpoint) -> pb.CreateWebhookEndpointResponse:
        request = pb.CreateWebhookEndpointRequest(endpoint=endpoint)
        answer: pb.CreateWebhookEndpointResponse = await self._call(
            "CreateWebhookEndpoint", request
        )
        return answer

    async def get(self, endpoint_id: str) -> pb.WebhookEndpoint:
        request = pb.GetWebhookEndpointRequest(endpoint_id=endpoint_id)
        answer: pb.WebhookEndpoint = await self._call("GetWebhookEndpoint", request)
        return answer

    async def list(self) -> list[pb.WebhookEndpoint]:
        """Every endpoint, following the pages."""
        endpoints: list[pb.WebhookEndpoint] = []
        token = ""
        while True:
            request = pb.ListWebhookEndpointsRequest(page_size=500, page_token=token)
            page: pb.ListWebhookEndpointsResponse = await self._call(
                "ListWebhookEndpoints", request
            )
            endpoints.extend(page.endpoints)
            token = page.next_page_token
            if not token:
                return endpoints

    async def update(
        self, endpoint: pb.WebhookEndpoint, paths: Sequence[str]
    ) -> pb.WebhookEndpoint:
        request = pb.UpdateWebhookEndpointRequest(
            endpoint=endpoint, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
        answer: pb.WebhookEndpoint = await self._call("UpdateWebhookEndpoint", request)
        return answer

    async def rotate(
        self, endpoint_id: str, overlap_seconds: int = 0
    ) -> pb.RotateWebhookSecretResponse:
        request = pb.RotateWebhookSecretRequest(
            endpoint_id=endpoint_id, overlap_seconds=overlap_seconds
        )
        answer: pb.RotateWebhookSecretResponse = await self._call("RotateWebhookSecret", request)
        return answer

    async def delete(self, endpoint_id: str) -> None:
        request = pb.DeleteWebhookEndpointRequest(endpoint_id=endpoint_id)
        await self._call("DeleteWebhookEndpoint", request)

    async def deliveries(
        self, request: pb.ListWebhookDeliveriesRequest
    ) -> pb.ListWebhookDeliveriesResponse:
        answer: pb.ListWebhookDeliveriesResponse = await self._call(
            "ListWebhookDeliveries", request
        )
        return answer

    async def retry(self, delivery_ids: Sequence[int] = (), endpoint_id: str = "") -> int:
        request = pb.RetryWebhookDeliveriesRequest(
            delivery_ids=list(delivery_ids), endpoint_id=endpoint_id
        )
        answer: pb.RetryWebhookDeliveriesResponse = await self._call(
            "RetryWebhookDeliveries", request
        )
        return answer.retried

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()
