"""The registered saga definitions, checked once when the orchestrator starts.

Every call a definition names is resolved against the protobuf descriptor pool
here, so a typo in a service or method name stops start-up with a message
naming the definition and step instead of failing a saga at run time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from orchestrator.definition import CONTEXT_FIELD, CONTEXT_MESSAGE, Call, SagaDefinition
from orchestrator.errors import DefinitionError, UnknownSagaType


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
    """A step's calls resolved; `compensation` is None for an irreversible step."""

    action: ResolvedCall
    compensation: ResolvedCall | None


class Registry:
    """Saga definitions by type and version; the latest version starts new sagas."""

    def __init__(self, definitions: Iterable[SagaDefinition]) -> None:
        self._by_key: dict[tuple[str, int], SagaDefinition] = {}
        self._resolved: dict[tuple[str, int, str], ResolvedStep] = {}
        for definition in definitions:
            self._add(definition)

    def _add(self, definition: SagaDefinition) -> None:
        key = (definition.name, definition.version)
        if key in self._by_key:
            raise DefinitionError(
                f"saga type {definition.name!r} v{definition.version} is registered twice"
            )
        validate_definition(definition)
        self._by_key[key] = definition
        for step in definition.all_steps:
            self._resolved[(definition.name, definition.version, step.name)] = ResolvedStep(
                action=resolve_call(definition, step.name, step.action),
                compensation=(
                    resolve_call(definition, step.name, step.compensation)
                    if step.compensation is not None
                    else None
                ),
            )

    @property
    def saga_types(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted({name for name, _ in self._by_key})

    @property
    def participants(self) -> frozenset[str]:
        """Every participant name any definition addresses."""
        return frozenset(p for d in self._by_key.values() for p in d.participants)

    def latest(self, saga_type: str) -> SagaDefinition:
        """The newest version of a type; UnknownSagaType lists what exists."""
        versions = [v for (name, v) in self._by_key if name == saga_type]
        if not versions:
            known = ", ".join(self.saga_types) or "none"
            raise UnknownSagaType(f"unknown saga type {saga_type!r} (registered: {known})")
        return self._by_key[(saga_type, max(versions))]

    def get(self, saga_type: str, version: int) -> SagaDefinition:
        """One exact version; DefinitionError when it is no longer registered."""
        try:
            return self._by_key[(saga_type, version)]
        except KeyError:
            raise DefinitionError(
                f"saga type {saga_type!r} v{version} is not registered in this orchestrator"
            ) from None

    def resolved_step(self, definition: SagaDefinition, step_name: str) -> ResolvedStep:
        """The resolved calls of one step of a registered definition."""
        return self._resolved[(definition.name, definition.version, step_name)]


def validate_definition(definition: SagaDefinition) -> None:
    """Reject definitions the engine could not run correctly."""
    where = f"saga type {definition.name!r} v{definition.version}"
    if not definition.name or not definition.name.replace("_", "").isalnum():
        raise DefinitionError(f"{where}: the name must be letters, digits and underscores")
    if definition.version < 1:
        raise DefinitionError(f"{where}: the version must be 1 or more")
    if not definition.all_steps:
        raise DefinitionError(f"{where}: a saga needs at least one step")
    seen: set[str] = set()
    for index, step in enumerate(definition.all_steps):
        if not step.name or step.name in seen:
            raise DefinitionError(f"{where}: step name {step.name!r} is empty or repeated")
        seen.add(step.name)
        if not step.participant:
            raise DefinitionError(f"{where}, step {step.name!r}: no participant named")
        if step.timeout <= 0:
            raise DefinitionError(f"{where}, step {step.name!r}: the timeout must be positive")
        if step.compensation is None and index != len(definition.all_steps) - 1:
            raise DefinitionError(
                f"{where}, step {step.name!r}: only the last step may lack a compensation, "
                "because a later failure would have to undo it"
            )
