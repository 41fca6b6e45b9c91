from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScheduleShipmentRequest(_message.Message):
    __slots__ = ("context", "order_id", "address")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    order_id: str
    address: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., order_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class ScheduleShipmentResponse(_message.Message):
    __slots__ = ("shipment_id",)
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    shipment_id: str
    def __init__(self, shipment_id: _Optional[str] = ...) -> None: ...

class CancelShipmentRequest(_message.Message):
    __slots__ = ("context", "shipment_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    shipment_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., shipment_id: _Optional[str] = ...) -> None: ...

class CancelShipmentResponse(_message.Message):
    __slots__ = ("shipment_id", "cancelled")
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    shipment_id: str
    cancelled: bool
    def __init__(self, shipment_id: _Optional[str] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class GetShipmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetShipmentsResponse(_message.Message):
    __slots__ = ("shipments",)
    SHIPMENTS_FIELD_NUMBER: _ClassVar[int]
    shipments: _containers.RepeatedCompositeFieldContainer[Shipment]
    def __init__(self, shipments: _Optional[_Iterable[_Union[Shipment, _Mapping]]] = ...) -> None: ...

class Shipment(_message.Message):
    __slots__ = ("shipment_id", "order_id", "address", "state", "saga_id", "idempotency_key")
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    shipment_id: str
    order_id: str
    address: str
    state: _command_pb2.ReservationState
    saga_id: str
    idempotency_key: str
    def __init__(self, shipment_id: _Optional[str] = ..., order_id: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[_Union[_command_pb2.ReservationState, str]] = ..., saga_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...
