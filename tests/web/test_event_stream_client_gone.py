"""A client that leaves while its event stream is being written ends the stream quietly.

When the peer has gone, aiohttp's writes raise ConnectionResetError (its
ClientConnectionResetError) until the connection is torn down and the handler cancelled;
a stream that lets it escape has aiohttp log an ERROR with a traceback for what is only
a client going away. Both streams (the console's and the API's WatchSaga) are driven here
through aiohttp's own server on 127.0.0.1, over a servicer that streams three
transitions, with the transport failing at the second.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp_sse import EventSourceResponse

from orchestrator.web import create_console_app
from orchestrator.web.rest import RestServices
from saga.v1 import orchestrator_pb2 as pb

pytestmark = pytest.mark.integration  # aiohttp serving on 127.0.0.1, no processes

SAGA_ID = "01a24cd3-3745-7ec5-b2ce-a92545b0c0ee"


class ThreeTransitions:
    """GetSaga and WatchSaga of a saga whose log has three rows."""

    async def GetSaga(self, request: pb.GetSagaRequest, context: Any) -> pb.Saga:
        return pb.Saga(saga_id=request.saga_id, saga_type="trip")

    async def WatchSaga(
        self, request: pb.WatchSagaRequest, context: Any
    ) -> AsyncIterator[pb.WatchSagaResponse]:
        for seq in (1, 2, 3):
            yield pb.WatchSagaResponse(transition=pb.Transition(seq=seq))

    async def ListSagaTypes(self, request: Any, context: Any) -> pb.ListSagaTypesResponse:
        return pb.ListSagaTypesResponse()


@pytest.mark.parametrize(
    "path", [f"/api/sagas/{SAGA_ID}/events", f"/v1/sagas/{SAGA_ID}:watch"], ids=["console", "api"]
)
async def test_a_reset_connection_mid_stream_logs_no_error(monkeypatch, caplog, path):
    sent: list[str] = []
    send = EventSourceResponse.send

    async def failing_send(self: EventSourceResponse, data: str, **fields: Any) -> None:
        if fields.get("id") == "2":
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        sent.append(data)
        await send(self, data, **fields)

    monkeypatch.setattr(EventSourceResponse, "send", failing_send)
    servicer: Any = ThreeTransitions()
    app = create_console_app(servicer, api=RestServices({"saga.v1.SagaOrchestrator": servicer}))
    caplog.set_level(logging.DEBUG)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        response = await client.get(path)
        body = await response.text()
    assert response.status == 200 and len(sent) == 1 and "id: 1" in body
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
