"""Bulk operator actions in Python terms: the filter as keywords (`BulkFilters`), one
page's answer as `BulkPage`, and the one place they become a RetrySagas, ResolveSagas
or AbortSagas request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypedDict

from orchestrator.core.timestamps import to_timestamp
from saga.v1 import orchestrator_pb2 as pb

BulkAction = Literal["retry", "resolve", "abort"]
"""What a bulk call does to each matching saga, as RetrySaga, ResolveStep, AbortSaga."""

BULK_METHODS: dict[
    str, tuple[str, type[pb.RetrySagasRequest | pb.ResolveSagasRequest | pb.AbortSagasRequest]]
] = {
    "retry": ("RetrySagas", pb.RetrySagasRequest),
    "resolve": ("ResolveSagas", pb.ResolveSagasRequest),
    "abort": ("AbortSagas", pb.AbortSagasRequest),
}
"""Each action's RPC and request message."""


class BulkFilters(TypedDict, total=False):
    """Which sagas a bulk action takes, each a field of BulkSagaFilter; a filter left out
    matches every saga (within the caller's namespaces)."""

    saga_type: str
    """Only sagas of this type."""
    namespace: str
    """Only sagas in this namespace (the client's own when it has one)."""
    status: pb.SagaStatus
    """Only sagas in this status (pb.SAGA_STATUS_FAILED, ...)."""
    needs_intervention: bool
    """Only sagas that do (True) or do not (False) need an operator."""
    failed_step: str
    """Only sagas stuck at (failed at) this step."""
    participant: str
    """Only sagas whose failed step addresses this participant."""
    failure_reason_contains: str
    """Only sagas whose failure reason contains this text (case-sensitive)."""
    created_after: datetime
    """Only sagas created at or after this moment (naive: UTC)."""
    created_before: datetime
    """Only sagas created before this moment (naive: UTC)."""
    updated_after: datetime
    """Only sagas last changed at or after this moment (naive: UTC)."""
    updated_before: datetime
    """Only sagas last changed before this moment (naive: UTC)."""


@dataclass(frozen=True, slots=True)
class BulkPage:
    """One bulk call's answer: on a dry run the matching count and the page's saga ids;
    otherwise each saga's result (its new status or its error), and the token of the
    next page ("" on the last)."""

    matched_count: int
    saga_ids: list[str]
    results: list[pb.BulkSagaResult]
    next_page_token: str


_TIMES = {
    "created_after": "create_time_after",
    "created_before": "create_time_before",
    "updated_after": "update_time_after",
    "updated_before": "update_time_before",
}


def bulk_filter(filters: BulkFilters) -> pb.BulkSagaFilter:
    """The BulkSagaFilter for these keywords; TypeError names a keyword that is no filter."""
    unknown = sorted(set(filters) - BulkFilters.__optional_keys__)
    if unknown:
        raise TypeError(f"unknown bulk filters: {', '.join(unknown)}")
    message = pb.BulkSagaFilter()
    for name, value in filters.items():
        if name in _TIMES:
            assert isinstance(value, datetime)
            getattr(message, _TIMES[name]).CopyFrom(to_timestamp(value))
        else:
            setattr(message, name, value)
    return message


def bulk_page(
    response: pb.RetrySagasResponse | pb.ResolveSagasResponse | pb.AbortSagasResponse,
) -> BulkPage:
    return BulkPage(
        response.matched_count,
        list(response.saga_ids),
        list(response.results),
        response.next_page_token,
    )
