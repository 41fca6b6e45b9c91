"""The SagaEvents gRPC servicer: operators' view of the event sinks (docs/events.md,
"Operating the sinks").

A replica knows the sinks it is configured with; the database knows every sink that has
rows (pending events, dead letters, partition leases), also one no longer configured
anywhere. ListEventSinks answers the union, each sink flagged whether this replica has it
configured. A replay renders events only for configured sinks (what a sink selects, and
how many partitions it has, is configuration), with the core's own rendering
(`orchestrator.core.events.replayed_events`), so a replayed event has the id and content
its original had. Requests are checked as SagaOrchestrator's are (`check_message_text`
first), and errors leave through the same mapping (`orchestrator.api.status`).

Dead letters are not filtered by namespace (one may outlive its saga): the dead-letter
RPCs are for callers that may see every namespace; one bound to some is
PERMISSION_DENIED.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from orchestrator.api.handlers import mapped_errors
from orchestrator.api.request_checks import check_id, check_saga_id
from orchestrator.api.tenancy import allowed_namespaces, read_scope, visible
from orchestrator.core.clock import utc_now
from orchestrator.core.errors import ErrorCode, InvalidArgument, NamespaceDenied, SagaError
from orchestrator.core.events import DeadLetter, EventSink, OutboxEvent, replayed_events
from orchestrator.core.limits import check_timestamp
from orchestrator.core.payload import check_message_text
from orchestrator.core.records import TransitionRecord
from orchestrator.events.config import ConfiguredSink
from orchestrator.store.base import Store
from saga.v1 import events_admin_pb2 as pb
from saga.v1 import events_admin_pb2_grpc as pb_grpc

DEFAULT_REPLAY = 1000
MAX_REPLAY = 10_000
"""Transitions one ReplayEvents call reads: by default, and at most."""
DEFAULT_DEAD_PAGE = 100
MAX_DEAD_PAGE = 1000
MAX_REQUEUE_IDS = 1000
KINDS = {
    "rabbitmq": pb.EVENT_SINK_KIND_RABBITMQ,
    "nats": pb.EVENT_SINK_KIND_NATS,
    "webhooks": pb.EVENT_SINK_KIND_WEBHOOKS,
}

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class EventSinkNotFound(SagaError):
    """No sink of that name is configured here or known to the database."""

    code = ErrorCode.NOT_FOUND
    reason = "EVENT_SINK_NOT_FOUND"


class EventSinkNotConfigured(SagaError):
    """The sink has rows in the database but is not configured on this replica, so its
    events cannot be rendered here (what it selects is configuration)."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "EVENT_SINK_NOT_CONFIGURED"


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _encode(position: object, digest: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": position, "f": digest}).encode()).decode()


def _decode(token: str, digest: str) -> Any:
    """The position a token of ours holds; INVALID_ARGUMENT for anything else."""
    if not token:
        return None
    if len(token) > 1024:
        raise InvalidArgument("page_token is not one this server issued: too long")
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode()))
        position, bound = document["p"], document["f"]
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise InvalidArgument("page_token is not one this server issued") from None
    if bound != digest:
        raise InvalidArgument("page_token was issued for a different request; start again")
    return position


def _seq_position(token: str, digest: str) -> int:
    """The seq (one saga's replay) or dead letter id (a listing) a token continues after;
    0 for the first call."""
    after = _decode(token, digest) or 0
    if not isinstance(after, int) or after < 0:
        raise InvalidArgument("page_token is not one this server issued")
    return after


def _time_position(token: str, digest: str) -> tuple[datetime, str, int] | None:
    """The (time, saga id, seq) a replay since a time continues after; None at first."""
    position = _decode(token, digest)
    if position is None:
        return None
    try:
        moment, saga_id, seq = position
        after = (datetime.fromisoformat(moment), str(saga_id), int(seq))
        check_saga_id(after[1])
    except (ValueError, TypeError, InvalidArgument):
        raise InvalidArgument("page_token is not one this server issued") from None
    if after[0].utcoffset() is None:
        raise InvalidArgument("page_token is not one this server issued")
    return after


def _dead_to_proto(letter: DeadLetter) -> pb.DeadEvent:
    return pb.DeadEvent(
        id=letter.id,
        sink=letter.sink,
        event_id=letter.event_id,
        saga_id=letter.saga_id,
        seq=letter.seq,
        event_type=letter.event_type,
        attempts=letter.attempts,
        error=letter.error,
        create_time=_timestamp(letter.created_at),
        dead_time=_timestamp(letter.dead_at),
    )


class SagaEventsService(pb_grpc.SagaEventsServicer):
    """Thin servicer over the store's outbox and this replica's sink configuration."""

    def __init__(
        self, store: Store, sinks: Sequence[ConfiguredSink] = (), replica_id: str = ""
    ) -> None:
        self._store = store
        self._sinks = {configured.sink.name: configured for configured in sinks}
        self._replica_id = replica_id

    @mapped_errors
    async def ListEventSinks(
        self, request: pb.ListEventSinksRequest, context: Context
    ) -> pb.ListEventSinksResponse:
        check_message_text(request)
        store = self._store
        backlog = await store.event_backlog()
        dead = await store.dead_event_counts()
        leases = await store.event_partition_leases()
        now = utc_now()
        names = sorted({*self._sinks, *backlog, *dead, *(lease.sink for lease in leases)})
        response = pb.ListEventSinksResponse(
            relay_replicas=await store.live_event_relays(), replica_id=self._replica_id
        )
        for name in names:
            sink = response.sinks.add(name=name, dead=dead.get(name, 0))
            configured = self._sinks.get(name)
            if configured is not None:
                sink.configured = True
                sink.kind = KINDS.get(configured.kind, pb.EVENT_SINK_KIND_UNSPECIFIED)
                sink.target = configured.target
                sink.event_set = configured.sink.events.value
                sink.saga_types.extend(sorted(configured.sink.saga_types))
                sink.include_payload = configured.sink.include_payload
                sink.partitions = configured.sink.partitions
            pending = backlog.get(name)
            if pending is not None:
                sink.pending = pending.pending
                sink.oldest_pending_time.CopyFrom(_timestamp(pending.oldest))
                age = duration_pb2.Duration()
                age.FromTimedelta(max(now - pending.oldest, timedelta(0)))
                sink.oldest_pending_age.CopyFrom(age)
            for lease in leases:
                if lease.sink != name:
                    continue
                owner = sink.partition_owners.add(partition=lease.partition)
                if lease.owner is not None and lease.expires_at is not None:
                    owner.owner = lease.owner
                    owner.lease_expire_time.CopyFrom(_timestamp(lease.expires_at))
        return response

    @mapped_errors
    async def ReplayEvents(
        self, request: pb.ReplayEventsRequest, context: Context
    ) -> pb.ReplayEventsResponse:
        check_message_text(request)
        scope = read_scope(request.namespace)
        if bool(request.saga_id) == request.HasField("since_time"):
            raise InvalidArgument("name exactly one of saga_id and since_time")
        if request.limit < 0:
            raise InvalidArgument(f"limit must not be negative, got {request.limit}")
        limit = min(request.limit or DEFAULT_REPLAY, MAX_REPLAY)
        if request.sink:
            check_id("sink", request.sink)
        if request.saga_id:
            check_saga_id(request.saga_id)
            digest = _digest("saga", request.saga_id, request.sink, request.namespace)
            after_seq = _seq_position(request.page_token, digest)
        else:
            since = check_timestamp("since_time", request.since_time)
            digest = _digest("since", since.isoformat(), request.sink, scope)
            after = _time_position(request.page_token, digest)
        sinks = await self._replay_sinks(request.sink)
        store = self._store
        if request.saga_id:
            saga = visible(await store.get_saga(request.saga_id), request.saga_id, scope)
            log = await store.get_transitions(saga.saga_id)
            remaining = [t for t in log if t.seq > after_seq]
            chosen, more = remaining[:limit], len(remaining) > limit
            steps = await store.get_steps(saga.saga_id)
            events = replayed_events(sinks, saga, log, steps, {t.seq for t in chosen})
            token = _encode(chosen[-1].seq, digest) if more else ""
        else:
            found = await store.transitions_since(since, after, scope, limit + 1)
            chosen, more = found[:limit], len(found) > limit
            events = await self._render(sinks, chosen)
            last = chosen[-1] if chosen else None
            token = (
                _encode([last.time.isoformat(), last.saga_id, last.seq], digest)
                if more and last is not None
                else ""
            )
        queued = await store.enqueue_events(events)
        return pb.ReplayEventsResponse(
            queued=queued, transitions=len(chosen), next_page_token=token
        )

    async def _render(
        self, sinks: Sequence[EventSink], transitions: Sequence[TransitionRecord]
    ) -> list[OutboxEvent]:
        """The events of `transitions` (of many sagas), rendered saga by saga against each
        saga's whole log; a saga retention deleted has no row to render from: skipped."""
        by_saga: dict[str, set[int]] = {}
        for transition in transitions:
            by_saga.setdefault(transition.saga_id, set()).add(transition.seq)
        events: list[OutboxEvent] = []
        for stored in await self._store.load_sagas(list(by_saga)):
            log = await self._store.get_transitions(stored.saga.saga_id)
            seqs = by_saga[stored.saga.saga_id]
            events.extend(replayed_events(sinks, stored.saga, log, stored.steps, seqs))
        return events

    async def _replay_sinks(self, name: str) -> list[EventSink]:
        if not name:
            if not self._sinks:
                raise EventSinkNotConfigured(
                    "no event sink is configured on this replica: nothing to replay to"
                )
            return [configured.sink for configured in self._sinks.values()]
        await self._check_sink(name)
        if name not in self._sinks:
            raise EventSinkNotConfigured(
                f"event sink {name!r} is known to the database but not configured on this "
                f"replica; configured here: {self._configured_names()}"
            )
        return [self._sinks[name].sink]

    @mapped_errors
    async def ListDeadEvents(
        self, request: pb.ListDeadEventsRequest, context: Context
    ) -> pb.ListDeadEventsResponse:
        check_message_text(request)
        _every_namespace()
        if request.page_size < 0:
            raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
        if request.sink:
            await self._check_sink(request.sink)
        size = min(request.page_size or DEFAULT_DEAD_PAGE, MAX_DEAD_PAGE)
        digest = _digest("dead", request.sink)
        after = _seq_position(request.page_token, digest)
        letters = await self._store.dead_events(request.sink or None, after, size + 1)
        response = pb.ListDeadEventsResponse(
            events=[_dead_to_proto(letter) for letter in letters[:size]]
        )
        if len(letters) > size:
            response.next_page_token = _encode(letters[size - 1].id, digest)
        return response

    @mapped_errors
    async def RequeueDeadEvents(
        self, request: pb.RequeueDeadEventsRequest, context: Context
    ) -> pb.RequeueDeadEventsResponse:
        check_message_text(request)
        _every_namespace()
        check_id("sink", request.sink)
        if request.all == bool(request.ids):
            raise InvalidArgument("name the dead events' ids, or set all (not both)")
        if len(request.ids) > MAX_REQUEUE_IDS:
            raise InvalidArgument(
                f"at most {MAX_REQUEUE_IDS} ids per call, got {len(request.ids)}; use all"
            )
        if any(event_id <= 0 for event_id in request.ids):
            raise InvalidArgument("dead event ids are positive, as ListDeadEvents gives them")
        await self._check_sink(request.sink)
        ids = None if request.all else sorted(set(request.ids))
        return pb.RequeueDeadEventsResponse(
            requeued=await self._store.requeue_dead_events(request.sink, ids)
        )

    async def _check_sink(self, name: str) -> None:
        """NOT_FOUND, naming the configured sinks, unless the sink is configured here or
        the database has rows of it."""
        check_id("sink", name)
        if name in self._sinks:
            return
        known = {
            *(await self._store.event_backlog()),
            *(await self._store.dead_event_counts()),
            *(lease.sink for lease in await self._store.event_partition_leases()),
        }
        if name not in known:
            raise EventSinkNotFound(
                f"no event sink named {name!r}; configured here: {self._configured_names()}"
            )

    def _configured_names(self) -> str:
        return ", ".join(sorted(self._sinks)) or "none"


def _every_namespace() -> None:
    allowed = allowed_namespaces()
    if allowed is not None:
        raise NamespaceDenied(
            "dead events span every namespace; this caller may use only "
            f"{', '.join(sorted(allowed))}"
        )
