"""WatchSaga over HTTP as server-sent events.

`GET /v1/sagas/{saga_id}:watch` answers `text/event-stream`: one `transition` event per
log row (data: the WatchSagaResponse as JSON, id: the row's seq), then an `end` event
once the saga is COMPLETED or FAILED, and the stream closes. A client that reconnects
with `Last-Event-ID` (an EventSource does so by itself), or with `after_seq`, resumes
after that row and misses nothing. The caller is admitted, the saga looked up (GetSaga,
with WatchSaga's roles) and the replica's watch-stream limit checked before the stream
starts, so an unknown saga, a refused caller or a full replica is an ordinary JSON error
(429 with Retry-After for the last); a refusal once the stream has started is an `error`
event carrying the google.rpc.Status.

A client that goes away mid-stream ends the watch quietly: it is how streams end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator

import aiohttp
import grpc
from aiohttp import web
from aiohttp_sse import sse_response
from google.protobuf.message import Message

from orchestrator.web.rest.gateway import Gateway, InProcessContext, stream_replies
from orchestrator.web.rest.rules import Route
from orchestrator.web.rest.transcoding import Refusal, invalid, message_json
from saga.v1 import orchestrator_pb2 as pb

logger = logging.getLogger(__name__)

PING_SECONDS = 15.0
QUEUED_REPLIES = 64
"""Replies read ahead of a slow client; past them the watch waits for it."""
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
    queue: asyncio.Queue[Message | Refusal | None] = asyncio.Queue(QUEUED_REPLIES)
    pump = asyncio.create_task(_pump(stream_replies(watch, message, context), queue))
    try:
        # One turn of the loop runs the handler as far as its first wait: the caller's
        # admission and the replica's watch-stream limit are checked by then, so their
        # refusal is an ordinary answer (429 with Retry-After), not an event.
        await asyncio.sleep(0)
        first = None if queue.empty() else queue.get_nowait()
        if isinstance(first, Refusal):
            raise first
        return await _send_events(request, first, queue)
    finally:
        pump.cancel()  # closes the watch, in the task that iterates it


async def _pump(
    replies: AsyncGenerator[Message], queue: asyncio.Queue[Message | Refusal | None]
) -> None:
    """Iterate the handler's stream in a task of its own (an async generator must stay in
    one task): each reply, then None at its end, or the Refusal that ended it."""
    try:
        async for reply in replies:
            await queue.put(reply)
        await queue.put(None)
    except Refusal as refusal:
        await queue.put(refusal)
    except Exception:
        logger.exception("WatchSaga over HTTP failed")
        await queue.put(Refusal.of(grpc.StatusCode.INTERNAL, "internal error; watch again"))


async def _send_events(
    request: web.Request,
    first: Message | None,
    queue: asyncio.Queue[Message | Refusal | None],
) -> web.StreamResponse:
    events: web.StreamResponse | None = None
    try:
        async with sse_response(request, sep="\n", ping_interval=PING_SECONDS) as events:
            item = first if first is not None else await queue.get()
            while isinstance(item, Message):
                seq: int = item.transition.seq  # type: ignore[attr-defined]
                await events.send(json.dumps(message_json(item)), id=str(seq), event="transition")
                item = await queue.get()
            if item is None:
                await events.send("{}", event="end")
            else:
                await events.send(json.dumps(item.body()), event="error")
    except CLIENT_GONE:
        pass  # the client left; the caller closes the watch
    return events if events is not None else web.Response(status=499)
