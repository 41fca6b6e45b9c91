"""Example saga participants: flight, hotel, car rental, payment, inventory,
shipping and notification services over gRPC.

Each service is a class of handlers on the participant kit (`participants.kit`),
keeps its own SQLite state and applies every command at most once per
idempotency key. Run them with `python -m participants`, or host them
in-process with `create_server`.
"""

from participants.common.config import ALL_SERVICES, ParticipantConfig
from participants.common.server import create_server

__all__ = ["ALL_SERVICES", "ParticipantConfig", "create_server"]
