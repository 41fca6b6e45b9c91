from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RentCarRequest(_message.Message):
    __slots__ = ("context", "location", "car_class", "driver_name", "days")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CAR_CLASS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_NAME_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    location: str
    car_class: str
    driver_name: str
    days: int
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., location: _Optional[str] = ..., car_class: _Optional[str] = ..., driver_name: _Optional[str] = ..., days: _Optional[int] = ...) -> None: ...

class RentCarResponse(_message.Message):
    __slots__ = ("rental_id", "location", "car_class")
    RENTAL_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CAR_CLASS_FIELD_NUMBER: _ClassVar[int]
    rental_id: str
    location: str
    car_class: str
    def __init__(self, rental_id: _Optional[str] = ..., location: _Optional[str] = ..., car_class: _Optional[str] = ...) -> None: ...

class CancelCarRentalRequest(_message.Message):
    __slots__ = ("context", "rental_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    RENTAL_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    rental_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., rental_id: _Optional[str] = ...) -> None: ...

class CancelCarRentalResponse(_message.Message):
    __slots__ = ("rental_id", "cancelled")
    RENTAL_ID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    rental_id: str
    cancelled: bool
    def __init__(self, rental_id: _Optional[str] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class GetCarInventoryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCarInventoryResponse(_message.Message):
    __slots__ = ("cars", "rentals")
    CARS_FIELD_NUMBER: _ClassVar[int]
    RENTALS_FIELD_NUMBER: _ClassVar[int]
    cars: _containers.RepeatedCompositeFieldContainer[CarAvailability]
    rentals: _containers.RepeatedCompositeFieldContainer[CarRental]
    def __init__(self, cars: _Optional[_Iterable[_Union[CarAvailability, _Mapping]]] = ..., rentals: _Optional[_Iterable[_Union[CarRental, _Mapping]]] = ...) -> None: ...

class CarAvailability(_message.Message):
    __slots__ = ("location", "car_class", "cars_available", "cars_total")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CAR_CLASS_FIELD_NUMBER: _ClassVar[int]
    CARS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CARS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    location: str
    car_class: str
    cars_available: int
    cars_total: int
    def __init__(self, location: _Optional[str] = ..., car_class: _Optional[str] = ..., cars_available: _Optional[int] = ..., cars_total: _Optional[int] = ...) -> None: ...

class CarRental(_message.Message):
    __slots__ = ("rental_id", "location", "car_class", "state", "saga_id", "idempotency_key")
    RENTAL_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CAR_CLASS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    rental_id: str
    location: str
    car_class: str
    state: _command_pb2.ReservationState
    saga_id: str
    idempotency_key: str
    def __init__(self, rental_id: _Optional[str] = ..., location: _Optional[str] = ..., car_class: _Optional[str] = ..., state: _Optional[_Union[_command_pb2.ReservationState, str]] = ..., saga_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...
