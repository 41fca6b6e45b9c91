"""What the server factory needs to know to host one participant service."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from participants.common.commands import CommandProcessor
from participants.common.config import ParticipantConfig


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """One participant service: its name, contract, tables and servicer.

    `name` is the CLI name and the state file's stem; `schema` and `seed` run
    once, when that file is created.
    """

    name: str
    descriptor: ServiceDescriptor
    schema: Sequence[str]
    seed: Callable[[sqlite3.Connection, ParticipantConfig], None]
    servicer: Callable[[CommandProcessor, ParticipantConfig], Any]
    add_to_server: Callable[[Any, grpc.aio.Server], None]

    @property
    def full_name(self) -> str:
        """The gRPC service name, e.g. saga.participants.flight.v1.FlightService."""
        return self.descriptor.full_name
