"""The server factory: every selected example service on one gRPC port, through the kit's
(health, reflection, TLS), with auth when configured.

Every command runs with its log fields bound (service, saga_id, step, idempotency_key)
and, when a tracer is given, in a span that continues the orchestrator's trace from the
request metadata.
"""

from __future__ import annotations

import contextlib
import logging

import grpc
from opentelemetry import trace

from orchestrator.telemetry.interceptors import ParticipantInterceptor
from participants import kit
from participants.common.config import ParticipantConfig
from participants.common.failures import FailureInjector
from participants.kit.auth import AuthInterceptor, AuthPolicy, participant_rules
from participants.registry import SERVICES

logger = logging.getLogger(__name__)


async def build_example_server(
    config: ParticipantConfig,
    *,
    resources: contextlib.ExitStack | None = None,
    tracer: trace.Tracer | None = None,
    policy: AuthPolicy | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build the server and bind it; return it (not yet started) and its bound port.

    Each service's state file `<state_dir>/<service>.sqlite3` is opened (and its tables
    and catalogue created if missing) before this returns. Pass `resources` to have the
    files closed when the stack closes; otherwise they close with the process. With
    `tracer`, each command gets a server span, a child of the caller's span when the
    metadata carries one. `policy` is the auth to enforce (a caller keeps it to reload on
    SIGHUP); by default it is read from `config.auth_file`, and without one there is no auth.
    """
    interceptors: list[grpc.aio.ServerInterceptor] = [
        ParticipantInterceptor({SERVICES[name].full_name: name for name in config.services}, tracer)
    ]
    policy = policy or participant_policy(config)
    if policy is not None:
        interceptors.append(AuthInterceptor(policy))
    injector = FailureInjector(
        config.fail_rate,
        config.seed,
        config.fail_ids,
        unavailable_first=config.unavailable_first,
        compensation_failures=config.compensation_failures,
    )
    participants = []
    for name in config.services:
        participant = SERVICES[name].participant(config, injector)
        if resources is not None:
            resources.callback(participant.database.close)
        participants.append(participant)
    return await kit.create_server(
        participants,
        config.host,
        config.port,
        tls=config.tls,
        interceptors=interceptors,
        reflection_on=config.reflection,
    )


def participant_policy(config: ParticipantConfig) -> AuthPolicy | None:
    """The auth policy of the configured services; None (and a log line) without a file.

    The rules come from the service descriptors: a command (a request with a
    CommandContext) needs the `orchestrator` role, any other RPC `reader` or `operator`.
    """
    if config.auth_file is None:
        logger.info("auth is OFF: any caller may send commands and read ledgers")
        return None
    return AuthPolicy(
        config.auth_file,
        participant_rules(SERVICES[name].descriptor for name in config.services),
        reflection=config.reflection,
    )
