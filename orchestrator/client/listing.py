"""Listing sagas in Python terms: the filters as keywords (`SagaFilters`), one page as
`SagaPage`, and the one place they become a ListSagasRequest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from orchestrator.core.timestamps import to_timestamp
from saga.v1 import orchestrator_pb2 as pb

LIST_PAGE_SIZE = 0
"""`page_size` left to the server (50 a page)."""


class SagaFilters(TypedDict, total=False):
    """The filters `list_sagas` and `list_saga_page` take as keywords, each a field of
    ListSagasRequest; a filter left out matches every saga."""

    status: pb.SagaStatus
    """Only sagas in this status (pb.SAGA_STATUS_RUNNING, ...)."""
    saga_type: str
    """Only sagas of this type."""
    correlation_id: str
    """Only sagas for this business object."""
    lock_key: str
    """Only sagas that hold or queue for this semantic lock key."""
    needs_intervention: bool
    """Only sagas that do (True) or do not (False) need an operator."""
    created_after: datetime
    """Only sagas created at or after this moment (naive: UTC)."""
    created_before: datetime
    """Only sagas created before this moment (naive: UTC)."""
    namespace: str
    """Only sagas in this namespace (the client's own namespace when it has one; else
    every namespace the caller may use)."""


@dataclass(frozen=True, slots=True)
class SagaPage:
    """One page of sagas, newest first, and the token of the next ("" on the last)."""

    sagas: list[pb.Saga]
    next_page_token: str


def list_request(
    filters: SagaFilters,
    *,
    page_token: str = "",
    page_size: int = LIST_PAGE_SIZE,
    view: pb.SagaView = pb.SAGA_VIEW_UNSPECIFIED,
) -> pb.ListSagasRequest:
    """The ListSagas request for one page with these filters; TypeError names a keyword
    that is no filter (mypy catches it too, but **filters cannot at run time)."""
    unknown = sorted(set(filters) - SagaFilters.__optional_keys__)
    if unknown:
        raise TypeError(f"list_sagas() got unknown filters: {', '.join(unknown)}")
    request = pb.ListSagasRequest(
        page_size=page_size,
        page_token=page_token,
        view=view,
        status=filters.get("status", pb.SAGA_STATUS_UNSPECIFIED),
        saga_type=filters.get("saga_type", ""),
        correlation_id=filters.get("correlation_id", ""),
        lock_key=filters.get("lock_key", ""),
        namespace=filters.get("namespace", ""),
    )
    if "needs_intervention" in filters:
        request.needs_intervention = filters["needs_intervention"]
    if "created_after" in filters:
        request.create_time_after.CopyFrom(to_timestamp(filters["created_after"]))
    if "created_before" in filters:
        request.create_time_before.CopyFrom(to_timestamp(filters["created_before"]))
    return request
