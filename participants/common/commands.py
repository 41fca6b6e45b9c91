"""The one path every participant command takes, so each servicer stays thin.

For a command with idempotency key K, in one SQLite transaction:

1. K already processed: the same request gets the stored answer (reply or
   rejection) and nothing changes; a different request gets ALREADY_EXISTS.
2. Otherwise, inside a savepoint: an action is refused if a compensation for
   K came first (ALREADY_COMPENSATED) or failure injection says so; then the
   service's business change runs. A compensation leaves a tombstone for the
   action key it undoes.
3. The answer is recorded under K. A BusinessRejection rolls the savepoint
   back, so a rejected command keeps only its recorded answer.

Only after COMMIT is the answer sent; this is also where errors become gRPC
statuses, and the only place.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from participants.common import idempotency
from participants.common.errors import (
    BusinessRejection,
    IdempotencyKeyReused,
    InvalidCommand,
    NotOwner,
    ParticipantError,
)
from participants.common.failures import CrashFailpoint, FailureInjector
from participants.common.state import LocalState
from saga.participants.common.v1 import command_pb2

logger = logging.getLogger(__name__)

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


class CommandProcessor:
    """Applies one service's commands at most once per idempotency key.

    When `action` or `compensation` returns, the business change and the
    answer under the command's key are committed together; when it aborts the
    RPC, either the same is true for a rejection, or nothing was written.
    """

    def __init__(
        self,
        service: str,
        state: LocalState,
        injector: FailureInjector,
        *,
        latency_ms: int = 0,
        failpoint: CrashFailpoint | None = None,
    ) -> None:
        self.service = service
        self.domain = f"{service}.participants.saga"
        self._state = state
        self._injector = injector
        self._latency_s = latency_ms / 1000
        self._failpoint = failpoint

    async def action(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        request: Request,
        response_type: type[Response],
        validate: Callable[[Request], None],
        apply: Callable[[sqlite3.Connection, Request], Response],
    ) -> Response:
        """Run a forward command; configured latency and failures apply here only.

        A caller that gives up during the latency (its deadline passed) cancels the
        call, and the command is never applied: that end is logged like any other
        outcome, so a test can wait for it instead of sleeping.
        """
        if self._latency_s:
            try:
                await asyncio.sleep(self._latency_s)
            except asyncio.CancelledError:
                command = command_context(request)
                logger.info(
                    "%s %s saga=%s key=%s: cancelled by the caller, not applied",
                    self.service,
                    method,
                    command.saga_id,
                    command.idempotency_key,
                )
                raise
        await self._maybe_unavailable(context, request, is_action=True)
        return await self._run(
            context, method, request, response_type, validate, apply, is_action=True
        )

    async def compensation(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        request: Request,
        response_type: type[Response],
        validate: Callable[[Request], None],
        apply: Callable[[sqlite3.Connection, Request], Response],
    ) -> Response:
        """Run an undo command; never delayed, only failed transiently when configured."""
        await self._maybe_unavailable(context, request, is_action=False)
        return await self._run(
            context, method, request, response_type, validate, apply, is_action=False
        )

    async def _maybe_unavailable(
        self, context: grpc.aio.ServicerContext, request: Message, *, is_action: bool
    ) -> None:
        key = request.context.idempotency_key  # type: ignore[attr-defined]
        fault = self._injector.transient_fault(key, is_action=is_action)
        if fault is not None:
            logger.info("%s %s", self.service, fault)
            await context.abort(grpc.StatusCode.UNAVAILABLE, fault)

    def query(self, read: Callable[[sqlite3.Connection], Response]) -> Response:
        """Answer a read from one consistent snapshot; reads are never failed."""
        with self._state.snapshot() as db:
            return read(db)

    async def _run(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        request: Request,
        response_type: type[Response],
        validate: Callable[[Request], None],
        apply: Callable[[sqlite3.Connection, Request], Response],
        *,
        is_action: bool,
    ) -> Response:
        try:
            outcome = self._execute(method, request, response_type, validate, apply, is_action)
        except ParticipantError as error:  # refused before anything was written
            saga_id = request.context.saga_id  # type: ignore[attr-defined]
            logger.info("%s %s saga=%s refused: %s", self.service, method, saga_id, error.message)
            outcome = error.to_status(self.domain)
        if isinstance(outcome, status_pb2.Status):
            await context.abort_with_status(rpc_status.to_status(outcome))
        return outcome

    def _execute(
        self,
        method: str,
        request: Request,
        response_type: type[Response],
        validate: Callable[[Request], None],
        apply: Callable[[sqlite3.Connection, Request], Response],
        is_action: bool,
    ) -> Response | status_pb2.Status:
        command = command_context(request)
        validate(request)
        if not is_action:
            _check_compensation_owner(command)
        key = command.idempotency_key
        fingerprint = idempotency.fingerprint(method, request)
        with self._state.transaction() as db:
            stored = idempotency.find(db, key)
            if stored is not None:
                if not stored.matches(method, fingerprint):
                    raise IdempotencyKeyReused(
                        f"idempotency key {key!r} was already used by {stored.method}"
                        f" with a different request"
                    )
                logger.debug(
                    "%s %s saga=%s key=%s: repeat", self.service, method, command.saga_id, key
                )
                return stored.stored_outcome(response_type)
            outcome = self._apply(db, request, apply, command, is_action)
            idempotency.record(db, key, method, fingerprint, outcome)
        self._log_outcome(method, command, outcome)
        if self._failpoint is not None:
            self._failpoint.command_committed()
        return outcome

    def _apply(
        self,
        db: sqlite3.Connection,
        request: Request,
        apply: Callable[[sqlite3.Connection, Request], Response],
        command: command_pb2.CommandContext,
        is_action: bool,
    ) -> Response | status_pb2.Status:
        try:
            with self._state.savepoint():
                if is_action:
                    self._refuse_compensated_action(db, command.idempotency_key)
                    self._injector.check_action(command.idempotency_key, request)
                response = apply(db, request)
                if not is_action and command.compensated_idempotency_key:
                    idempotency.mark_compensated(
                        db, command.compensated_idempotency_key, command.idempotency_key
                    )
        except BusinessRejection as rejection:
            return rejection.to_status(self.domain)
        return response

    @staticmethod
    def _refuse_compensated_action(db: sqlite3.Connection, key: str) -> None:
        compensation_key = idempotency.compensation_of(db, key)
        if compensation_key is not None:
            raise BusinessRejection(
                "ALREADY_COMPENSATED",
                f"the action with idempotency key {key!r} was already compensated"
                f" by {compensation_key!r}",
            )

    def _log_outcome(
        self,
        method: str,
        command: command_pb2.CommandContext,
        outcome: Message | status_pb2.Status,
    ) -> None:
        if isinstance(outcome, status_pb2.Status):
            result = f"rejected: {outcome.message}"
        else:
            result = "applied"
        logger.info(
            "%s %s saga=%s key=%s: %s",
            self.service,
            method,
            command.saga_id,
            command.idempotency_key,
            result,
        )


def _check_compensation_owner(command: command_pb2.CommandContext) -> None:
    """A compensation may undo only its own step's action, "<saga_id>:<step>"; anything
    else (another saga's key, a key of no saga) would tombstone what is not its own."""
    target = command.compensated_idempotency_key
    if target and target != f"{command.saga_id}:{command.step}":
        raise NotOwner(
            f"compensation of saga {command.saga_id} step {command.step} may undo only "
            f"the action {command.saga_id}:{command.step}, not {target!r}"
        )


def command_context(request: Message) -> command_pb2.CommandContext:
    """The request's CommandContext; a command without an idempotency key is invalid."""
    context: command_pb2.CommandContext = request.context  # type: ignore[attr-defined]
    if not request.HasField("context") or not context.idempotency_key.strip():
        raise InvalidCommand("context.idempotency_key is required")
    return context
