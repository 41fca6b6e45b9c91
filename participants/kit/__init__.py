"""The participant kit: a participant is its business logic, the kit does the rest.

    class Loyalty(Participant):
        service = "acme.loyalty.v1.LoyaltyService"
        schema = ("CREATE TABLE IF NOT EXISTS awards (...)",)

        @action
        def AwardPoints(self, tx: Tx, request: pb.AwardPointsRequest) -> pb.AwardPointsResponse:
            ...   # business writes through tx, in the kit's transaction

        @compensation(of="AwardPoints")
        def RevokePoints(self, tx, request, awarded: pb.AwardPointsResponse | None):
            ...   # undo `awarded`: this saga's own action's reply (None: nothing was done)

        @query
        def GetBalance(self, tx, request): ...

    run(Loyalty, port=7100, database="sqlite:///loyalty.db")

The gRPC service is built from its descriptor and the handlers (`participant`); each
command is applied at most once per idempotency key, with tombstones and the ownership
check, in the participant's own SQLite or PostgreSQL transaction (`commands`,
`database`); refusals are `Rejected`, `Invalid` and `NotOwner` (`errors`); `Pool` counts
units of a resource per item (`pool`); `run` and `create_server` serve it with health,
reflection, TLS and auth (`server`, `tls`, `auth`). Crash points for tests are in
`failpoints`, the clock and fingerprint of the kit's records in `commands`. An
asynchronous step's action keeps `request.context.completion_token` and completes the
step later with `StepCompleter` (`completions`).

Importing the kit loads neither the orchestrator nor its dependencies: a participant
service installs the kit alone (participants/kit/pyproject.toml).
"""

from participants.kit.commands import CommandResult, Undoes, run_command
from participants.kit.completions import CompletionRefused, StepCompleter
from participants.kit.database import Database, Tx, open_database
from participants.kit.errors import Invalid, NotOwner, Rejected, require_positive, require_text
from participants.kit.participant import Participant, action, compensation, query
from participants.kit.pool import Pool
from participants.kit.server import create_server, format_address, run, serve
from participants.kit.tls import SecurityConfigError, ServerTls

__all__ = [
    "CommandResult",
    "CompletionRefused",
    "Database",
    "Invalid",
    "NotOwner",
    "Participant",
    "Pool",
    "Rejected",
    "SecurityConfigError",
    "ServerTls",
    "StepCompleter",
    "Tx",
    "Undoes",
    "action",
    "compensation",
    "create_server",
    "format_address",
    "open_database",
    "query",
    "require_positive",
    "require_text",
    "run",
    "run_command",
    "serve",
]
