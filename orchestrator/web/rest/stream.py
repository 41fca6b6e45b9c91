"""WatchSaga over HTTP as server-sent events.

`GET /v1/sagas/{saga_id}:watch` answers `text/event-stream`: one `transition` event per
log row (data: the WatchSagaResponse as JSON, id: the row's seq), then an `end` event
once the saga is COMPLETED or FAILED, and the stream closes. A client that reconnects
with `Last-Event-ID` (an EventSource does so by itself), or with `after_seq`, resumes
after that row and misses nothing. The caller is admitted and the saga looked up
(GetSaga, with WatchSaga's roles) before the stream starts, so an unknown saga or a
refused caller is an ordinary JSON error; a refusal once the stream has started (the
replica's watch streams exhausted) is an `error` event carrying the google.rpc.Status.

A client that goes away mid-stream ends the watch quietly: it is how streams end.
"""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web
from aiohttp_sse import sse_response
from google.protobuf.message import Message

from orchestrator.web.rest.gateway import Gateway, InProcessContext, stream_replies
from orchestrator.web.rest.rules import Route
from orchestrator.web.rest.transcoding import Refusal, invalid, message_json
from saga.v1 import orchestrator_pb2 as pb

PING_SECONDS = 15.0
_MAX_SEQ = 2**31 - 1
CLIENT_GONE = (ConnectionResetError, aiohttp.ClientConnectionResetError)
"""What writing to a client that has gone raises (the second is a subclass of the first
in current aiohttp; both are named so an older one is covered too)."""


def resume_after(request: web.Request, message: pb.WatchSagaRequest) -> None:
    """`Last-Event-ID`, when sent, takes precedence over `after_seq`."""
    text = request.headers.get("Last-Event-ID", "").strip()
    if not text:
        return
    if not text.isdigit() or int(text) > _MAX_SEQ:
        raise invalid(f"Last-Event-ID must be a transition's seq, got {text[:40]!r}")
    message.after_seq = int(text)


async def serve_watch(
    request: web.Request,
    gateway: Gateway,
    route: Route,
    message: Message,
    context: InProcessContext,
) -> web.StreamResponse:
    """Stream the saga's transitions as server-sent events (see the module docstring)."""
    assert isinstance(message, pb.WatchSagaRequest)  # the one streaming RPC
    resume_after(request, message)
    servicer = gateway.service_of(route)
    lookup = await gateway.admitted(route, context, servicer.GetSaga, streaming=False)
    await lookup(pb.GetSagaRequest(saga_id=message.saga_id, namespace=message.namespace), context)
    watch = await gateway.admitted(route, context)
    events: web.StreamResponse | None = None
    try:
        async with sse_response(request, sep="\n", ping_interval=PING_SECONDS) as events:
            try:
                async for reply in stream_replies(watch, message, context):
                    data = json.dumps(message_json(reply))
                    seq: int = reply.transition.seq  # type: ignore[attr-defined]
                    await events.send(data, id=str(seq), event="transition")
                await events.send("{}", event="end")
            except Refusal as refusal:
                await events.send(json.dumps(refusal.body()), event="error")
    except CLIENT_GONE:
        pass  # the client left; the watch is closed already (stream_replies)
    return events if events is not None else web.Response(status=499)
