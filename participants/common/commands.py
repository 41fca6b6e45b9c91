"""The one path every example participant's command takes, so each servicer stays thin.

The command itself is the participant kit's (`participants.kit.run_command`), in the
service's own SQLite transaction: the idempotency record and reply replay, the request
fingerprint, the tombstone a compensation leaves and the refusal of an action after its
own compensation, the ownership check, a rejection's savepoint rolled back and recorded.
What this adds for the examples: validation before anything is stored, injected latency
and failures (`check` runs the failure injection in the kit's savepoint), the crash
failpoint after a command's commit, the log line, and the ErrorInfo domain
`<service>.participants.saga`.

Only after COMMIT is the answer sent; this is also where errors become gRPC
statuses, and the only place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from typing import TypeVar, cast

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from participants import kit
from participants.common.errors import (
    BusinessRejection,
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
        self._database = LocalStateDatabase(state)
        self._database.create()  # the kit's tables, also in a state file made before them
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

        def business(tx: kit.Tx, request: Request, *_: object) -> Response:
            try:
                return apply(tx.connection, request)
            except BusinessRejection as rejection:
                status = rejection.to_status(self.domain)
                raise kit.Rejected(rejection.reason, rejection.message, status=status) from None

        def inject(tx: kit.Tx, request: Message) -> None:
            try:
                self._injector.check_action(command.idempotency_key, request)
            except BusinessRejection as rejection:
                status = rejection.to_status(self.domain)
                raise kit.Rejected(rejection.reason, rejection.message, status=status) from None

        result = kit.run_command(
            self._database,
            method,
            request,
            response_type,
            business,
            undoes=None if is_action else kit.Undoes(),
            check=inject,
            domain=self.domain,
        )
        if result.replayed:
            logger.debug(
                "%s %s saga=%s key=%s: repeat",
                self.service,
                method,
                command.saga_id,
                command.idempotency_key,
            )
            return cast(Response | status_pb2.Status, result.outcome)
        self._log_outcome(method, command, result.outcome)
        if self._failpoint is not None:
            self._failpoint.command_committed()
        return cast(Response | status_pb2.Status, result.outcome)

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


class LocalStateDatabase(kit.Database):
    """The kit's view of a service's state file: its transactions and savepoints are
    LocalState's (one connection, on the event loop's thread)."""

    def __init__(self, state: LocalState) -> None:
        self._state = state

    @contextlib.contextmanager
    def transaction(self) -> Iterator[kit.Tx]:
        with self._state.transaction() as db:
            yield kit.Tx(db, "?")

    @contextlib.contextmanager
    def savepoint(self, tx: kit.Tx) -> Iterator[None]:
        with self._state.savepoint():
            yield

    def close(self) -> None:
        self._state.close()
