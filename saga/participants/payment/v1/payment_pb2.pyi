from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChargePaymentRequest(_message.Message):
    __slots__ = ("context", "customer_id", "amount")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    customer_id: str
    amount: _command_pb2.Money
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., customer_id: _Optional[str] = ..., amount: _Optional[_Union[_command_pb2.Money, _Mapping]] = ...) -> None: ...

class ChargePaymentResponse(_message.Message):
    __slots__ = ("payment_id", "amount")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    amount: _command_pb2.Money
    def __init__(self, payment_id: _Optional[str] = ..., amount: _Optional[_Union[_command_pb2.Money, _Mapping]] = ...) -> None: ...

class RefundPaymentRequest(_message.Message):
    __slots__ = ("context", "payment_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    payment_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., payment_id: _Optional[str] = ...) -> None: ...

class RefundPaymentResponse(_message.Message):
    __slots__ = ("payment_id", "refunded", "amount")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    refunded: bool
    amount: _command_pb2.Money
    def __init__(self, payment_id: _Optional[str] = ..., refunded: _Optional[bool] = ..., amount: _Optional[_Union[_command_pb2.Money, _Mapping]] = ...) -> None: ...

class GetPaymentLedgerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPaymentLedgerResponse(_message.Message):
    __slots__ = ("payments",)
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[Payment]
    def __init__(self, payments: _Optional[_Iterable[_Union[Payment, _Mapping]]] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("payment_id", "customer_id", "amount", "state", "saga_id", "idempotency_key")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    customer_id: str
    amount: _command_pb2.Money
    state: _command_pb2.ReservationState
    saga_id: str
    idempotency_key: str
    def __init__(self, payment_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., amount: _Optional[_Union[_command_pb2.Money, _Mapping]] = ..., state: _Optional[_Union[_command_pb2.ReservationState, str]] = ..., saga_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...
