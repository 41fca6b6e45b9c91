"""A started saga (`SagaHandle`) and the reading of its output as the message its saga
type declares.

A handle is generic in that output: `client.start(..., output_type=TravelBookingOutput)`
gives a `SagaHandle[TravelBookingOutput]`, whose `result()` mypy knows returns one; a
handle started without `output_type` is a `SagaHandle[Message]`, its output's class
found by name among the imported protobuf modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar, overload

from google.protobuf import any_pb2, message_factory
from google.protobuf import descriptor_pool as pool
from google.protobuf.message import Message

from orchestrator.client.connection import WATCH_RECONNECT_SECONDS
from orchestrator.client.errors import ClientError, SagaFailed
from saga.v1 import orchestrator_pb2 as pb

if TYPE_CHECKING:
    from orchestrator.client.async_client import SagaClient

OutputT = TypeVar("OutputT", bound=Message)
"""The output message a saga type declares (`Message` when the handle was not told)."""


@dataclass(frozen=True, slots=True)
class SagaHandle(Generic[OutputT]):
    """A started saga: its id, whether this start created it, its status then, and the
    class of its output (`Message`: whichever class is registered under its name)."""

    client: SagaClient
    saga_id: str
    created: bool
    status: pb.SagaStatus
    output_type: type[OutputT]

    async def get(self) -> pb.Saga:
        return await self.client.get_saga(self.saga_id)

    async def result(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (the same call as the sync client's)
    ) -> OutputT:
        """The saga's output once it COMPLETED; SagaFailed once it FAILED;
        DeadlineExceeded after `timeout` seconds (None: wait, across restarts of the
        orchestrator, for as long as the watch may reconnect). An untyped handle on a
        saga type without an output returns the Saga itself."""
        reconnect_for = WATCH_RECONNECT_SECONDS if timeout is None else timeout
        saga = await self.client.follow(self.saga_id, within=timeout, reconnect_for=reconnect_for)
        return output_of(saga, self.output_type)


@overload
def output_of(saga: pb.Saga) -> Message: ...
@overload
def output_of(saga: pb.Saga, output_type: type[OutputT]) -> OutputT: ...
def output_of(saga: pb.Saga, output_type: type[Message] | None = None) -> Message:
    """An ended saga's output message; SagaFailed if it did not complete. Without
    `output_type` (or with `Message`), a saga type without an output gives the Saga
    itself; with a class, a ClientError (there is no such output to give)."""
    if saga.status != pb.SAGA_STATUS_COMPLETED:
        raise SagaFailed(saga)
    if saga.HasField("output"):
        return unpack_output(saga.output, output_type or Message)
    if output_type is None or output_type is Message:
        return saga
    raise ClientError(
        f"saga {saga.saga_id} completed without an output, not a "
        f"{output_type.DESCRIPTOR.full_name}: its saga type declares none"
    )


@overload
def unpack_output(packed: any_pb2.Any) -> Message: ...
@overload
def unpack_output(packed: any_pb2.Any, output_type: type[OutputT]) -> OutputT: ...
def unpack_output(packed: any_pb2.Any, output_type: type[Message] | None = None) -> Message:
    """The message in an Any: an `output_type`, or (None, `Message`) the class
    registered under its type name."""
    if output_type is None or output_type is Message:
        try:
            descriptor = pool.Default().FindMessageTypeByName(packed.TypeName())
        except KeyError:
            raise ClientError(
                f"the saga's output is a {packed.TypeName()}; import the module that "
                "defines it, or pass output_type="
            ) from None
        output_type = message_factory.GetMessageClass(descriptor)
    message = output_type()
    if not packed.Unpack(message):
        raise ClientError(
            f"the saga's output is a {packed.TypeName()}, not {message.DESCRIPTOR.full_name}"
        )
    return message
