"""Bulk operator actions: retry, resolve or abort every saga matching a filter.

A call acts on one page of matching sagas (at most `MAX_BULK_PAGE`), so one call cannot
hold the engine for long, and answers a token to go on with the next page. Pages follow
saga id order, which the action does not change (a retried saga's status and times do
change), so a page never repeats or skips a saga that still matches.

Each saga is changed exactly as the single call changes it: through
`Executor.change_saga` (fenced by the saga's version, retried on a concurrent commit),
with its own log row naming the operator (`operator_actor`) and the reason. Between the
match and the change a saga may have moved on (a replica retried it, another operator
acted): the state the filter names (status, intervention, failed step, failure reason)
is checked again against the saga as loaded for the change, and a saga that no longer
matches is answered FAILED_PRECONDITION (NO_LONGER_MATCHES) and left alone. The time
ranges only choose the page.

A dry run counts every matching saga and names the page a real call would act on,
changing nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeVar

from google.protobuf.internal.containers import (
    RepeatedCompositeFieldContainer,
    RepeatedScalarFieldContainer,
)

from orchestrator.api.paging import filter_digest
from orchestrator.api.request_checks import (
    check_id,
    check_operator_note,
    check_saga_id,
    operator_actor,
)
from orchestrator.api.status import log_refusal, status_proto_of
from orchestrator.api.tenancy import read_scope
from orchestrator.core.errors import ErrorCode, InvalidArgument, SagaError
from orchestrator.core.limits import check_enum, check_timestamp
from orchestrator.core.machine import SagaRun
from orchestrator.core.records import SagaFilter, SagaStatus, StepStatus
from orchestrator.core.registry import Registry
from orchestrator.engine.executor import Executor
from orchestrator.security.auth import current_caller
from orchestrator.store.base import Store
from saga.v1 import orchestrator_pb2 as pb

DEFAULT_BULK_PAGE = 100
"""Sagas one bulk call acts on when the request names no page size."""
MAX_BULK_PAGE = 1000
"""The most sagas one bulk call acts on, whatever the request asks."""
CHANGES_AT_ONCE = 8
"""Sagas of a page changed concurrently: enough to hide the commits' round trips,
few enough to leave the store's connections to the engine."""

Change = Callable[[SagaRun, datetime, str, str], None]
"""The single call's change: the run, now, the actor, the reason."""


def retry_change(run: SagaRun, now: datetime, actor: str, reason: str) -> None:
    run.retry(now, actor, reason)


def abort_change(run: SagaRun, now: datetime, actor: str, reason: str) -> None:
    run.abort(now, actor, reason)


def resolve_change(step: str) -> Change:
    def resolve(run: SagaRun, now: datetime, actor: str, reason: str) -> None:
        run.resolve(step, now, actor, reason)

    return resolve


class NoLongerMatches(SagaError):
    """The saga matched when its page was read, but changed before the action reached it."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "NO_LONGER_MATCHES"


class BulkRequest(Protocol):
    """What RetrySagas, ResolveSagas and AbortSagas requests share."""

    @property
    def filter(self) -> pb.BulkSagaFilter: ...
    @property
    def reason(self) -> str: ...
    @property
    def requested_by(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def page_size(self) -> int: ...
    @property
    def page_token(self) -> str: ...


class BulkResponse(Protocol):
    """What RetrySagas, ResolveSagas and AbortSagas responses share."""

    matched_count: int

    @property
    def saga_ids(self) -> RepeatedScalarFieldContainer[str]: ...
    @property
    def results(self) -> RepeatedCompositeFieldContainer[pb.BulkSagaResult]: ...

    next_page_token: str


Response = TypeVar("Response", bound=BulkResponse)


def _time(request: pb.BulkSagaFilter, name: str) -> datetime | None:
    if not request.HasField(name):
        return None
    return check_timestamp(f"filter.{name}", getattr(request, name))


def bulk_filter(request: pb.BulkSagaFilter, registry: Registry) -> SagaFilter:
    """The store's filter for a bulk request's filter, every field checked, within the
    caller's namespaces. A participant becomes the (saga type, step) pairs addressed to
    it in the registered definitions; one no definition names is INVALID_ARGUMENT."""
    check_id("filter.saga_type", request.saga_type, required=False)
    check_id("filter.failed_step", request.failed_step, required=False)
    check_id("filter.participant", request.participant, required=False)
    if len(request.failure_reason_contains) > 2000:
        raise InvalidArgument("filter.failure_reason_contains is longer than 2000 characters")
    status = None
    name = check_enum("filter.status", pb.SagaStatus, request.status)
    if request.status != pb.SAGA_STATUS_UNSPECIFIED:
        status = SagaStatus(name.removeprefix("SAGA_STATUS_"))
    failed_steps = None
    if request.participant:
        failed_steps = tuple(
            sorted(
                {
                    (definition.name, step.name)
                    for definition in registry.definitions
                    if not request.saga_type or definition.name == request.saga_type
                    for step in definition.all_steps
                    if step.participant == request.participant
                }
            )
        )
        if not failed_steps:
            raise InvalidArgument(
                f"filter.participant {request.participant!r} is addressed by no step of "
                + (f"saga type {request.saga_type!r}" if request.saga_type else "any saga type")
            )
    return SagaFilter(
        status=status,
        saga_type=request.saga_type or None,
        needs_intervention=(
            request.needs_intervention if request.HasField("needs_intervention") else None
        ),
        created_after=_time(request, "create_time_after"),
        created_before=_time(request, "create_time_before"),
        updated_after=_time(request, "update_time_after"),
        updated_before=_time(request, "update_time_before"),
        failed_step=request.failed_step or None,
        failed_steps=failed_steps,
        failure_reason_contains=request.failure_reason_contains or None,
        namespaces=read_scope(request.namespace),
    )


def failed_steps(run: SagaRun) -> set[str]:
    """The names of the run's failed steps, as the store's filter finds them: each whose
    compensation failed, and the failed step the saga stopped at."""
    return {
        step.name
        for index, step in enumerate(run.steps)
        if run.step_status(index) is StepStatus.COMPENSATION_FAILED
        or (run.step_status(index) is StepStatus.FAILED and step.name == run.saga.failed_step)
    }


def still_matches(run: SagaRun, where: SagaFilter) -> bool:
    """Whether the saga, as loaded for its change, is still in the state `where` names."""
    saga = run.saga
    failed = failed_steps(run) if where.failed_step or where.failed_steps is not None else set()
    return (
        (where.status is None or saga.status is where.status)
        and (
            where.needs_intervention is None or saga.needs_intervention == where.needs_intervention
        )
        and (where.failed_step is None or where.failed_step in failed)
        and (
            where.failed_steps is None
            or any((saga.saga_type, name) in where.failed_steps for name in failed)
        )
        and (
            where.failure_reason_contains is None
            or where.failure_reason_contains in saga.failure_reason
        )
    )


def encode_bulk_token(last_id: str, bound: str) -> str:
    """Opaque to clients: the last saga id of the page, bound to the request it was made for."""
    position = {"id": last_id, "f": bound}
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_bulk_token(token: str, bound: str) -> str | None:
    """The saga id a token of ours continues after; anything else is INVALID_ARGUMENT."""
    if not token:
        return None
    if len(token) > 1024:
        raise InvalidArgument("page_token is not one this server issued: too long")
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))
        last_id, digest = position["id"], position["f"]
    except (ValueError, KeyError, TypeError, UnicodeError) as error:
        raise InvalidArgument(f"page_token is not one this server issued: {error}") from None
    if digest != bound:
        raise InvalidArgument("page_token was issued for a different request; start again")
    if not isinstance(last_id, str):
        raise InvalidArgument("page_token is not one this server issued: bad id")
    try:
        check_saga_id(last_id)
    except InvalidArgument:
        raise InvalidArgument("page_token is not one this server issued: bad id") from None
    return last_id


class BulkActions:
    """Runs one page of a bulk operator action against the store and the executor."""

    def __init__(self, registry: Registry, executor: Executor, store: Store) -> None:
        self._registry = registry
        self._executor = executor
        self._store = store

    async def run(
        self, request: BulkRequest, response: Response, action: str, change: Change
    ) -> Response:
        """Check `request`, read its page and (unless a dry run) change each saga of it,
        filling `response`. `action` names the action in the page token, so a token is
        not reused for another (a resolve's is bound to its step too)."""
        check_operator_note(
            request.reason, request.requested_by, authenticated=current_caller() is not None
        )
        if request.page_size < 0:
            raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
        where = bulk_filter(request.filter, self._registry)
        size = min(request.page_size or DEFAULT_BULK_PAGE, MAX_BULK_PAGE)
        bound = f"{filter_digest(where)}:{action}:{getattr(request, 'step', '')}"
        after = decode_bulk_token(request.page_token, bound)
        ids = await self._store.match_sagas(where, size + 1, after)
        page = ids[:size]
        response.saga_ids.extend(page)
        if len(ids) > size:
            response.next_page_token = encode_bulk_token(page[-1], bound)
        if request.dry_run:
            response.matched_count = await self._store.count_sagas(where)
            return response
        actor, reason = operator_actor(request.requested_by, request.reason)
        room = asyncio.Semaphore(CHANGES_AT_ONCE)

        async def one(saga_id: str) -> pb.BulkSagaResult:
            async with room:
                return await self._change(saga_id, where, change, actor, reason)

        response.results.extend(await asyncio.gather(*(one(saga_id) for saga_id in page)))
        return response

    async def _change(
        self, saga_id: str, where: SagaFilter, change: Change, actor: str, reason: str
    ) -> pb.BulkSagaResult:
        def checked(run: SagaRun, now: datetime) -> None:
            if not still_matches(run, where):
                raise NoLongerMatches(
                    f"saga {saga_id} no longer matches the filter (it is now {run.status}"
                    f"{', needs intervention' if run.saga.needs_intervention else ''}); left alone"
                )
            change(run, now, actor, reason)

        try:
            saga = await self._executor.change_saga(saga_id, checked)
        except SagaError as error:
            log_refusal(error)
            return pb.BulkSagaResult(saga_id=saga_id, error=status_proto_of(error))
        return pb.BulkSagaResult(
            saga_id=saga_id,
            status=f"SAGA_STATUS_{saga.status.value}",
        )
