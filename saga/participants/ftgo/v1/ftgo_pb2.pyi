from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyConsumerRequest(_message.Message):
    __slots__ = ("context", "consumer_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    consumer_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., consumer_id: _Optional[str] = ...) -> None: ...

class VerifyConsumerResponse(_message.Message):
    __slots__ = ("consumer_id",)
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    consumer_id: str
    def __init__(self, consumer_id: _Optional[str] = ...) -> None: ...

class CreateTicketRequest(_message.Message):
    __slots__ = ("context", "order_id", "restaurant_id", "items")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    RESTAURANT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    order_id: str
    restaurant_id: str
    items: _containers.RepeatedCompositeFieldContainer[_command_pb2.LineItem]
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., order_id: _Optional[str] = ..., restaurant_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_command_pb2.LineItem, _Mapping]]] = ...) -> None: ...

class CreateTicketResponse(_message.Message):
    __slots__ = ("ticket_id",)
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    def __init__(self, ticket_id: _Optional[str] = ...) -> None: ...

class RejectTicketRequest(_message.Message):
    __slots__ = ("context", "ticket_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    ticket_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., ticket_id: _Optional[str] = ...) -> None: ...

class RejectTicketResponse(_message.Message):
    __slots__ = ("ticket_id", "rejected")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    rejected: bool
    def __init__(self, ticket_id: _Optional[str] = ..., rejected: _Optional[bool] = ...) -> None: ...

class ApproveTicketRequest(_message.Message):
    __slots__ = ("context", "ticket_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    ticket_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., ticket_id: _Optional[str] = ...) -> None: ...

class ApproveTicketResponse(_message.Message):
    __slots__ = ("ticket_id",)
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    def __init__(self, ticket_id: _Optional[str] = ...) -> None: ...

class AuthorizeCardRequest(_message.Message):
    __slots__ = ("context", "consumer_id", "amount")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    consumer_id: str
    amount: _command_pb2.Money
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., consumer_id: _Optional[str] = ..., amount: _Optional[_Union[_command_pb2.Money, _Mapping]] = ...) -> None: ...

class AuthorizeCardResponse(_message.Message):
    __slots__ = ("authorization_id",)
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    authorization_id: str
    def __init__(self, authorization_id: _Optional[str] = ...) -> None: ...

class ApproveOrderRequest(_message.Message):
    __slots__ = ("context", "order_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    order_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., order_id: _Optional[str] = ...) -> None: ...

class ApproveOrderResponse(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...
