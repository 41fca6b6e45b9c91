"""Calls resolved against the protobuf descriptor pool, and the requests built from them.

A definition names its RPCs by service and method; resolving binds each to its
gRPC path and message classes once, at start-up. A `ResolvedStep` then builds
its step's requests at run time: it calls the definition's builder, checks the
message type, and fills the command context (saga id, step, idempotency keys).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from orchestrator.core.definition import (
    CONTEXT_FIELD,
    CONTEXT_MESSAGE,
    Call,
    SagaDefinition,
    StepContext,
)
from orchestrator.core.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class ResolvedCall:
    """A `Call` bound to its gRPC method path and message classes."""

    call: Call
    path: str
    request_type: type[Message]
    response_type: type[Message]


def resolve_call(definition: SagaDefinition, step_name: str, call: Call) -> ResolvedCall:
    """Find the call's method in the descriptor pool and check its request carries a context."""
    where = f"saga type {definition.name!r} v{definition.version}, step {step_name!r}"
    pool = descriptor_pool.Default()
    try:
        service = pool.FindServiceByName(call.service)
    except KeyError:
        raise DefinitionError(
            f"{where}: unknown service {call.service!r} (is its _pb2 module imported?)"
        ) from None
    method = service.methods_by_name.get(call.method)
    if method is None:
        known = ", ".join(sorted(service.methods_by_name))
        raise DefinitionError(
            f"{where}: service {call.service!r} has no method {call.method!r} (it has: {known})"
        )
    if method.client_streaming or method.server_streaming:
        raise DefinitionError(f"{where}: {call.service}.{call.method} is not a unary RPC")
    context = method.input_type.fields_by_name.get(CONTEXT_FIELD)
    if (
        context is None
        or context.type != FieldDescriptor.TYPE_MESSAGE
        or context.message_type is None
        or context.message_type.full_name != CONTEXT_MESSAGE
    ):
        raise DefinitionError(
            f"{where}: request {method.input_type.full_name} needs a field "
            f"`{CONTEXT_MESSAGE} {CONTEXT_FIELD}` for the saga id and idempotency key"
        )
    return ResolvedCall(
        call=call,
        path=f"/{service.full_name}/{method.name}",
        request_type=message_factory.GetMessageClass(method.input_type),
        response_type=message_factory.GetMessageClass(method.output_type),
    )


@dataclass(frozen=True, slots=True)
class ResolvedStep:
    """A step's calls resolved; `compensation` is None for an irreversible step, `action`
    None for an observed step (its result is the completing event's data, a Struct)."""

    action: ResolvedCall | None
    compensation: ResolvedCall | None
    completion_type: type[Message] | None = None
    """An asynchronous step's result message, which its completion carries."""

    @property
    def result_type(self) -> type[Message]:
        """The message stored as the step's result: the completion's for an
        asynchronous step, else the action's reply."""
        if self.completion_type is not None:
            return self.completion_type
        if self.action is None:
            raise DefinitionError("an observed step declares its result type")
        return self.action.response_type

    def call(self, *, compensating: bool) -> ResolvedCall:
        """The action's call, or the compensation's (which an irreversible step lacks; an
        observed step has no action)."""
        call = self.compensation if compensating else self.action
        if call is None:
            what = "compensation" if compensating else "action (it is observed)"
            raise DefinitionError(f"the step has no {what} to call")
        return call

    def build_request(self, step: str, context: StepContext, *, compensating: bool) -> Message:
        """Build the request of step `step` (action or compensation) and fill its context.

        The action's idempotency key is "<saga id>:<step>"; its compensation's adds
        ":compensate" and names the action's key as the one it undoes.
        """
        call = self.call(compensating=compensating)
        request = call.call.request(context)
        if not isinstance(request, call.request_type):
            raise TypeError(
                f"step {step}: the builder returned {type(request).__name__}, "
                f"{call.path} takes {call.request_type.__name__}"
            )
        action_key = f"{context.saga_id}:{step}"
        command = getattr(request, CONTEXT_FIELD)
        command.saga_id = context.saga_id
        command.step = step
        command.idempotency_key = f"{action_key}:compensate" if compensating else action_key
        command.compensated_idempotency_key = action_key if compensating else ""
        return request
