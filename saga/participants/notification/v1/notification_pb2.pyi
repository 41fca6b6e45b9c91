from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendOrderConfirmationRequest(_message.Message):
    __slots__ = ("context", "customer_id", "order_id", "shipment_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    customer_id: str
    order_id: str
    shipment_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., customer_id: _Optional[str] = ..., order_id: _Optional[str] = ..., shipment_id: _Optional[str] = ...) -> None: ...

class SendOrderConfirmationResponse(_message.Message):
    __slots__ = ("notification_id",)
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    def __init__(self, notification_id: _Optional[str] = ...) -> None: ...

class RequestApprovalRequest(_message.Message):
    __slots__ = ("context", "customer_id", "subject")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    customer_id: str
    subject: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., customer_id: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class RequestApprovalResponse(_message.Message):
    __slots__ = ("notification_id",)
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    def __init__(self, notification_id: _Optional[str] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications",)
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("notification_id", "customer_id", "order_id", "saga_id", "idempotency_key")
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    customer_id: str
    order_id: str
    saga_id: str
    idempotency_key: str
    def __init__(self, notification_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., order_id: _Optional[str] = ..., saga_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...
