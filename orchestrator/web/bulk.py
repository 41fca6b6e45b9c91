"""Bulk operator actions from the console: RetrySagas and AbortSagas over the list's
filter, a page at a time, through the servicer like every other console action.

The page asks first with `dry_run` (how many match, and a sample), shows the count to
confirm, then sends the same filter page after page with the token each answer gives.
The recorded operator is the authenticated name (the page's `requested_by` only in
laptop mode), and the servicer refuses an empty reason, as it does over gRPC.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from orchestrator.web.auth import CALLER, Identity
from orchestrator.web.calls import CallRefused, ConsoleCalls, list_query, message_json
from saga.v1 import orchestrator_pb2 as pb

logger = logging.getLogger(__name__)

BULK_PAGE_SIZE = 50
"""Sagas changed per request: one page, so no single request holds the console long."""


def bulk_filter_of(fields: Any) -> pb.BulkSagaFilter:
    """The bulk filter of the list's filters. The list also filters by correlation id
    and lock key, which a bulk filter cannot: refused rather than silently widened."""
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "filter: an object of strings")
    unsupported = sorted(
        name for name in ("correlation_id", "lock_key", "id_prefix") if fields.get(name)
    )
    if unsupported:
        raise CallRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"bulk actions cannot filter by {', '.join(unsupported)}: clear "
            f"{'that filter' if len(unsupported) == 1 else 'those filters'} first",
        )
    listed = list_query(fields).request()
    where = pb.BulkSagaFilter(saga_type=listed.saga_type, status=listed.status)
    if listed.HasField("needs_intervention"):
        where.needs_intervention = listed.needs_intervention
    if listed.HasField("create_time_after"):
        where.create_time_after.CopyFrom(listed.create_time_after)
    if listed.HasField("create_time_before"):
        where.create_time_before.CopyFrom(listed.create_time_before)
    return where


async def bulk_action(
    calls: ConsoleCalls, identity: Identity, action: str, body: dict[str, Any]
) -> dict[str, Any]:
    """One page of RetrySagas or AbortSagas (or its dry run) as JSON."""
    if not identity.may_act:
        raise CallRefused(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{identity.name} may read but not act: operator actions need the operator role",
        )
    dry_run = body.get("dry_run") is True
    requested_by = identity.name if identity.authenticated else str(body.get("requested_by", ""))
    reason = str(body.get("reason", ""))
    if dry_run:
        # A dry run changes nothing and records nothing: the servicer still wants a
        # note, so the count needs none typed before the operator has seen it.
        reason, requested_by = reason or "dry run", requested_by or "console"
    fields: dict[str, Any] = {
        "filter": bulk_filter_of(body.get("filter", {})),
        "reason": reason,
        "requested_by": requested_by,
        "dry_run": dry_run,
        "page_size": BULK_PAGE_SIZE,
        "page_token": str(body.get("page_token", "")),
    }
    reply = await calls.bulk(action, fields)
    if not fields["dry_run"]:
        logger.info(
            "console bulk %s by %s: %d sagas", action, fields["requested_by"], len(reply.results)
        )
    return message_json(reply)


JsonBody = Callable[[web.Request], Awaitable[dict[str, Any]]]


def add_bulk_routes(
    app: web.Application, calls: web.AppKey[ConsoleCalls], json_body: JsonBody
) -> None:
    """POST /api/bulk/{retry|abort}: a JSON body from this origin (`json_body` checks it)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        identity = request[CALLER]
        body = await json_body(request)
        answer = await bulk_action(request.app[calls], identity, request.match_info["action"], body)
        return web.json_response(answer)

    app.router.add_post("/api/bulk/{action:retry|abort}", handler)
