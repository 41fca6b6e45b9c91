from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TravelBookingOutput(_message.Message):
    __slots__ = ("booking_id", "reservation_id", "rental_id", "payment_id")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RENTAL_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    reservation_id: str
    rental_id: str
    payment_id: str
    def __init__(self, booking_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., rental_id: _Optional[str] = ..., payment_id: _Optional[str] = ...) -> None: ...

class BookingApproval(_message.Message):
    __slots__ = ("note",)
    NOTE_FIELD_NUMBER: _ClassVar[int]
    note: str
    def __init__(self, note: _Optional[str] = ...) -> None: ...

class OrderFulfillmentOutput(_message.Message):
    __slots__ = ("reservation_id", "payment_id", "shipment_id", "notification_id")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    payment_id: str
    shipment_id: str
    notification_id: str
    def __init__(self, reservation_id: _Optional[str] = ..., payment_id: _Optional[str] = ..., shipment_id: _Optional[str] = ..., notification_id: _Optional[str] = ...) -> None: ...

class CreateOrderOutput(_message.Message):
    __slots__ = ("ticket_id", "authorization_id")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    authorization_id: str
    def __init__(self, ticket_id: _Optional[str] = ..., authorization_id: _Optional[str] = ...) -> None: ...
