from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BookFlightRequest(_message.Message):
    __slots__ = ("context", "flight_number", "passenger_name", "seats")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    FLIGHT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PASSENGER_NAME_FIELD_NUMBER: _ClassVar[int]
    SEATS_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    flight_number: str
    passenger_name: str
    seats: int
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., flight_number: _Optional[str] = ..., passenger_name: _Optional[str] = ..., seats: _Optional[int] = ...) -> None: ...

class BookFlightResponse(_message.Message):
    __slots__ = ("booking_id", "flight_number", "seats")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    FLIGHT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SEATS_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    flight_number: str
    seats: int
    def __init__(self, booking_id: _Optional[str] = ..., flight_number: _Optional[str] = ..., seats: _Optional[int] = ...) -> None: ...

class CancelFlightRequest(_message.Message):
    __slots__ = ("context", "booking_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    booking_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., booking_id: _Optional[str] = ...) -> None: ...

class CancelFlightResponse(_message.Message):
    __slots__ = ("booking_id", "cancelled")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    cancelled: bool
    def __init__(self, booking_id: _Optional[str] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class GetFlightInventoryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFlightInventoryResponse(_message.Message):
    __slots__ = ("flights", "bookings")
    FLIGHTS_FIELD_NUMBER: _ClassVar[int]
    BOOKINGS_FIELD_NUMBER: _ClassVar[int]
    flights: _containers.RepeatedCompositeFieldContainer[FlightAvailability]
    bookings: _containers.RepeatedCompositeFieldContainer[FlightBooking]
    def __init__(self, flights: _Optional[_Iterable[_Union[FlightAvailability, _Mapping]]] = ..., bookings: _Optional[_Iterable[_Union[FlightBooking, _Mapping]]] = ...) -> None: ...

class FlightAvailability(_message.Message):
    __slots__ = ("flight_number", "seats_available", "seats_total")
    FLIGHT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SEATS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    SEATS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    flight_number: str
    seats_available: int
    seats_total: int
    def __init__(self, flight_number: _Optional[str] = ..., seats_available: _Optional[int] = ..., seats_total: _Optional[int] = ...) -> None: ...

class FlightBooking(_message.Message):
    __slots__ = ("booking_id", "flight_number", "seats", "state", "saga_id", "idempotency_key")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    FLIGHT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SEATS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    flight_number: str
    seats: int
    state: _command_pb2.ReservationState
    saga_id: str
    idempotency_key: str
    def __init__(self, booking_id: _Optional[str] = ..., flight_number: _Optional[str] = ..., seats: _Optional[int] = ..., state: _Optional[_Union[_command_pb2.ReservationState, str]] = ..., saga_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...
