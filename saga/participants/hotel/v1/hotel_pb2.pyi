from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BookHotelRequest(_message.Message):
    __slots__ = ("context", "hotel_id", "guest_name", "rooms", "nights")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    HOTEL_ID_FIELD_NUMBER: _ClassVar[int]
    GUEST_NAME_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    hotel_id: str
    guest_name: str
    rooms: int
    nights: int
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., hotel_id: _Optional[str] = ..., guest_name: _Optional[str] = ..., rooms: _Optional[int] = ..., nights: _Optional[int] = ...) -> None: ...

class BookHotelResponse(_message.Message):
    __slots__ = ("reservation_id", "hotel_id", "rooms")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    HOTEL_ID_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    hotel_id: str
    rooms: int
    def __init__(self, reservation_id: _Optional[str] = ..., hotel_id: _Optional[str] = ..., rooms: _Optional[int] = ...) -> None: ...

class CancelHotelRequest(_message.Message):
    __slots__ = ("context", "reservation_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    reservation_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., reservation_id: _Optional[str] = ...) -> None: ...

class CancelHotelResponse(_message.Message):
    __slots__ = ("reservation_id", "cancelled")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    cancelled: bool
    def __init__(self, reservation_id: _Optional[str] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class GetHotelInventoryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHotelInventoryResponse(_message.Message):
    __slots__ = ("hotels", "reservations")
    HOTELS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    hotels: _containers.RepeatedCompositeFieldContainer[HotelAvailability]
    reservations: _containers.RepeatedCompositeFieldContainer[HotelReservation]
    def __init__(self, hotels: _Optional[_Iterable[_Union[HotelAvailability, _Mapping]]] = ..., reservations: _Optional[_Iterable[_Union[HotelReservation, _Mapping]]] = ...) -> None: ...

class HotelAvailability(_message.Message):
    __slots__ = ("hotel_id", "rooms_available", "rooms_total")
    HOTEL_ID_FIELD_NUMBER: _ClassVar[int]
    ROOMS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ROOMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    hotel_id: str
    rooms_available: int
    rooms_total: int
    def __init__(self, hotel_id: _Optional[str] = ..., rooms_available: _Optional[int] = ..., rooms_total: _Optional[int] = ...) -> None: ...

class HotelReservation(_message.Message):
    __slots__ = ("reservation_id", "hotel_id", "rooms", "state", "saga_id", "idempotency_key")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    HOTEL_ID_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    hotel_id: str
    rooms: int
    state: _command_pb2.ReservationState
    saga_id: str
    idempotency_key: str
    def __init__(self, reservation_id: _Optional[str] = ..., hotel_id: _Optional[str] = ..., rooms: _Optional[int] = ..., state: _Optional[_Union[_command_pb2.ReservationState, str]] = ..., saga_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...
