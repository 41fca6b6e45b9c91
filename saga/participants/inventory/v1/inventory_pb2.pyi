from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReserveInventoryRequest(_message.Message):
    __slots__ = ("context", "order_id", "items")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    order_id: str
    items: _containers.RepeatedCompositeFieldContainer[_command_pb2.LineItem]
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., order_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_command_pb2.LineItem, _Mapping]]] = ...) -> None: ...

class ReserveInventoryResponse(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseInventoryRequest(_message.Message):
    __slots__ = ("context", "reservation_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    reservation_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseInventoryResponse(_message.Message):
    __slots__ = ("reservation_id", "released")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    released: bool
    def __init__(self, reservation_id: _Optional[str] = ..., released: _Optional[bool] = ...) -> None: ...

class GetInventoryStockRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInventoryStockResponse(_message.Message):
    __slots__ = ("stock", "reservations")
    STOCK_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    stock: _containers.RepeatedCompositeFieldContainer[StockLevel]
    reservations: _containers.RepeatedCompositeFieldContainer[StockReservation]
    def __init__(self, stock: _Optional[_Iterable[_Union[StockLevel, _Mapping]]] = ..., reservations: _Optional[_Iterable[_Union[StockReservation, _Mapping]]] = ...) -> None: ...

class StockLevel(_message.Message):
    __slots__ = ("sku", "available", "total")
    SKU_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    sku: str
    available: int
    total: int
    def __init__(self, sku: _Optional[str] = ..., available: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class StockReservation(_message.Message):
    __slots__ = ("reservation_id", "order_id", "items", "state", "saga_id", "idempotency_key")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    order_id: str
    items: _containers.RepeatedCompositeFieldContainer[_command_pb2.LineItem]
    state: _command_pb2.ReservationState
    saga_id: str
    idempotency_key: str
    def __init__(self, reservation_id: _Optional[str] = ..., order_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_command_pb2.LineItem, _Mapping]]] = ..., state: _Optional[_Union[_command_pb2.ReservationState, str]] = ..., saga_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...
