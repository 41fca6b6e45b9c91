"""Paging of ListSagas and GetSagaHistory: page sizes, filters and page tokens.

A ListSagas token is opaque to clients: where the page ended (create time and saga
id, the store's keyset position), bound to a digest of the filter it was made for,
so a token reused with other filters is refused instead of skipping sagas. A
history token is the seq the next page continues after. Anything not issued here
is INVALID_ARGUMENT, however it was forged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime

from orchestrator.api.conversion import saga_to_proto
from orchestrator.api.request_checks import check_id, check_saga_id
from orchestrator.core.errors import InvalidArgument, OutOfRange
from orchestrator.core.limits import LIST_PAGE_BUDGET_BYTES, check_enum, check_timestamp
from orchestrator.core.records import PagePosition, SagaFilter, SagaRecord, SagaStatus
from saga.v1 import orchestrator_pb2 as pb

DEFAULT_PAGE_SIZE = 50
"""Sagas per ListSagas page when the request names no page size."""
MAX_PAGE_SIZE = 1000
"""The most sagas one ListSagas page holds, whatever the request asks."""
DEFAULT_HISTORY_PAGE = 500
MAX_HISTORY_PAGE = 5000
"""Transitions per GetSagaHistory page: by default, and at most."""
MAX_SEQ = 2**63 - 1
"""The largest seq a history token may name (a signed 64-bit column)."""


_ID_PREFIX = re.compile(r"[0-9a-f-]{1,36}")


def saga_id_prefix(text: str) -> str | None:
    """A ListSagas id prefix, lowercased; anything but hex digits and hyphens (which a
    saga id never holds, and which could be a LIKE wildcard) is INVALID_ARGUMENT."""
    if not text:
        return None
    prefix = text.lower()
    if not _ID_PREFIX.fullmatch(prefix):
        raise InvalidArgument(
            f"saga_id_prefix {text[:40]!r}: give the start of a saga id, "
            "hex digits and hyphens, at most 36 characters"
        )
    return prefix


def filter_of(request: pb.ListSagasRequest) -> SagaFilter:
    """The store's filter for a ListSagas request, every field checked."""
    check_id("saga_type", request.saga_type, required=False)
    check_id("correlation_id", request.correlation_id, required=False)
    if request.page_size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
    status = None
    name = check_enum("status", pb.SagaStatus, request.status)
    if request.status != pb.SAGA_STATUS_UNSPECIFIED:
        status = SagaStatus(name.removeprefix("SAGA_STATUS_"))
    return SagaFilter(
        status=status,
        saga_type=request.saga_type or None,
        correlation_id=request.correlation_id or None,
        needs_intervention=(
            request.needs_intervention if request.HasField("needs_intervention") else None
        ),
        lock_key=request.lock_key or None,
        saga_id_prefix=saga_id_prefix(request.saga_id_prefix),
        created_after=(
            check_timestamp("create_time_after", request.create_time_after)
            if request.HasField("create_time_after")
            else None
        ),
        created_before=(
            check_timestamp("create_time_before", request.create_time_before)
            if request.HasField("create_time_before")
            else None
        ),
    )


def filter_digest(where: SagaFilter) -> str:
    """What a page token binds itself to: a short digest of the filter it was made for."""
    return hashlib.sha256(repr(where).encode()).hexdigest()[:16]


def encode_page_token(last: SagaRecord, where: SagaFilter) -> str:
    """Opaque to clients: where the page ended, bound to the filter it was made for."""
    position = {
        "t": last.create_time.isoformat(),
        "id": last.saga_id,
        "f": filter_digest(where),
    }
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_page_token(token: str, where: SagaFilter) -> PagePosition | None:
    """The position a token of ours names; anything else is INVALID_ARGUMENT, however
    it was forged (not base64, not JSON, a time without a zone, an id that is no UUID)."""
    if not token:
        return None
    if len(token) > 1024:
        raise InvalidArgument("page_token is not one this server issued: too long")
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))
        moment = datetime.fromisoformat(position["t"])
        saga_id = position["id"]
        digest = position["f"]
    except (ValueError, KeyError, TypeError, UnicodeError) as error:
        raise InvalidArgument(f"page_token is not one this server issued: {error}") from None
    if digest != filter_digest(where):
        raise InvalidArgument("page_token was issued for different filters; start again")
    if moment.tzinfo is None or moment.utcoffset() or not isinstance(saga_id, str):
        raise InvalidArgument("page_token is not one this server issued: not a UTC position")
    try:
        check_saga_id(saga_id)
    except InvalidArgument:
        raise InvalidArgument("page_token is not one this server issued: bad id") from None
    return PagePosition(moment, saga_id)


def decode_history_token(token: str) -> int:
    """The seq a GetSagaHistory token continues after; 0 for the first page."""
    if not token:
        return 0
    try:
        after = int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeError):
        raise InvalidArgument("page_token is not one this server issued") from None
    if not 0 <= after <= MAX_SEQ:
        raise OutOfRange(f"page_token names position {after}, outside 0 to {MAX_SEQ}")
    return after


def bounded_page(
    sagas: list[SagaRecord], size: int, where: SagaFilter, full: bool
) -> pb.ListSagasResponse:
    """Up to `size` of `sagas` (the store's page plus one) and a token for the rest, the
    page stopping early when the next saga would take its encoding past the byte budget
    (one saga always goes in, so a page is never empty while more remain)."""
    response = pb.ListSagasResponse()
    used = 0
    taken = 0
    for saga in sagas[:size]:
        message = saga_to_proto(saga, [], with_payload=full, with_output=False)
        # A repeated field costs its message's size plus a tag and a length prefix.
        cost = message.ByteSize() + 6
        if taken and used + cost > LIST_PAGE_BUDGET_BYTES:
            break
        response.sagas.append(message)
        used += cost
        taken += 1
    if taken < len(sagas):
        response.next_page_token = encode_page_token(sagas[taken - 1], where)
    return response
