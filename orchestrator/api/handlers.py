"""How every servicer's handler ends: a `SagaError` becomes its gRPC status (the one table
in `orchestrator.api.status`), anything unexpected is logged with its traceback and
answered INTERNAL, so no service can leak an exception or answer UNKNOWN.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from orchestrator.api.status import log_refusal, rpc_status_of
from orchestrator.core.errors import SagaError

logger = logging.getLogger(__name__)

Response = TypeVar("Response")
Handler = Callable[[Any, Any, Any], Awaitable[Response]]


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: SagaError) -> NoReturn:
    """End the call with `error`'s status (logged as a refusal when it is the client's)."""
    log_refusal(error)
    await context.abort_with_status(rpc_status_of(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def mapped_errors(
    method: Handler[Response], before: Callable[[Any, Any], None] | None = None
) -> Handler[Response]:
    """Wrap a servicer method: `before(servicer, request)` runs first (a check every
    handler of a service shares), then the method; errors leave as statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> Response:
        try:
            if before is not None:
                before(self, request)
            return await method(self, request, context)
        except SagaError as error:
            await abort_with(context, error)
        except Exception:
            logger.exception("unexpected error in %s", method.__name__)
            await abort_with(context, SagaError("internal error; the request may be retried"))

    return wrapper


__all__ = ["Handler", "abort_with", "mapped_errors"]
