from saga.participants.common.v1 import command_pb2 as _command_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AwardPointsRequest(_message.Message):
    __slots__ = ("context", "customer_id", "points")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    customer_id: str
    points: int
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., customer_id: _Optional[str] = ..., points: _Optional[int] = ...) -> None: ...

class AwardPointsResponse(_message.Message):
    __slots__ = ("award_id", "balance")
    AWARD_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    award_id: str
    balance: int
    def __init__(self, award_id: _Optional[str] = ..., balance: _Optional[int] = ...) -> None: ...

class RevokePointsRequest(_message.Message):
    __slots__ = ("context", "award_id")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    AWARD_ID_FIELD_NUMBER: _ClassVar[int]
    context: _command_pb2.CommandContext
    award_id: str
    def __init__(self, context: _Optional[_Union[_command_pb2.CommandContext, _Mapping]] = ..., award_id: _Optional[str] = ...) -> None: ...

class RevokePointsResponse(_message.Message):
    __slots__ = ("award_id", "revoked")
    AWARD_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    award_id: str
    revoked: bool
    def __init__(self, award_id: _Optional[str] = ..., revoked: _Optional[bool] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: int
    def __init__(self, points: _Optional[int] = ...) -> None: ...

class LoyaltySignupInput(_message.Message):
    __slots__ = ("customer_id", "welcome_points", "fee")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    WELCOME_POINTS_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    welcome_points: int
    fee: _command_pb2.Money
    def __init__(self, customer_id: _Optional[str] = ..., welcome_points: _Optional[int] = ..., fee: _Optional[_Union[_command_pb2.Money, _Mapping]] = ...) -> None: ...
