from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TravelBookingInput(_message.Message):
    __slots__ = ("customer_id", "traveller_name", "flight_number", "seats", "hotel_id", "nights", "rooms", "car_location", "car_class", "car_days", "amount")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TRAVELLER_NAME_FIELD_NUMBER: _ClassVar[int]
    FLIGHT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SEATS_FIELD_NUMBER: _ClassVar[int]
    HOTEL_ID_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    CAR_LOCATION_FIELD_NUMBER: _ClassVar[int]
    CAR_CLASS_FIELD_NUMBER: _ClassVar[int]
    CAR_DAYS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    traveller_name: str
    flight_number: str
    seats: int
    hotel_id: str
    nights: int
    rooms: int
    car_location: str
    car_class: str
    car_days: int
    amount: _command_pb2.Money
    def __init__(self, customer_id: _Optional[str] = ..., traveller_name: _Optional[str] = ..., flight_number: _Optional[str] = ..., seats: _Optional[int] = ..., hotel_id: _Optional[str] = ..., nights: _Optional[int] = ..., rooms: _Optional[int] = ..., car_location: _Optional[str] = ..., car_class: _Optional[str] = ..., car_days: _Optional[int] = ..., amount: _Optional[_Union[_command_pb2.Money, _Mapping]] = ...) -> None: ...

class OrderFulfillmentInput(_message.Message):
    __slots__ = ("order_id", "customer_id", "items", "shipping_address", "amount")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    customer_id: str
    items: _containers.RepeatedCompositeFieldContainer[_command_pb2.LineItem]
    shipping_address: str
    amount: _command_pb2.Money
    def __init__(self, order_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_command_pb2.LineItem, _Mapping]]] = ..., shipping_address: _Optional[str] = ..., amount: _Optional[_Union[_command_pb2.Money, _Mapping]] = ...) -> None: ...

class CreateOrderInput(_message.Message):
    __slots__ = ("order_id", "consumer_id", "restaurant_id", "items", "amount")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    RESTAURANT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    consumer_id: str
    restaurant_id: str
    items: _containers.RepeatedCompositeFieldContainer[_command_pb2.LineItem]
    amount: _command_pb2.Money
    def __init__(self, order_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., restaurant_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_command_pb2.LineItem, _Mapping]]] = ..., amount: _Optional[_Union[_command_pb2.Money, _Mapping]] = ...) -> None: ...
