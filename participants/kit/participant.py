"""The `Participant` base: a class of handlers becomes a gRPC service, built from the
service's descriptor, with no generated servicer and no per-RPC adapter.

Every RPC of the service needs a handler of the same name: `@action` and
`@compensation` run through the kit's command transaction (`commands.run_command`),
`@query` in a read-only snapshot. Handlers are plain functions of a `Tx` and the request,
run where the database says (`Database.call`: a worker thread for PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Literal, overload

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from participants.kit.commands import (
    CommandResult,
    Undoes,
    once_more_on_a_race,
    run_command,
)
from participants.kit.database import Database, Tx
from participants.kit.errors import DOMAIN, Rejected

logger = logging.getLogger(__name__)

CONTEXT_MESSAGE = "saga.participants.common.v1.CommandContext"

Validate = Callable[[Any], None]
Function = Callable[..., Message]


@dataclasses.dataclass(frozen=True, slots=True)
class Handler:
    """A handler and how the kit runs it: `kind` is action, compensation or query; `of`
    the action a compensation undoes; `validate` checks the request before anything else
    (raising `Invalid`)."""

    kind: Literal["action", "compensation", "query"]
    function: Callable[..., Message]
    of: str | None = None
    validate: Validate | None = None


Decorator = Callable[[Function], Handler]


@overload
def action(function: Function, *, validate: Validate | None = None) -> Handler: ...
@overload
def action(function: None = None, *, validate: Validate | None = None) -> Decorator: ...
def action(function: Function | None = None, *, validate: Validate | None = None) -> Any:
    """`def Method(self, tx, request) -> Reply`: a forward command, applied once per key.
    Used bare (`@action`) or with a request check (`@action(validate=check)`)."""
    if function is None:
        return functools.partial(action, validate=validate)
    return Handler("action", function, validate=validate)


def compensation(of: str | None = None, *, validate: Validate | None = None) -> Decorator:
    """`def Method(self, tx, request, done) -> Reply`: the undo of the action RPC `of`;
    `done` is that action's reply in this saga, or None (never applied, or no `of`)."""

    def wrap(function: Function) -> Handler:
        return Handler("compensation", function, of=of, validate=validate)

    return wrap


@overload
def query(function: Function, *, validate: Validate | None = None) -> Handler: ...
@overload
def query(function: None = None, *, validate: Validate | None = None) -> Decorator: ...
def query(function: Function | None = None, *, validate: Validate | None = None) -> Any:
    """`def Method(self, tx, request) -> Reply`: a read, in one consistent snapshot."""
    if function is None:
        return functools.partial(query, validate=validate)
    return Handler("query", function, validate=validate)


class Participant:
    """Base of a participant: set `service` (the gRPC service's full name, its `_pb2`
    module imported) and `schema` (`CREATE TABLE IF NOT EXISTS ...`), write a handler per
    RPC. `domain` goes into the ErrorInfo of its refusals.

    The hooks (`before_command`, `check_action`, `command_recorded`) do nothing here; the
    example participants use them for failure injection.
    """

    service: ClassVar[str]
    schema: ClassVar[Sequence[str]] = ()
    domain: str = DOMAIN
    name: str = ""
    """How log lines name this participant; the service's short name when empty."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.create(*self.schema)
        with database.transaction() as tx:
            self.seed(tx)

    @classmethod
    def service_descriptor(cls) -> ServiceDescriptor:
        """The service's descriptor, from the default pool."""
        try:
            return descriptor_pool.Default().FindServiceByName(cls.service)
        except KeyError:
            raise LookupError(
                f"{cls.__name__}.service: no gRPC service {cls.service!r} is known; "
                "import its _pb2 module first"
            ) from None

    def seed(self, tx: Tx) -> None:
        """Initial rows, written on every start (insert with ON CONFLICT DO NOTHING)."""

    async def before_command(
        self,
        method: str,
        request: Message,
        context: grpc.aio.ServicerContext,
        *,
        compensating: bool,
    ) -> None:
        """Runs before each command (the RPC `method`) is validated; may abort the RPC."""

    def check_action(self, tx: Tx, request: Message) -> None:
        """Runs before an action's handler, in its savepoint; a `Rejected` is recorded."""

    def command_recorded(self) -> None:
        """Runs after a command's answer is committed, before it is sent."""

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve every RPC of `service` on `server` through its handler."""
        service = self.service_descriptor()
        handlers = {method.name: self._rpc(method) for method in service.methods}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, handlers),)
        )
        server.add_registered_method_handlers(service.full_name, handlers)

    def _rpc(self, method: MethodDescriptor) -> grpc.RpcMethodHandler:
        handler = getattr(type(self), method.name, None)
        if not isinstance(handler, Handler):
            raise TypeError(
                f"{type(self).__name__} has no @action, @compensation or @query handler "
                f"for {method.full_name}"
            )
        context = method.input_type.fields_by_name.get("context")
        context_type = context.message_type if context is not None else None
        if handler.kind != "query" and (
            context_type is None or context_type.full_name != CONTEXT_MESSAGE
        ):
            raise TypeError(
                f"{method.full_name}: a command's request needs `{CONTEXT_MESSAGE} context`"
            )
        request_type = message_factory.GetMessageClass(method.input_type)
        reply_type = message_factory.GetMessageClass(method.output_type)
        serve: Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]
        if handler.kind == "query":
            serve = functools.partial(self._query, handler)
        else:
            undoes = None
            if handler.kind == "compensation":
                undone = method.containing_service.methods_by_name.get(handler.of or "")
                if handler.of and undone is None:
                    raise TypeError(f"{method.full_name} compensates {handler.of!r}: no such RPC")
                undoes = Undoes(
                    handler.of,
                    message_factory.GetMessageClass(undone.output_type) if undone else None,
                )
            serve = functools.partial(self._command, handler, method.name, reply_type, undoes)

        async def rpc(request: Message, context: grpc.aio.ServicerContext) -> Message:
            return await serve(request, context)

        return grpc.unary_unary_rpc_method_handler(
            rpc,
            request_deserializer=request_type.FromString,
            response_serializer=reply_type.SerializeToString,
        )

    async def _command(
        self,
        handler: Handler,
        method: str,
        reply_type: type[Message],
        undoes: Undoes | None,
        request: Message,
        context: grpc.aio.ServicerContext,
    ) -> Message:
        await self.before_command(method, request, context, compensating=undoes is not None)
        try:
            if handler.validate is not None:
                handler.validate(request)
        except Rejected as refused:  # before anything was read or written
            self._log(method, request, CommandResult(refused.to_status(self.domain), False, False))
            await _abort(context, refused.to_status(self.domain))
        run = functools.partial(
            run_command,
            self.database,
            method,
            request,
            reply_type,
            functools.partial(handler.function, self),
            undoes=undoes,
            check=self.check_action,
            domain=self.domain,
        )
        result = await self.database.call(functools.partial(once_more_on_a_race, run))
        self._log(method, request, result)
        if result.recorded:
            self.command_recorded()
        if isinstance(result.outcome, status_pb2.Status):
            await _abort(context, result.outcome)
        return result.outcome

    async def _query(
        self, handler: Handler, request: Message, context: grpc.aio.ServicerContext
    ) -> Message:
        def read() -> Message:
            if handler.validate is not None:
                handler.validate(request)
            with self.database.snapshot() as tx:
                return handler.function(self, tx, request)

        try:
            return await self.database.call(read)
        except Rejected as refused:
            await _abort(context, refused.to_status(self.domain))
            raise  # not reached: abort raises

    def _log(self, method: str, request: Message, result: CommandResult) -> None:
        command = request.context  # type: ignore[attr-defined]
        outcome = result.outcome
        if result.replayed:
            said = "repeat"
        elif not isinstance(outcome, status_pb2.Status):
            said = "applied"
        else:
            said = f"{'rejected' if result.recorded else 'refused'}: {outcome.message}"
        logger.log(
            logging.DEBUG if result.replayed else logging.INFO,
            "%s %s saga=%s key=%s: %s",
            self.name or self.service_descriptor().name,
            method,
            command.saga_id,
            command.idempotency_key,
            said,
        )


async def _abort(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    await context.abort_with_status(rpc_status.to_status(status))
